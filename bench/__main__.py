"""``python -m bench``: run the benchmarks and print ratios, side by side, measured in one run.

Writes ``bench/results/core.json`` and ``bench/results/core.md``. Options: ``--repeat N`` (default 3),
``--only labcluster,dask-same,...``. No thresholds here or in tests: these are measurements.
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
           ("put_get_GBps", "put + get 100 MB (GB/s)"), ("cold_start_s", "cold start to first result (s)")]


def markdown(report: dict[str, Any]) -> str:
    res = report["results"]
    systems = list(res)
    lines = ["| metric | " + " | ".join(systems) + " | labcluster / dask-same | labcluster / dask-default |",
             "|---" * (len(systems) + 3) + "|"]
    for key, label in METRICS:
        cells = [f"{res[s][key]:.3g}" if key in res[s] else "-" for s in systems]
        ratios = []
        for base in ("dask-same", "dask-default"):
            a, b = res.get("labcluster", {}).get(key), res.get(base, {}).get(key)
            ratios.append(f"{a / b:.2f}x" if a and b else "-")
        lines.append(f"| {label} | " + " | ".join(cells) + " | " + " | ".join(ratios) + " |")
    lines.append("")
    lines.append("Ratios are labcluster's value over the other's: above 1 is better for rates (tasks/s, GB/s), "
                 "below 1 is better for times (ms, s).")
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
