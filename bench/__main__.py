"""``python -m bench``: run the benchmarks and print ratios, side by side, measured in one run.

Writes ``bench/results/core.json`` and ``bench/results/core.md``. Options: ``--repeat N`` (default 3),
``--only labcluster,dask-same,...``. No thresholds here or in tests: these are measurements. A system that has
no such operation shows "-"; a list measurement marked * was run once (its first run took over
``core.SLOW_S``: raw Dask, element by element), not ``--repeat`` times.
"""

from __future__ import annotations

import argparse
import importlib.util
import platform
import sys
import time
from typing import Any

from . import core


def _available(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def run(repeat: int, only: set[str] | None) -> dict[str, Any]:
    results: dict[str, dict[str, float]] = {}

    def want(name: str) -> bool:
        return only is None or name in only

    if want("labcluster") or want("dask-same"):
        lab = core.labcluster_system()
        try:
            if want("labcluster"):
                results["labcluster"] = lab.measure(repeat)
            if want("dask-same"):
                results["dask-same"] = core.DaskClient(lab.session.client, "dask-same").measure(repeat)
        finally:
            lab.close()
    factories: list[tuple[str, Any, str | None]] = [
        ("dask-default", core.dask_default, None),
        ("ray", core.ray_system, "ray"),
        ("pyspark", core.PySpark, "pyspark"),
    ]
    for name, factory, module in factories:
        if not want(name) or (module and not _available(module)):
            continue
        system = factory()
        try:
            results[name] = system.measure(repeat)
        finally:
            system.close()
    for name in ("labcluster", "dask-default", "dask-LocalCluster()", "ray"):
        if want(name) and (name != "ray" or _available("ray")):
            results.setdefault(name, {})["cold_start_s"] = core.cold_start(name, repeat)
    return {"machine": {"python": sys.version.split()[0], "platform": platform.platform(),
                        "cpus": __import__("os").cpu_count()},
            "when": time.strftime("%Y-%m-%d %H:%M:%S"), "repeat": repeat, "results": results}


METRICS = [("tasks_per_s", "no-op tasks/s (5,000 async)"),
           ("by_value_tasks_per_s", "same, function defined in a notebook cell (by value)"),
           ("round_trip_ms", "sync round trip (ms)"),
           ("put_get_GBps", "put + get 100 MB (GB/s)"),
           ("list_put_get_s", f"put + get of a {core.N_LIST:,}-element list (s)"),
           ("list_task_s", f"a task taking and returning a {core.N_LIST:,}-element list (s)"),
           ("cold_start_s", "cold start to first result (s)")]


def _cell(values: dict[str, Any], key: str) -> str:
    if key not in values:
        return "-"
    return f"{values[key]:.3g}" + ("*" if key in values.get("one_run", ()) else "")


def _ratio(r: float) -> str:
    return f"{r:.2f}x" if r >= 0.1 else f"{r:.2g}x"  # 0.0026x, not 0.00x


def markdown(report: dict[str, Any]) -> str:
    res = report["results"]
    systems = list(res)
    bases = ["dask-same", "dask-default"] + (["ray"] if "ray" in res else [])
    lines = ["| metric | " + " | ".join(systems) + " | " + " | ".join(f"labcluster / {b}" for b in bases) + " |",
             "|---" * (len(systems) + len(bases) + 1) + "|"]
    for key, label in METRICS:
        cells = [_cell(res[s], key) for s in systems]
        ratios = []
        for base in bases:
            a, b = res.get("labcluster", {}).get(key), res.get(base, {}).get(key)
            ratios.append(_ratio(a / b) if a and b else "-")
        lines.append(f"| {label} | " + " | ".join(cells) + " | " + " | ".join(ratios) + " |")
    lines.append("")
    lines.append("Ratios are labcluster's value over the other's: above 1 is better for rates (tasks/s, GB/s), "
                 "below 1 is better for times (ms, s).")
    if any(r.get("one_run") for r in res.values()):
        lines.append(f"\n\\* one run, without a warm-up: it took over {core.SLOW_S:g} s, so it was not repeated "
                     "(the benchmark stays bounded).")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--only", default=None, help="comma-separated systems")
    args = p.parse_args()
    report = run(args.repeat, set(args.only.split(",")) if args.only else None)
    print(core.save("core", report, markdown(report)))


if __name__ == "__main__":
    main()
