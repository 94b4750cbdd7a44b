"""Datasets on a real heterogeneous cluster (process workers: a 2-slot CPU worker and a simulated-GPU worker).

What the two executors promise is read from the task records: bulk runs stage by stage, pipelined overlaps
stages, GPU operators run only on GPU workers, backpressure bounds the blocks out per operator, and a worker
SIGKILLed mid-pipeline costs no row and duplicates none.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import labcluster as lc
from labcluster.api.calls import call
from labcluster.exceptions import InfeasibleResourceError


@pytest.fixture(scope="module", autouse=True)
def cluster(hetero: lc.Session) -> Iterator[lc.Session]:
    yield hetero


def _since() -> int:
    from labcluster.api.history import next_index

    return next_index()


def _spans(since: int) -> dict[str, tuple[float, float, set[str]]]:
    """Per stage: first start, last end, workers it ran on (a lost block rebuilt later is recovery, not the
    stage's run: reconstructions are left out)."""
    out: dict[str, tuple[float, float, set[str]]] = {}
    for r in lc.list_tasks(since=since):
        if r["stage"] is None or r["state"] != "finished" or r["reconstruction"]:
            continue
        lo, hi, workers = out.get(r["stage"], (float("inf"), 0.0, set()))
        out[r["stage"]] = (min(lo, r["started"]), max(hi, r["finished"]), workers | {r["worker_name"]})
    return out


def slow_cpu(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    time.sleep(0.02)
    return {"id": batch["id"], "x": batch["id"] * 2}


class Doubler:
    def __init__(self, factor: int) -> None:
        self.factor = factor
        self.gpus = lc.get_gpu_ids()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        time.sleep(0.02)
        return {"id": batch["id"], "x": batch["x"] * self.factor, "gpu": np.array([len(self.gpus)] * len(batch["id"]))}


def _pipeline(n: int = 16) -> lc.data.Dataset:
    return (lc.data.range(n, override_num_blocks=n).map_batches(slow_cpu)  # a block a row: blocks to pipeline
            .map_batches(Doubler, fn_constructor_args=(3,), num_gpus=1, concurrency=1)
            .map(lambda r: {**r, "y": r["x"] + 1}))


# -- the two modes -------------------------------------------------------------------------------------------

def test_bulk_runs_stage_by_stage_and_pipelined_overlaps_them_with_the_same_rows() -> None:
    ds = _pipeline()
    since = _since()
    bulk = ds.take_all(mode="bulk")
    spans = _spans(since)
    stages = ["ReadRange->MapBatches(slow_cpu)", "MapBatches(Doubler)", "Map(<lambda>)"]
    assert set(stages) <= set(spans), spans
    for before, after in itertools.pairwise(stages):  # no task of stage k+1 starts before stage k's last one ends
        late = [{k: r[k] for k in ("key", "attempt", "worker_name", "started", "finished", "reason")}
                for r in lc.list_tasks(since=since) if r["stage"] == before and r["finished"] > spans[after][0]]
        assert spans[after][0] >= spans[before][1], (before, after, spans, late)

    since = _since()
    piped = sorted(ds.take_all(mode="pipelined"), key=lambda r: r["id"])
    spans = _spans(since)
    assert spans[stages[1]][0] < spans[stages[0]][1]  # the GPU stage started before the read stage ended
    assert spans[stages[2]][0] < spans[stages[1]][1]
    assert [r["id"] for r in piped] == list(range(16)) == [r["id"] for r in bulk]
    assert piped == bulk and bulk[5] == {"id": 5, "x": 30, "gpu": 1, "y": 31}
    assert spans[stages[1]][2] == {"gpu-0"} and spans[stages[0]][2] == {"cpu-0"}  # GPU stage only on the GPU worker


def test_explain_repr_and_stats_show_the_plan_and_what_ran() -> None:
    ds = _pipeline()
    text = ds.explain()
    assert "1. ReadRange->MapBatches(slow_cpu)  [CPU: 1; a task per block]" in text
    assert "2. MapBatches(Doubler)  [GPU: 1; actor pool of 1]" in text and "3. Map(<lambda>)" in text
    assert repr(ds) == "Dataset(ReadRange -> MapBatches(slow_cpu) -> MapBatches(Doubler) -> Map(<lambda>); 16 blocks)"
    assert "<table>" in ds._repr_html_() and "GPU: 1; 1 actor" in ds._repr_html_()
    with pytest.raises(RuntimeError, match="has not run yet"):
        ds.stats()
    assert ds.count(mode="pipelined") == 16
    stats = ds.stats()
    assert [s.blocks for s in stats.stages] == [16, 16, 16] and stats.stages[1].rows == 16
    assert stats.stages[1].task_wall >= 16 * 0.02 and "MapBatches(Doubler): 16 blocks" in repr(stats)
    assert "<table>" in stats._repr_html_() and stats.to_dict()["mode"] == "pipelined"


def test_a_slow_consumer_keeps_blocks_out_within_the_bound_and_memory_flat() -> None:
    big = lc.data.range(60, override_num_blocks=60).map_batches(
        lambda b: {"id": b["id"], "payload": np.ones((len(b["id"]), 64 * 1024), dtype=np.uint8)})
    with lc.data.execution(mode="pipelined", max_blocks_per_operator=3):
        seen = 0
        for batch in big.iter_batches(batch_size=None):
            time.sleep(0.03)  # a consumer slower than the producer
            seen += len(batch["id"])
    assert seen == 60
    stats = big.stats()
    assert all(s.max_out <= 3 for s in stats.stages), [(s.name, s.max_out) for s in stats.stages]
    block = 64 * 1024
    # 60 blocks of 64 KiB went through; never more than the bound's worth (plus one being handed over) was held
    assert stats.peak_bytes <= 4 * block * 1.1, stats.peak_bytes
    assert stats.peak_worker_bytes <= 6 * block * 1.1, stats.peak_worker_bytes  # measured by the scheduler
    assert stats.peak_worker_bytes >= block  # ... and really measured


def test_bulk_holds_every_block_of_a_stage_before_the_next_starts() -> None:
    big = lc.data.range(20, override_num_blocks=20).map_batches(
        lambda b: {"id": b["id"], "payload": np.ones((len(b["id"]), 64 * 1024), dtype=np.uint8)}
    ).map_batches(lambda b: time.sleep(0.1) or {"id": b["id"]}, num_cpus=0.5)  # other resources: its own stage
    assert big.count(mode="bulk") == 20
    stats = big.stats()
    assert stats.peak_bytes >= 20 * 64 * 1024  # the executor's count, from the blocks' own sizes
    # the scheduler's, taken at every result stored, from Dask's sizeof of each block: a few percent under
    # pyarrow's nbytes
    assert stats.peak_worker_bytes >= 0.9 * 20 * 64 * 1024, stats.peak_worker_bytes
    assert _memory_watches() == 0


def _memory_watches() -> int:
    """Watches of the workers' held bytes still open on the scheduler (each execution opens one and ends it)."""
    return int(lc.current_session().client.run_on_scheduler(
        lambda dask_scheduler: len(dask_scheduler.extensions["labcluster"].memory_watches)))


def test_a_memory_watch_begins_on_the_client_stream_and_one_ended_first_never_opens() -> None:
    session = lc.current_session()
    assert "memory_watch" in session.extension["stream_ops"]
    # sent on the batched stream, then a task: the scheduler has the watch before the task's result is stored
    session.send("memory_watch", id="watch-in-order")
    ref = lc.remote(lambda: np.ones(1 << 20, dtype=np.uint8)).remote()
    lc.get(ref, timeout=20)
    reply = call(session.client, "memory_watch", id="watch-in-order", stop=True)
    assert reply["peak"] - reply["start"] >= 1 << 20, reply
    # a run with nothing to watch can end its watch (an RPC) before the beginning (on the stream) arrives
    assert call(session.client, "memory_watch", id="watch-overtaken", stop=True)["peak"] >= 0
    session.send("memory_watch", id="watch-overtaken")
    lc.get(lc.remote(lambda: 1).remote(), timeout=20)  # sent after it on the same stream: it was handled by now
    assert _memory_watches() == 0


def test_breaking_off_stops_the_execution_and_kills_its_actors() -> None:
    ds = lc.data.range(200, override_num_blocks=200).map(lambda r: {"id": r["id"], "x": r["id"]}).map_batches(
        Doubler, fn_constructor_args=(2,), num_gpus=1, concurrency=1)
    for i, _ in enumerate(ds.iter_batches(batch_size=None)):
        if i == 2:
            break
    from conftest import wait_until

    assert wait_until(lambda: all(a["state"] == "DEAD" for a in lc.list_actors()
                                  if a["class_name"] == "MapBatches_Doubler"), timeout=20)
    # nothing of it keeps running: a new task gets the slots at once
    assert lc.get(lc.remote(lambda: 1).remote(), timeout=20) == 1
    assert ds.stats().stages[-1].blocks < 200
    assert wait_until(lambda: _memory_watches() == 0, timeout=20)  # its memory watch ended with it


def test_running_blocks_end_at_their_next_row_once_the_execution_stops() -> None:
    """Python cannot stop a thread: a block's loop over its rows asks whether its execution still wants it, so a
    consumer that breaks off frees the slots at once, not when the blocks would have ended (here ~30 s)."""
    from conftest import wait_until

    def slow_after_first_block(row: dict[str, Any]) -> dict[str, Any]:
        if row["id"] >= 60:
            time.sleep(0.5)
        return row

    ds = lc.data.range(180, override_num_blocks=3).map(slow_after_first_block)
    for _ in ds.iter_batches(batch_size=None):
        break  # the first block is in; the other two run on both CPU slots
    assert wait_until(lambda: lc.available_resources().get("CPU", 0) == 2, timeout=10)
    stats = ds.stats().stages[0]
    assert stats.blocks == 1 and stats.rows == 60


def _data_topics() -> list[str]:
    """The scheduler's event topics for dataset block reports (it keeps every topic it has seen)."""
    return sorted(lc.current_session().client.run_on_scheduler(
        lambda dask_scheduler: [t for t in dask_scheduler._broker._topics if t.startswith("labcluster-data")]))


def test_runs_report_their_blocks_on_one_topic_that_does_not_grow() -> None:
    ds = lc.data.range(8, override_num_blocks=4).map(lambda r: {"id": r["id"] * 2})
    for mode in ("bulk", "pipelined", "bulk"):
        assert ds.count(mode=mode) == 8
    for _ in zip(range(1), ds.iter_batches(batch_size=None), strict=False):  # one stopped early: its late reports
        pass
    assert ds.take_all()[-1] == {"id": 14}
    session = lc.current_session()
    assert _data_topics() == [f"labcluster-data-{session.client.id}"]  # one for this session, not one a run
    from conftest import wait_until

    from labcluster.data.reports import BlockReports

    assert wait_until(lambda: not session.part(BlockReports)._reports, timeout=10)  # each run forgot its reports


# -- sources, operators, consumers ---------------------------------------------------------------------------

def test_sources_read_on_the_workers(tmp_path: Any) -> None:
    df = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]})
    pq.write_table(pa.Table.from_pandas(df), tmp_path / "one.parquet")
    pq.write_table(pa.Table.from_pandas(df), tmp_path / "two.parquet")
    df.to_csv(tmp_path / "t.csv", index=False)
    (tmp_path / "t.jsonl").write_text("\n".join(json.dumps(r) for r in df.to_dict("records")))
    (tmp_path / "t.txt").write_text("hello\n\nworld\n")  # an empty line: left out, as Ray's read_text does
    ds = lc.data.read_parquet(tmp_path)
    assert ds.num_blocks() == 2 and ds.count() == 6 and ds.take(1) == [{"a": 1, "b": "x"}]
    assert lc.data.read_parquet(str(tmp_path / "one.parquet"), columns=["b"]).take_all() == [
        {"b": "x"}, {"b": "y"}, {"b": "z"}]
    with pytest.raises(KeyError, match=r"no column 'nope'; '.*one.parquet' has 'a', 'b'"):  # at once, in the driver
        lc.data.read_parquet(str(tmp_path / "one.parquet"), columns=["b", "nope"])
    pq.write_table(pa.table({"s": [{"a": 1, "b": 2}]}), tmp_path / "nested.parquet")
    assert lc.data.read_parquet(str(tmp_path / "nested.parquet"), columns=["s.a"]).count() == 1  # a nested path
    assert lc.data.read_csv(tmp_path / "t.csv").to_pandas().equals(df)
    assert lc.data.read_json(tmp_path / "t.jsonl").take_all()[2] == {"a": 3, "b": "z"}
    assert lc.data.read_text(tmp_path / "t.txt").take_all() == [{"text": "hello"}, {"text": "world"}]
    assert lc.data.read_text(tmp_path / "t.txt", drop_empty_lines=False).count() == 3
    binary = lc.data.read_binary_files(tmp_path / "t.txt").take_all()
    assert binary == [{"bytes": b"hello\n\nworld\n", "path": str(tmp_path / "t.txt")}]
    assert lc.data.from_pandas(df).to_pandas().equals(df)
    assert lc.data.from_arrow(pa.Table.from_pandas(df)).count() == 3
    arr = np.arange(12).reshape(3, 2, 2)
    got = lc.data.from_numpy(arr).take_batch(3)["data"]
    assert got.shape == (3, 2, 2) and (got == arr).all()
    assert lc.data.from_items([{"k": 1}, {"k": 2}]).take_all() == [{"k": 1}, {"k": 2}]
    assert lc.data.from_items([5, 6]).take_all() == [{"item": 5}, {"item": 6}]
    since = _since()
    lc.data.read_csv(tmp_path / "t.csv").count()
    readers = [r for r in lc.list_tasks(since=since) if r["stage"] == "ReadCSV"]
    assert readers and all(r["worker_name"] == "cpu-0" for r in readers)  # read in tasks, not in the driver


def test_small_sources_make_blocks_by_ray_datas_rule(tmp_path: Any) -> None:
    """Without override_num_blocks: 200 blocks, or a row (file) a block when fewer; range and in-memory tables make
    no block under 1 MiB unless that leaves CPU slots idle (twice the cluster's CPU slots, here 2);
    override_num_blocks= decides when given."""
    slots = int(lc.cluster_resources()["CPU"])
    assert lc.data.range(10_000).num_blocks() == 2 * slots  # 80 KB
    assert lc.data.range(3).num_blocks() == 3  # fewer rows than that
    assert lc.data.range(2_000_000).num_blocks() == 15  # 16 MB: 1 MiB blocks and more
    assert lc.data.range(10**8).num_blocks() == 200
    assert lc.data.from_numpy(np.zeros(1000)).num_blocks() == 2 * slots
    assert lc.data.from_items([{"x": i} for i in range(1000)]).num_blocks() == 200  # work items: a row a block
    assert lc.data.range(10_000, override_num_blocks=50).num_blocks() == 50
    assert lc.data.range(3, override_num_blocks=10).num_blocks() == 3  # never more blocks than rows
    import pickle

    from labcluster.data.sources import table_source

    table = pa.table({"x": np.arange(100_000)})  # 800 kB
    read = table_source("FromArrow", table, 100).tasks[7]
    assert len(pickle.dumps(read)) < 20_000 and read.read().column("x")[0].as_py() == 7_000  # its rows, not the table
    assert lc.data.from_items([], override_num_blocks=5).num_blocks() == 1
    for i in range(30):
        (tmp_path / f"{i:02d}.txt").write_text("a line\n" * 10)
    from labcluster.data.sources import cpu_slots

    # 30 tiny files (2 kB in all): by their bytes, blocks enough for the CPU slots, not a file each
    assert lc.data.read_text(tmp_path).num_blocks() == min(30, 2 * cpu_slots())
    assert lc.data.read_text(tmp_path, override_num_blocks=3).count() == 300


def test_images_are_read_as_arrays(tmp_path: Any) -> None:
    from PIL import Image

    for i in range(3):
        Image.fromarray(np.full((4, 5, 3), i * 40, dtype=np.uint8)).save(tmp_path / f"{i}.png")
    batch = lc.data.read_images(tmp_path).take_batch(3)
    assert batch["image"].shape == (3, 4, 5, 3) and batch["image"][2].max() == 80
    small = lc.data.read_images(tmp_path, size=(2, 2), mode="L").take(1)[0]["image"]
    assert small.shape == (2, 2)


def test_tensor_columns_keep_their_ndim_and_ragged_rows_round_trip() -> None:
    import labcluster.data.blocks as blocks
    from labcluster.data.tensors import VariableShapeTensorType

    assert VariableShapeTensorType(pa.float64(), 2) != VariableShapeTensorType(pa.float64(), 3)
    with pytest.raises(TypeError, match="column 'a' holds arrays of 1 and 2 dimensions"):
        blocks.concat([blocks.to_block({"a": np.zeros((2, 2, 2))}, "x"), blocks.to_block({"a": np.zeros((2, 3))}, "y")])
    ragged = blocks.concat([blocks.to_block({"a": np.zeros((2, 2))}, "x"), blocks.to_block({"a": np.ones((1, 3))}, "y")])
    back = blocks.to_block(blocks.to_batch(ragged, "numpy"), "echo")  # an identity batch function
    uniform = blocks.to_block({"a": np.zeros((1, 2))}, "z")
    assert [a.shape for a in blocks.to_batch(blocks.concat([back, uniform]), "numpy")["a"]] == [(2,), (2,), (3,), (2,)]
    gap = blocks.to_batch(blocks.concat([ragged, blocks.to_block({"b": [1]}, "w")]), "numpy")["a"]
    assert gap[-1] is None  # a row without the column: None, not an empty array


def test_images_of_different_sizes_are_one_array_a_row(tmp_path: Any) -> None:
    from PIL import Image

    for i in range(4):  # photos of four sizes: a variable-shaped tensor column, as Ray Data gives
        Image.fromarray(np.full((4 + i, 5, 3), i, dtype=np.uint8)).save(tmp_path / f"{i}.png")
    ds = lc.data.read_images(tmp_path)
    batch = ds.take_batch(4)
    assert batch["image"].dtype == object and [a.shape for a in batch["image"]] == [(4 + i, 5, 3) for i in range(4)]
    assert [a.max() for a in batch["image"]] == [0, 1, 2, 3]
    echoed = ds.map_batches(lambda b: b, batch_size=2)  # the object array back: the same column
    assert [r["image"].shape[0] for r in echoed.repartition(1).take_all()] == [4, 5, 6, 7]
    assert [a.shape[0] for a in ds.to_pandas()["image"]] == [4, 5, 6, 7]
    assert sorted(r["image"].shape[0] for r in ds.random_shuffle(seed=0).take_all()) == [4, 5, 6, 7]
    rows = lc.data.from_items([{"a": np.ones((i + 1, 2))} for i in range(3)]).take_batch(3)["a"]
    assert [a.shape for a in rows] == [(1, 2), (2, 2), (3, 2)]


def test_ray_data_habits_get_an_answer_naming_the_fix() -> None:
    import traceback

    ds = lc.data.range(12, override_num_blocks=3)
    with pytest.raises(TypeError, match=r"lc.data.range\(\) has no keyword 'parallelism': use override_num_blocks"):
        lc.data.range(10, parallelism=4)
    with pytest.raises(TypeError, match=r"has no keyword 'batch_sise' \(did you mean 'batch_size'\?\); it takes "
                                        r"Dataset.iter_batches\(\*, batch_size"):
        ds.iter_batches(batch_sise=4)
    assert sum(len(b["id"]) for b in ds.iter_batches(batch_size=5, prefetch_batches=2)) == 12  # Ray's: accepted
    with pytest.raises(TypeError, match=r"Dataset.take\(\) takes 1 positional argument\(s\), 2 given"):
        ds.take(1, 2)
    with pytest.raises(AttributeError, match="iter_torch_batches is Ray Data's.*torch.as_tensor"):
        ds.iter_torch_batches()
    assert ds.size_bytes() == 12 * 8 and ds.materialize().size_bytes() == 12 * 8
    assert "(none: its blocks are held already)" in str(ds.materialize().explain())
    with pytest.raises(TypeError, match="lc.data.from_items: a column's values cannot be stored.*of one type"):
        lc.data.from_items([1, "a"])
    with lc.data.execution("bulk"):  # the mode as its first argument, as mode= too
        mapped = ds.map(lambda r: r)
        assert mapped.count() == 12 and mapped.stats().mode == "bulk"
    for bad, message in [(lambda: lc.data.execution(mode="Bulk"), r"got 'Bulk' \(did you mean 'bulk'\?\)"),
                         (lambda: ds.take(1, mode="streaming"), "streaming execution is 'pipelined' here"),
                         (lambda: ds.take("3"), "take: limit must be an int >= 0, got '3'"),
                         (lambda: ds.iter_batches(batch_size=0), "batch_size must be an int >= 1 or None, got 0")]:
        with pytest.raises(ValueError, match=message) as err:
            bad()
        # at the caller's line: this test's frame, its lambda, and the one frame of the public call
        assert len(traceback.extract_tb(err.value.__traceback__)) <= 3, traceback.format_tb(err.value.__traceback__)


def test_all_to_all_stages_straight_after_held_blocks_and_empty_blocks(tmp_path: Any) -> None:
    import pandas as pd

    held = lc.data.range(30, override_num_blocks=3).materialize()  # blocks held already: a sort first (it hung)
    assert held.sort("id", descending=True).take(2) == [{"id": 29}, {"id": 28}] and held.sum("id") == 435
    assert held.repartition(2).num_blocks() == 2 and held.repartition(2).count() == 30
    assert lc.data.range(10).union(lc.data.range(5)).sum("id") == 55
    # blocks a filter empties, then a map: no block loses the dataset's columns, no function runs on no rows
    ds = lc.data.range(20, override_num_blocks=4).filter(lambda r: r["id"] >= 10).map(lambda r: {"x": r["id"]})
    assert sorted(r["x"] for r in ds.select_columns(["x"]).take_all()) == list(range(10, 20))
    assert ds.map_batches(lambda b: {"z": b["x"] + 1}).count() == 10
    none = lc.data.range(8, override_num_blocks=2).map(lambda r: {"k": r["id"] % 3}).filter(lambda r: False)
    assert none.groupby("k").count().take_all() == [] and none.sort("k").take_all() == [] and none.sum("k") is None
    dropped = lc.data.range(8, override_num_blocks=2).add_column("w", lambda df: df["id"]).filter(
        lambda r: r["id"] >= 4).drop_columns(["w"])  # an empty block passes select/drop as they are
    assert dropped.to_arrow().column_names == ["id"] and dropped.select_columns(["id"]).count() == 4
    made = lc.data.range(8, override_num_blocks=2).filter(lambda r: r["id"] >= 4).map_batches(lambda b: {"v": b["id"]})
    assert made.schema().names == ["v"]  # not the first (empty) block's: it has no columns
    sorted_held = held.sort("id")
    sorted_held.count()
    assert sorted_held.stats().peak_bytes > 0  # the held blocks count while the sort holds them
    twice = lc.data.range(4).map(lambda r: r)
    both = twice.union(twice)
    both.take_all()
    assert len(both.stats().stages) == 2 and both.stats().stages[0] is not both.stats().stages[1]
    # sort: a flag per key, as Ray's; categorical columns sort and group by their values
    df = pd.DataFrame({"a": [3, 1, 3, 2], "b": [0, 9, 5, 2], "c": pd.Categorical(["y", "x", "y", "z"])})
    frame = lc.data.from_pandas(df)
    assert [(r["a"], r["b"]) for r in frame.sort(["a", "b"], descending=[True, False]).take_all()] == [
        (3, 0), (3, 5), (2, 2), (1, 9)]
    assert [r["c"] for r in frame.sort("c").take_all()] == ["x", "y", "y", "z"] and frame.unique("c") == ["x", "y", "z"]
    with pytest.raises(ValueError, match=r"descending must be a bool or one bool per key \(2\)"):
        frame.sort(["a", "b"], descending=[True])
    with pytest.raises(lc.exceptions.TaskError, match="a CSV file cannot hold the array column.*write_parquet"):
        lc.data.from_numpy(np.zeros((3, 2, 2))).write_csv(str(tmp_path / "csv"))
    # a union compared: its parts' run is its run (wall, records), and its report draws
    union = lc.data.range(12).map(lambda r: r).union(lc.data.range(6).map(lambda r: r))
    report = lc.compare(union, modes=("pipelined",))
    run = report.median("pipelined")
    assert run.wall > 0 and run.rows and [s.name for s in run.stats.stages] == ["ReadRange->Map(<lambda>)"] * 2
    report.to_html(str(tmp_path / "union.html"))
    with pytest.raises(ValueError, match="modes must name each mode to run once"):
        lc.compare(union, modes=("bulk", "bulk"))


def test_operators_and_consumers() -> None:
    ds = lc.data.range(20, override_num_blocks=4)
    assert ds.map(lambda r: {"v": r["id"] * 2}).filter(lambda r: r["v"] % 4 == 0).count() == 10
    assert ds.flat_map(lambda r: [r, r]).count() == 40
    pandas_batches = ds.map_batches(lambda df: df.assign(w=df["id"] + 1), batch_format="pandas", batch_size=3)
    assert pandas_batches.take(2) == [{"id": 0, "w": 1}, {"id": 1, "w": 2}]
    arrow = ds.map_batches(lambda t: t.append_column("z", t.column("id")), batch_format="pyarrow")
    assert arrow.columns() == ["id", "z"]
    added = ds.add_column("neg", lambda df: -df["id"])
    assert added.take(2) == [{"id": 0, "neg": 0}, {"id": 1, "neg": -1}]
    assert added.drop_columns(["id"]).take(1) == [{"neg": 0}] and added.select_columns(["neg"]).columns() == ["neg"]
    assert [r["id"] for r in ds.limit(7).take_all()] == list(range(7))
    assert ds.repartition(3).materialize().num_blocks() == 3
    shuffled = [r["id"] for r in ds.random_shuffle(seed=0).take_all()]
    assert sorted(shuffled) == list(range(20)) and shuffled != list(range(20))
    assert [r["id"] for r in ds.random_shuffle(seed=1).sort("id", descending=True).take(3)] == [19, 18, 17]
    grouped = ds.map(lambda r: {"k": r["id"] % 3, "v": r["id"]}).groupby("k")
    assert grouped.count().take_all() == [{"k": 0, "count()": 7}, {"k": 1, "count()": 7}, {"k": 2, "count()": 6}]
    assert grouped.sum("v").take_all()[0] == {"k": 0, "sum(v)": 63}
    assert ds.groupby(None).mean("id").take_all() == [{"mean(id)": 9.5}]
    # Ray Data's whole-dataset aggregates: a value for one column, a dict for several, None when there are no rows
    assert (ds.sum("id"), ds.min("id"), ds.max("id"), ds.mean("id")) == (190, 0, 19, 9.5)
    assert round(ds.std("id"), 4) == 5.9161 and round(ds.std("id", ddof=0), 4) == 5.7663  # the sample's, as Ray
    assert grouped.std("v").take_all()[0] == {"k": 0, "std(v)": pytest.approx(6.4807, abs=1e-4)}
    assert ds.map(lambda r: {"id": r["id"], "two": 2}).sum(["id", "two"]) == {"sum(id)": 190, "sum(two)": 40}
    assert ds.map(lambda r: {"k": r["id"] % 3}).unique("k") == [0, 1, 2]
    assert lc.data.range(0).sum("id") is None
    nothing = ds.map(lambda r: {"id": r["id"]}).filter(lambda r: False)  # no rows, and no columns left
    assert (nothing.sum("id"), nothing.mean("id")) == (None, None) and nothing.groupby(None).count().take_all() == [
        {"count()": 0}]
    assert ds.limit(2).union(ds.limit(1)).take_all() == [{"id": 0}, {"id": 1}, {"id": 0}]
    sizes = [len(b["id"]) for b in ds.iter_batches(batch_size=6)]
    assert sorted(sizes) == [2, 6, 6, 6]
    assert sorted(r["id"] for r in ds.iter_rows()) == list(range(20))
    assert ds.schema().names == ["id"] and ds.to_arrow().num_rows == 20
    m = ds.map(lambda r: {"id": r["id"] + 100}).materialize()
    assert m.take(1) == [{"id": 100}] and m.count() == 20


def test_write_parquet_and_csv_from_the_workers(tmp_path: Any) -> None:
    ds = lc.data.range(9, override_num_blocks=3).map(lambda r: {"id": r["id"], "sq": r["id"] ** 2})
    files = ds.write_parquet(str(tmp_path / "out"))
    assert len(files) == 3 and all(f.endswith(".parquet") for f in files)
    assert sorted(r["sq"] for r in lc.data.read_parquet(str(tmp_path / "out")).take_all()) == [i * i for i in range(9)]
    assert len(ds.write_csv(str(tmp_path / "csv"))) == 3


def test_every_task_runs_in_its_operator_stage_and_the_lineage_groups_by_stage() -> None:
    since = _since()
    materialized = _pipeline(4).materialize(mode="bulk")
    stages = {r["stage"] for r in lc.list_tasks(since=since)}
    assert {"ReadRange->MapBatches(slow_cpu)", "MapBatches(Doubler)", "Map(<lambda>)"} <= stages
    graph = materialized.lineage().stages.to_dict()
    assert {n["group"] for n in graph["nodes"]} == {"ReadRange->MapBatches(slow_cpu)", "MapBatches(Doubler)",
                                                    "Map(<lambda>)"}, graph
    assert {(e["source"], e["target"]) for e in graph["edges"]} == {
        ("ReadRange->MapBatches(slow_cpu)", "MapBatches(Doubler)"), ("MapBatches(Doubler)", "Map(<lambda>)")}


# -- bad input -----------------------------------------------------------------------------------------------

def _raises_row(r: dict[str, Any]) -> dict[str, Any]:
    if r["id"] == 7:
        raise ValueError("bad row")
    return r


def test_a_failing_operator_names_itself_the_block_and_the_row() -> None:
    ds = lc.data.range(12, override_num_blocks=3).map(_raises_row)
    with pytest.raises(ValueError, match="bad row") as info:
        ds.take_all()
    text = str(info.value)
    assert "in dataset operator 'Map(_raises_row)', row 3 of block 1" in text
    assert 'raise ValueError("bad row")' in text  # the remote traceback, with its source line
    from conftest import wait_until

    assert wait_until(lambda: _memory_watches() == 0, timeout=20)  # a failed run ends its memory watch too


def test_bad_input_fails_fast_with_the_fix() -> None:
    ds = lc.data.range(4)
    with pytest.raises(ValueError, match="batch_format must be one of 'numpy', 'pandas', 'pyarrow', got 'dict'"):
        ds.map_batches(lambda b: b, batch_format="dict")
    with pytest.raises(TypeError, match="returned int; a batch function must return a dict") as wrong:
        ds.map_batches(lambda b: 3).take_all()
    assert "Traceback" not in str(wrong.value)  # labcluster's own message: no frame of labcluster's above it
    with pytest.raises(TypeError, match="map's function must return a dict"):
        ds.map(lambda r: 3).take_all()
    with pytest.raises(KeyError, match="no column 'nope'; the block has 'id'") as missing:
        ds.select_columns(["nope"]).take_all()
    assert "MissingColumnError: dataset operator 'SelectColumns(nope)'" in str(missing.value)  # unquoted (KeyError's
    # own text is its repr)
    with pytest.raises(TypeError, match="unknown Map option 'batch_size'.*a row is not a batch"):
        ds.map(lambda r: r, batch_size=3)
    with pytest.raises(TypeError, match=r"Doubler\(\) cannot be constructed .*fn_constructor_args"):
        ds.map_batches(Doubler, num_gpus=1)
    with pytest.raises(FileNotFoundError, match="lc.data.read_parquet: no such file or directory: '/nonexistent"):
        lc.data.read_parquet("/nonexistent/x.parquet")
    with pytest.raises(TypeError, match="unknown lc.data.execution setting 'mod'"):
        with lc.data.execution(mod="bulk"):
            pass
    with pytest.raises(ValueError, match="execution mode must be 'pipelined' or 'bulk'"):
        ds.take_all(mode="streaming")


class NoModel:
    def __init__(self) -> None:
        raise RuntimeError("no model file at /models/x.pt")

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return batch


def test_an_actor_pool_whose_constructor_raises_fails_with_its_error_and_leaves_nothing_running() -> None:
    ds = lc.data.range(8).map_batches(NoModel, num_gpus=1, concurrency=1)
    since = _since()
    dead = r"actor MapBatches_NoModel-\w+ is dead: RuntimeError: no model file at /models/x.pt"
    with pytest.raises(lc.exceptions.ActorDiedError, match=dead):
        ds.take_all()
    from conftest import wait_until

    assert wait_until(lambda: all(r["state"] != "running" for r in lc.list_tasks(since=since)), timeout=10)
    assert lc.get(lc.remote(num_gpus=1)(lambda: "the GPU is free again").remote(), timeout=30)


def test_a_malformed_csv_names_the_file(tmp_path: Any) -> None:
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n3,4,5\n")
    with pytest.raises(ValueError, match=r"cannot read '.*bad.csv' .*valid CSV file"):
        lc.data.read_csv(tmp_path / "bad.csv").take_all()


def test_a_gpu_operator_without_gpus_fails_before_anything_runs() -> None:
    ds = lc.data.range(4).map_batches(lambda b: b, num_gpus=2)
    since = _since()
    started = time.perf_counter()
    with pytest.raises(InfeasibleResourceError, match="GPU"):
        ds.take_all()
    assert time.perf_counter() - started < 5
    assert not [r for r in lc.list_tasks(since=since) if r["stage"]]  # not even the read ran


def test_actor_pools_the_cluster_cannot_hold_fail_before_anything_runs_and_ranges_grow_only_to_what_fits() -> None:
    """Actors hold their resources while the execution runs: a pool of two GPU actors on one GPU would wait for an
    actor that never starts, and CPU actors holding every slot leave the read tasks none."""
    ds = lc.data.range(8, override_num_blocks=4).map(lambda r: {"id": r["id"], "x": r["id"]})
    since = _since()
    with pytest.raises(InfeasibleResourceError, match=r"actor pool of 2, each actor holding \{GPU: 1\}.* room for 1: "
                                                      r".*concurrency=1 or \(1, 2\).*num_gpus=0.5"):
        ds.map_batches(Doubler, fn_constructor_args=(2,), num_gpus=1, concurrency=2).take_all()
    with pytest.raises(InfeasibleResourceError, match=r"holds 2 of the cluster's 2 CPU.*'ReadRange->Map\(<lambda>\)'"
                                                      r".*num_cpus="):
        ds.map_batches(Doubler, fn_constructor_args=(2,), concurrency=2).take_all()
    # more than the cluster has: the size it suggests also leaves the read tasks a slot (concurrency=1, not 2)
    with pytest.raises(InfeasibleResourceError, match=r"room for 2: ask for concurrency=1 or \(1, 8\)"):
        ds.map_batches(Doubler, fn_constructor_args=(2,), concurrency=8).take_all()
    assert not [r for r in lc.list_tasks(since=since) if r["stage"]]  # not even the read ran
    before = {a["actor_id"] for a in lc.list_actors()}
    grown = ds.map_batches(Doubler, fn_constructor_args=(2,), num_gpus=1, concurrency=(1, 2))
    assert sorted(r["x"] for r in grown.take_all()) == [2 * i for i in range(8)]
    made = [a for a in lc.list_actors() if a["actor_id"] not in before and a["class_name"] == "MapBatches_Doubler"]
    assert len(made) == 1  # the range stopped at the one GPU
    # a CPU pool's range grows only as far as leaves the read tasks a slot: one actor here, and the run ends
    cpu_pool = ds.map_batches(Doubler, fn_constructor_args=(3,), concurrency=(1, 2))
    assert sorted(r["x"] for r in cpu_pool.take_all()) == [3 * i for i in range(8)]
    made = [a for a in lc.list_actors() if a["actor_id"] not in before and a["class_name"] == "MapBatches_Doubler"]
    assert len(made) == 2


@lc.remote(num_gpus=1)
class Holder:
    def ping(self) -> str:
        return "here"


def test_a_pool_that_a_live_actor_leaves_no_room_for_fails_at_once_naming_it() -> None:
    """A notebook's own GPU actor, still alive, holds the one GPU: the dataset's GPU pool would wait a minute for
    it; it fails before anything runs, naming the actor and what to do."""
    holder = Holder.remote()
    assert lc.get(holder.ping.remote(), timeout=30) == "here"
    ds = lc.data.range(8).map(lambda r: {"id": r["id"], "x": r["id"]}).map_batches(
        Doubler, fn_constructor_args=(2,), num_gpus=1, concurrency=1)
    try:
        started = time.perf_counter()
        with pytest.raises(InfeasibleResourceError, match=r"room for 0; other work holds part of it \(actor "
                                                          r"Holder \(Holder-\w+\) holds \{GPU: 1\} on gpu-0\): "
                                                          r"lc.kill those actors"):
            ds.take_all()
        assert time.perf_counter() - started < 30  # not the minute an actor waits to start
    finally:
        lc.kill(holder)
    from conftest import wait_until

    assert wait_until(lambda: lc.available_resources().get("GPU", 0) == 1, timeout=20)
    pg = lc.placement_group([{"GPU": 1}])  # a placement group's bundle holds it the same way
    lc.get(pg.ready(), timeout=30)
    try:
        with pytest.raises(InfeasibleResourceError, match=r"placement group \w+, bundle 0 holds \{GPU: 1\} on "
                                                          r"gpu-0.*lc.remove_placement_group"):
            ds.take_all()
    finally:
        lc.remove_placement_group(pg)
    assert wait_until(lambda: lc.available_resources().get("GPU", 0) == 1, timeout=20)
    assert len(ds.take_all()) == 8  # its GPU back: the pool runs
    from labcluster.data.fitting import without_holders

    in_bundle = [{"state": "ALIVE", "in_group": True, "worker": "gpu-0", "resources": {"GPU": 1.0}, "class": "A"}]
    group = {"pg1": {"state": "CREATED", "workers": ["gpu-0"], "bundles": [{"GPU": 1.0}], "name": None}}
    left, held = without_holders([("gpu-0", {"GPU": 1.0})], in_bundle, group)
    assert left == [("gpu-0", {"GPU": 0.0})] and len(held) == 1  # an actor in a bundle is counted once, as the bundle


def test_pools_are_fitted_together_with_the_task_stages() -> None:
    """fit_pools on a plan and a cluster's workers (no run): what a restarting worker will bring counts, pools are
    held together, and warn mode (an autoscaling cluster) lets each range grow to its top."""
    import dask

    from labcluster.data.fitting import fit_pools

    ds = lc.data.range(8)
    two_gpu_pools = ds.map_batches(Doubler, fn_constructor_args=(2,), num_gpus=1, concurrency=1).map_batches(
        NoModel, num_gpus=1, concurrency=1)
    workers = [("cpu-0", {"CPU": 2.0}), ("gpu-0", {"GPU": 1.0})]
    with pytest.raises(InfeasibleResourceError, match=r"pools of 'MapBatches\(Doubler\)' \(1 x \{GPU: 1\}\), "
                                                      r"'MapBatches\(NoModel\)' .* hold 2 GPU at the smallest"):
        fit_pools(two_gpu_pools._stages(), workers)
    assert fit_pools(two_gpu_pools._stages(), [*workers, ("gpu-1", {"GPU": 1.0})]) == {1: 1, 2: 1}
    growing = ds.map_batches(Doubler, fn_constructor_args=(2,), num_gpus=0.5, concurrency=(1, 8))
    assert fit_pools(growing._stages(), workers) == {1: 2}  # two halves of the one GPU
    cpu = ds.map_batches(Doubler, fn_constructor_args=(2,), concurrency=(1, 8))
    assert fit_pools(cpu._stages(), [("cpu-0", {"CPU": 4.0})]) == {1: 3}  # one slot left for the reads
    with dask.config.set({"labcluster.infeasible": "warn"}):
        with pytest.warns(UserWarning, match="hold 2 GPU at the smallest"):
            assert fit_pools(two_gpu_pools._stages(), workers) == {1: 1, 2: 1}
        assert fit_pools(cpu._stages(), [("cpu-0", {"CPU": 4.0})]) == {1: 8}


# -- faults --------------------------------------------------------------------------------------------------

def _kill_when(name: str, predicate: Any) -> None:
    victim = next(n for n in lc.nodes() if n["NodeName"] == name)
    from conftest import wait_until

    assert wait_until(predicate, timeout=30, interval=0.01)
    os.kill(victim["PID"], signal.SIGKILL)


@pytest.mark.parametrize("victim", ["gpu-0", "cpu-0"])
def test_a_worker_killed_mid_pipeline_costs_no_row_and_duplicates_none(victim: str) -> None:
    import threading

    ds = _pipeline(24)
    since = _since()
    killer = threading.Thread(target=_kill_when, args=(victim, lambda: sum(
        1 for r in lc.list_tasks(since=since) if r["stage"] == "MapBatches(Doubler)") >= 4))
    killer.start()
    rows = ds.take_all(mode="pipelined")
    killer.join()
    assert sorted(r["id"] for r in rows) == list(range(24))
    assert all(r["y"] == r["id"] * 6 + 1 for r in rows)
    # the kill landed mid-pipeline: work was redone
    records = lc.list_tasks(since=since)
    restarted = [a for a in lc.list_actors() if a["class_name"] == "MapBatches_Doubler" and a["restarts"]]
    assert restarted if victim == "gpu-0" else any(r["attempt"] > 1 or r["reconstruction"] for r in records)


# -- the comparison and the demo -----------------------------------------------------------------------------

def test_compare_reports_both_modes_with_bounds_and_pictures(tmp_path: Any) -> None:
    from labcluster.demo import pipeline

    ds = pipeline(24, decode_ms=3, infer_ms=5, post_ms=2, payload_kb=64, rows_per_block=1)  # bulk holds 24 blocks
    report = lc.compare(ds, repeats=1)
    d = report.to_dict()
    bulk, piped = d["modes"]["bulk"], d["modes"]["pipelined"]
    assert piped["first_output"] < bulk["first_output"]  # pipelined streams: its first block comes first
    assert piped["peak_bytes"] < bulk["peak_bytes"]  # bulk holds every block of a stage
    assert 0 < piped["busy"]["GPU"] <= 1 and 0 < bulk["busy"]["CPU"] <= 1
    assert bulk["bound"] > piped["bound"] > 0 and piped["ratio_to_bound"] >= 0.9  # nothing beats its bound
    assert any("bounds a pipelined run" in line for line in piped["bound_derivation"])
    text = repr(report)
    assert "wall time" in text and "wall / ideal for this mode" in text and "GPU (simulated) busy" in text
    assert d["simulated_gpus"] and "GPU (simulated): " in " ".join(piped["bound_derivation"])
    assert "[GPU (simulated): 1]" in repr(report.median("pipelined").stats)  # the stats say so too
    for mode in ("bulk", "pipelined"):  # a run's own blocks: the warm-up's last call is not one of them
        run = report.median(mode)
        assert len([r for r in run.rows if "Model" in str(r["stage"])]) == 24
        assert any(r["worker_name"] == "gpu-0" for r in run.rows)
    lanes = report.figure().children[0].y_range.factors
    assert any(lane.startswith("gpu-0 (simulated GPU) / slot") for lane in lanes), lanes
    page = report.to_html(str(tmp_path / "report.html"))
    content = Path(page).read_text(encoding="utf-8")
    assert "<table" in content and "bulk vs pipelined" in content and "Bokeh" in content
    assert "cdn.bokeh.org" not in content  # opens with no network
    assert "<table>" in report._repr_html_() and "ideal bounds" in report._repr_html_()
    with pytest.raises(ValueError, match="mode must be 'pipelined' or 'bulk'"):
        lc.compare(ds, modes=("spark",))
    bare = lc.data.range(1000)  # no operator: its count is known without running, but compare runs it each way
    bare.take_all()
    again = lc.compare(bare).to_dict()["modes"]
    assert [again[m]["stats"]["mode"] for m in ("bulk", "pipelined")] == ["bulk", "pipelined"], again


def test_labcluster_demo_runs_both_modes_and_writes_its_report(tmp_path: Any) -> None:
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "labcluster", "demo", "--help"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0 and "--items" in out.stdout and "--modes" in out.stdout and "--output" in out.stdout
    bad = subprocess.run([sys.executable, "-m", "labcluster", "demo", "--rows-per-block", "0"], capture_output=True,
                         text=True, timeout=60)  # refused before any cluster starts
    assert bad.returncode == 2 and "argument --rows-per-block: must be a whole number 1 or more, got 0" in bad.stderr, bad.stderr
    assert "Traceback" not in bad.stderr
    nowhere = subprocess.run([sys.executable, "-m", "labcluster", "demo", "--output", str(tmp_path / "no" / "x.html")],
                             capture_output=True, text=True, timeout=60)  # not after a minute of running
    assert nowhere.returncode == 2 and "argument --output: cannot write" in nowhere.stderr, nowhere.stderr
    report = tmp_path / "demo.html"
    out = subprocess.run([sys.executable, "-m", "labcluster", "demo", "--items", "8", "--decode-ms", "2",
                          "--infer-ms", "2", "--post-ms", "1", "--payload-kb", "16", "--output", str(report)],
                         capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "simulating 1 GPU worker" in out.stdout  # no GPU here: it says so
    assert "bulk " in out.stdout and "pipelined " in out.stdout and "wall / ideal for this mode" in out.stdout
    assert f"wrote {report}" in out.stdout and report.exists()
    assert "Traceback" not in out.stderr


def test_pandas_is_imported_with_lc_data_not_inside_a_loop() -> None:
    # pyarrow imports pandas lazily on the first column it turns into numpy, and swallows a KeyboardInterrupt that
    # lands during that import: a Ctrl-C in a notebook's first Dataset loop was lost (reproduced 3 of 3 under load,
    # the SIGINT's frame inside `import pandas` under `Column.to_numpy`). Importing lc.data imports pandas.
    import subprocess
    import sys

    code = "import sys, labcluster\nlabcluster.data.range\nprint('pandas' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "True", out.stderr
