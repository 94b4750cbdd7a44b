"""Spark's two classic jobs side by side in one run: a word count over ~50 MB of generated text, and a 2-way join of
1M keyed rows (two sides of 500,000), on labcluster.spark, a labcluster Dataset (word count only: Datasets have no
join), dask (bag for the words, dataframe for the join) and, when importable, PySpark ``local[2]``.

Every system computes the same answer (checked against the first). Printed per job: each system's median wall time
over the rounds, its ratio to labcluster.spark, and for labcluster.spark the peak bytes the workers held during the
job (the shuffle's objects among them, sampled every 50 ms from the scheduler). PySpark's JVM start is measured apart
and left out of its job times. Rounds alternate the systems (A B C A B C); each cluster is started once.

``python -m bench.spark [rounds] [megabytes]`` writes ``bench/results/spark.{json,md}``.
"""

from __future__ import annotations

import importlib.util
import operator
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

from .core import pyspark_context, save

ROWS = int(os.environ.get("BENCH_SPARK_ROWS", 500_000))  # a side of the join


def make_text(path: str, megabytes: int) -> int:
    """``megabytes`` of lines of words from a 5,000-word vocabulary with Zipf-like frequencies; returns the words."""
    rng = random.Random(11)
    vocab = [f"w{i}" for i in range(5000)]
    weights = [1 / (i + 1) for i in range(len(vocab))]
    words = 0
    target = megabytes * 2**20
    with open(path, "w") as f:
        written = 0
        while written < target:
            line = " ".join(rng.choices(vocab, weights, k=12))
            f.write(line + "\n")
            written += len(line) + 1
            words += 12
    return words


class Peak:
    """The most bytes the cluster's workers held while it ran (sampled from the scheduler every 50 ms)."""

    def __init__(self) -> None:
        import labcluster as lc
        from labcluster.api.calls import call

        self._client = lc.current_session().client
        self._call = call
        self.start = self.peak = int(call(self._client, "memory")["managed"])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, int(self._call(self._client, "memory")["managed"]))

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak - self.start


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def rdd_jobs(sc: Any, text: str, pairs: tuple[str, str]) -> tuple[Callable[[], Any], Callable[[], Any]]:
    """The two jobs as one PySpark program, for any SparkContext (labcluster's or PySpark's)."""

    def word_count() -> Any:
        counts = sc.textFile(text, 8).flatMap(str.split).map(lambda w: (w, 1)).reduceByKey(operator.add, 8)
        return dict(counts.collect())

    def join() -> Any:
        left = sc.textFile(pairs[0], 4).map(_pair)
        right = sc.textFile(pairs[1], 4).map(_pair)
        return left.join(right, 8).count()

    return word_count, join


def labcluster_jobs(text: str, pairs: tuple[str, str]) -> dict[str, Callable[[], Any]]:
    import labcluster as lc
    from labcluster.spark import SparkContext

    spark_wc, spark_join = rdd_jobs(SparkContext.getOrCreate(), text, pairs)

    def dataset_wc() -> Any:
        ds = lc.data.read_text(text, override_num_blocks=8).flat_map(
            lambda r: [{"word": w} for w in r["text"].split()])
        return {r["word"]: r["count()"] for r in ds.groupby("word").count().take_all()}

    return {"labcluster.spark word count": spark_wc, "labcluster.spark join": spark_join,
            "labcluster Dataset word count": dataset_wc}


def dask_jobs(text: str, pairs: tuple[str, str]) -> dict[str, Callable[[], Any]]:
    import dask.bag as db
    import dask.dataframe as dd

    def bag_wc() -> Any:
        return dict(db.read_text(text, blocksize=os.path.getsize(text) // 8 + 1).str.split().flatten()
                    .frequencies().compute())

    def df_join() -> Any:
        left = dd.read_csv(pairs[0], sep=" ", names=["k", "a"], blocksize=os.path.getsize(pairs[0]) // 4 + 1)
        right = dd.read_csv(pairs[1], sep=" ", names=["k", "b"], blocksize=os.path.getsize(pairs[1]) // 4 + 1)
        return int(left.merge(right, on="k", npartitions=8).shape[0].compute())

    return {"dask.bag word count": bag_wc, "dask.dataframe join": df_join}


def pyspark_jobs(text: str, pairs: tuple[str, str]) -> tuple[float, dict[str, Callable[[], Any]], Any]:
    sc, start = pyspark_context("bench-spark")
    wc, join = rdd_jobs(sc, text, pairs)
    return start, {"PySpark local[2] word count": wc, "PySpark local[2] join": join}, sc


def _pair(line: str) -> tuple[int, int]:
    k, v = line.split(" ")
    return int(k), int(v)


def make_pairs(directory: str) -> tuple[str, str]:
    """Two sides of 500,000 rows each, keys drawn from 0..499,999: about a million rows joined."""
    rng = random.Random(5)
    paths = (os.path.join(directory, "left.txt"), os.path.join(directory, "right.txt"))
    for path in paths:
        with open(path, "w") as f:
            f.writelines(f"{rng.randrange(ROWS)} {i}\n" for i in range(ROWS))
    return paths


def run(rounds: int = 3, megabytes: int = 50) -> tuple[dict[str, Any], str]:
    import labcluster as lc

    directory = tempfile.mkdtemp(prefix="labcluster-bench-spark-")
    text = os.path.join(directory, "words.txt")
    words = make_text(text, megabytes)
    pairs = make_pairs(directory)
    load0 = os.getloadavg()[0]
    from labcluster.spark import SparkContext

    # the cluster SparkContext("local[2]") starts: a worker process per slot, as PySpark's local[2] runs two Python
    # workers (plain Python work in two threads of one process would run one at a time)
    SparkContext("local[2]", "bench-spark")
    times: dict[str, list[float]] = {}
    peaks: dict[str, list[int]] = {}
    answers: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    try:
        jobs = {**labcluster_jobs(text, pairs), **dask_jobs(text, pairs)}
        for r in range(rounds):
            print(f"round {r + 1}/{rounds}", file=sys.stderr, flush=True)
            for name, fn in jobs.items():
                peak = Peak() if name.startswith("labcluster") else None
                wall, out = _timed(fn)
                if peak is not None:
                    peaks.setdefault(name, []).append(peak.stop())
                times.setdefault(name, []).append(wall)
                answers.setdefault(name, out)
    finally:
        SparkContext.getOrCreate().stop()
        lc.shutdown()
    if importlib.util.find_spec("pyspark") is not None:
        start, spark_jobs, sc = pyspark_jobs(text, pairs)
        extra["pyspark_jvm_start_s"] = start
        try:
            for r in range(rounds):
                print(f"pyspark round {r + 1}/{rounds}", file=sys.stderr, flush=True)
                for name, fn in spark_jobs.items():
                    wall, out = _timed(fn)
                    times.setdefault(name, []).append(wall)
                    answers.setdefault(name, out)
        finally:
            sc.stop()
    reference = {"word count": answers["labcluster.spark word count"], "join": answers["labcluster.spark join"]}
    for name, out in answers.items():
        job = "word count" if "word count" in name else "join"
        if out != reference[job]:
            raise AssertionError(f"{name} gave another answer than labcluster.spark")
    load1 = os.getloadavg()[0]
    results = {name: {"median_s": statistics.median(ts), "runs_s": ts,
                      **({"peak_bytes": max(peaks[name])} if name in peaks else {})} for name, ts in times.items()}
    results["_meta"] = {"words": words, "megabytes": megabytes, "join_rows": 2 * ROWS,
                        "joined_rows": reference["join"], "load": [load0, load1], **extra}
    return results, markdown(results)


def markdown(results: dict[str, Any]) -> str:
    meta = results["_meta"]
    lines = [f"word count over {meta['megabytes']} MB ({meta['words']:,} words), join of {meta['join_rows']:,} keyed "
             f"rows ({meta['joined_rows']:,} joined); load average {meta['load'][0]:.2f} before, "
             f"{meta['load'][1]:.2f} after", "", "| system | median (s) | runs (s) | x labcluster.spark | peak held |",
             "|---|---|---|---|---|"]
    for job in ("word count", "join"):
        base = results[f"labcluster.spark {job}"]["median_s"]
        for name, r in results.items():
            if name.startswith("_") or job not in name:
                continue
            peak = f"{r['peak_bytes'] / 2**20:.0f} MiB" if "peak_bytes" in r else "-"
            runs = " / ".join(f"{t:.2f}" for t in r["runs_s"])
            lines.append(f"| {name} | {r['median_s']:.2f} | {runs} | {r['median_s'] / base:.2f}x | {peak} |")
    if "pyspark_jvm_start_s" in meta:
        lines.append(f"\nPySpark's JVM start (not in its times): {meta['pyspark_jvm_start_s']:.1f} s")
    else:
        lines.append("\nPySpark: not installed (-)")
    return "\n".join(lines)


if __name__ == "__main__":
    res, md = run(int(sys.argv[1]) if len(sys.argv) > 1 else 3, int(sys.argv[2]) if len(sys.argv) > 2 else 50)
    print(save("spark", res, md))
