"""The ``labcluster`` command: ``demo``, ``scheduler``, ``worker``, ``status``.

Assemble a multi-process cluster by hand on one machine::

    labcluster scheduler --port 8786 &
    labcluster worker tcp://127.0.0.1:8786 --nthreads 2 --gpus sim:1 --resources special=1 &
    labcluster status tcp://127.0.0.1:8786

Every listener binds 127.0.0.1 unless ``--host`` says otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
from collections.abc import Sequence
from typing import Any


def _resources(items: Sequence[str]) -> dict[str, float]:
    from .cluster.groups import parse_resources

    try:
        return parse_resources(items)
    except ValueError as e:
        raise SystemExit(f"labcluster worker: {e}") from None


def _at_least(low: float, kind: type = int) -> Any:
    """An argparse type: a number of ``kind`` that is ``low`` or more (an error that names the option otherwise)."""
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid {kind.__name__} value: {text!r}") from None
        if not value >= low or value == float("inf"):  # nan and inf too
            noun = "a whole number" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"must be {noun} {low:g} or more, got {text}")
        return value

    return parse


def _writable(path: str) -> str:
    from .demo import check_output

    try:
        return check_output(path)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="labcluster", description=__doc__.split("\n")[0] if __doc__ else None)
    sub = p.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run one CPU -> GPU -> CPU pipeline bulk and pipelined, and compare them "
                                       "(simulated GPUs when none are found)")
    count, ms = _at_least(1), _at_least(0, float)
    demo.add_argument("--items", type=count, default=64, help="rows (images) through the pipeline (default 64)")
    demo.add_argument("--decode-ms", type=ms, default=20, help="CPU work per item in decode (default 20)")
    demo.add_argument("--infer-ms", type=ms, default=20, help="GPU time per item in inference (default 20)")
    demo.add_argument("--post-ms", type=ms, default=10, help="CPU work per item in post-processing (default 10)")
    demo.add_argument("--payload-kb", type=count, default=256, help="KB carried from stage to stage per item (256)")
    demo.add_argument("--rows-per-block", type=count, default=4, help="items a block holds: a task per block and stage "
                      "(default 4; 1 pays the per-task overhead on every item)")
    demo.add_argument("--modes", nargs="+", choices=("bulk", "pipelined"), default=["bulk", "pipelined"],
                      help="which executions to run and compare (default: both)")
    demo.add_argument("--output", type=_writable, default="labcluster-demo.html", help="where the HTML report goes")

    sch = sub.add_parser("scheduler", help="run a Dask scheduler (Ctrl-C or SIGTERM stops it)")
    sch.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    sch.add_argument("--port", type=int, default=8786)
    sch.add_argument("--dashboard-address", default="127.0.0.1:8787", help="'' disables the dashboard")

    wk = sub.add_parser("worker", help="run this machine's workers: a CPU worker plus one per GPU")
    wk.add_argument("address", help="scheduler address, e.g. tcp://127.0.0.1:8786")
    wk.add_argument("--nthreads", type=int, default=None, help="CPU slots of this node, its GPU workers' one each "
                    "included (default: cores)")
    wk.add_argument("--gpus", default="auto", help="auto (what NVML finds), N (real GPUs), or sim:N (simulated)")
    wk.add_argument("--resources", nargs="*", default=[], metavar="NAME=N", help="custom resources, e.g. special=1")
    wk.add_argument("--host", default="127.0.0.1", help="interface the workers bind (default 127.0.0.1)")
    wk.add_argument("--name", default=None, help="this node's name, the prefix of its workers' names "
                    "(<name>-cpu-0, <name>-gpu-0; default: the host name; give each node on one host its own)")

    st = sub.add_parser("status", help="show a cluster's workers and resources")
    st.add_argument("address")
    st.add_argument("--json", action="store_true", help="print lc.nodes() as JSON")
    st.add_argument("--timeout", type=float, default=10.0)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "demo":
        from .demo import run

        run(args.items, decode_ms=args.decode_ms, infer_ms=args.infer_ms, post_ms=args.post_ms,
            payload_kb=args.payload_kb, rows_per_block=args.rows_per_block, modes=tuple(args.modes),
            output=args.output)
        return 0
    if args.command == "scheduler":
        from .cluster.node import run_scheduler

        asyncio.run(run_scheduler(args.host, args.port, args.dashboard_address or None))
        return 0
    if args.command == "worker":
        from .cluster.node import node_groups, run_workers
        from .diagnostics import nvml

        probe = nvml.probe()
        try:
            groups = node_groups(args.nthreads, args.gpus, _resources(args.resources), probe)
        except ValueError as e:
            print(f"labcluster worker: {e}", file=sys.stderr)
            return 2
        prefix = (args.name or socket.gethostname()) + "-"
        asyncio.run(run_workers(args.address, groups, args.host, prefix, probe))
        return 0
    if args.command == "status":
        return _status(args.address, args.json, args.timeout)
    return 2


def _status(address: str, as_json: bool, timeout: float) -> int:
    import labcluster as lc

    from .cluster.info import total_resources, workers_table
    from .exceptions import ClusterError

    try:
        session = lc.init(address, timeout=timeout)
    except ClusterError as e:
        print(f"labcluster status: {e}", file=sys.stderr)
        return 1
    try:
        if as_json:
            print(json.dumps(lc.nodes(), indent=2))
        else:
            workers = session.workers()
            total = total_resources(workers)
            print(f"scheduler {session.address}: {len(workers)} workers, "
                  + ", ".join(f"{k} {v:g}" for k, v in sorted(total.items()) if k != "memory"))
            print(workers_table(workers))
    finally:
        lc.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
