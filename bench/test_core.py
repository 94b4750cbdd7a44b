"""The table's rule, without a cluster: a system measures only what it implements; the rest prints "-".

Part of the test command (pyproject.toml names this file among the test paths).
"""

from __future__ import annotations

from typing import Any

from bench import core
from bench.__main__ import markdown


class TasksOnly(core.System):
    """A stand-in system with tasks but neither by-value functions nor objects."""

    name = "tasks-only"

    def submit_many(self, n: int) -> None:
        for _ in range(n):
            core.noop()

    def round_trip(self) -> None:
        core.noop()


def test_a_system_measures_only_what_it_implements() -> None:
    assert set(TasksOnly().measure(1)) == {"tasks_per_s", "round_trip_ms"}


def test_a_metric_a_system_lacks_prints_a_dash() -> None:
    report: dict[str, Any] = {"results": {"labcluster": {"tasks_per_s": 1000.0, "by_value_tasks_per_s": 900.0},
                                          "tasks-only": {"tasks_per_s": 2000.0}}}
    rows = {line.split(" | ")[0].lstrip("| "): line.split(" | ")[1:] for line in markdown(report).splitlines()
            if line.startswith("| ")}
    assert rows["no-op tasks/s (5,000 async)"][:2] == ["1e+03", "2e+03"]
    assert rows["same, function defined in a notebook cell (by value)"][:2] == ["900", "-"]



def test_the_stage_summary_reads_gpu_gaps_from_records() -> None:
    from bench.stages import summary

    def row(stage: str, resources: dict[str, float], submitted: float, started: float,
            finished: float) -> dict[str, Any]:
        return {"stage": stage, "resources": resources, "kind": "task", "submitted": submitted, "started": started,
                "finished": finished}

    rows = [row("decode", {"CPU": 1}, 0.0, 0.0, 0.1), row("decode", {"CPU": 1}, 0.0, 0.1, 0.2),
            row("infer", {"GPU": 1}, 0.0, 0.1, 0.3), row("infer", {"GPU": 1}, 0.0, 0.35, 0.5),
            row("post", {"CPU": 1}, 0.3, 0.5, 0.6)]
    lines = summary(rows, wall=0.62)
    assert lines[0] == "wall 0.62 s"
    assert "decode: 2 tasks" in lines[1] and "infer: 2 tasks" in lines[2]
    assert lines[-1] == ("  GPU: first block at 0.10 s, idle between blocks 0.05 s (longest 50 ms), 0.10 s after its "
                         "last block")
