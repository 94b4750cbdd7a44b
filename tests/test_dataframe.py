"""lc.dataframe: dask.dataframe on the session's cluster (a real in-process Dask cluster with a simulated GPU
worker): the same client, the same records, grouped by operation; conversions to and from Datasets on the
workers; and lc.resources steering a GPU step to GPU workers."""

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import distributed
import pandas as pd
import pytest

import labcluster as lc
from labcluster.exceptions import InfeasibleResourceError


@pytest.fixture(scope="module")
def session() -> Iterator[lc.Session]:
    lc.shutdown()
    yield lc.init(num_cpus=2, num_gpus=1, simulate_gpus=True, processes=False, include_dashboard=False)
    lc.shutdown()


def _since() -> int:
    rows = lc.list_tasks()
    return int(rows[-1]["index"]) + 1 if rows else 0


def _rows(since: int) -> list[dict[str, Any]]:
    time.sleep(0.2)
    return lc.list_tasks(since=since)


def _worker_name(part: pd.DataFrame) -> pd.DataFrame:
    try:
        name = distributed.get_worker().name
    except ValueError:  # dask.dataframe calls it on an empty frame in the driver, for the output's columns
        name = "driver"
    return part.assign(worker=name)


FRAME = pd.DataFrame({"k": [i % 7 for i in range(2000)], "v": range(2000)})


def test_dataframes_compute_on_the_session_with_no_second_client(session: lc.Session, tmp_path: Path) -> None:
    assert distributed.get_client() is session.client
    FRAME.to_csv(tmp_path / "a.csv", index=False)
    since = _since()
    df = lc.dataframe.read_csv(str(tmp_path / "*.csv"))
    assert df.groupby("k").v.sum().compute().to_dict() == FRAME.groupby("k").v.sum().to_dict()
    other = lc.dataframe.from_pandas(pd.DataFrame({"k": range(7), "name": list("abcdefg")}), npartitions=2)
    merged = df.merge(other, on="k").compute().sort_values("v")
    assert list(merged.name[:8]) == list("abcdefga")
    shuffled = lc.dataframe.from_pandas(FRAME, npartitions=4).shuffle("k")
    assert shuffled.v.sum().compute() == FRAME.v.sum()
    rows = _rows(since)
    assert {r["worker_name"] for r in rows} <= {"cpu-0", "gpu-0"}
    stages = {r["stage"] for r in rows}
    # each task is in the stage of its operation; the shuffle is a boundary: its transfer, its barrier, its output
    assert {"read-csv", "frompandas", "shuffle-transfer", "shuffle-barrier"} <= stages


def test_the_lineage_stage_view_of_a_shuffle_shows_its_boundary(session: lc.Session) -> None:
    df = lc.dataframe.from_pandas(FRAME, npartitions=3).shuffle("k").map_partitions(len)
    futures = distributed.futures_of(df.persist())
    refs = [lc.ObjectRef(f) for f in futures]
    assert sum(int(part.sum()) for part in lc.get(refs, timeout=60)) == len(FRAME)
    time.sleep(0.2)  # the last records reach the scheduler
    edges = {(a, b) for a, b, _ in lc.lineage(refs).stages.edges}
    # every map-side task feeds the barrier; every output partition waits on it
    assert {("shuffle-transfer", "shuffle-barrier"), ("shuffle-barrier", "p2pshuffle"), ("p2pshuffle", "len")} <= edges


def test_a_gpu_step_runs_on_gpu_workers_only(session: lc.Session) -> None:
    features = lc.dataframe.from_pandas(FRAME, npartitions=4).map_partitions(lambda p: p.assign(v2=p.v * 2))
    features = features.persist()
    with lc.resources(num_gpus=1) as asked:
        scored = features.map_partitions(_worker_name).persist()
    assert asked == {"GPU": 1.0}
    assert set(scored.worker.unique().compute()) == {"gpu-0"}
    with lc.resources(num_cpus=1):
        # another name: the same operation on the same data would be the same keys, whose results Dask reuses
        on_cpu = features.map_partitions(_worker_name, token="on-cpu").persist()
        assert set(on_cpu.worker.unique().compute()) == {"cpu-0"}  # a shuffle in the block works too


def test_resources_no_worker_has_fail_at_once(session: lc.Session) -> None:
    with pytest.raises(InfeasibleResourceError, match="GPU: 2"), lc.resources(num_gpus=2):
        pass
    with pytest.raises(ValueError, match="num_gpus"), lc.resources(num_gpus=-1):
        pass


def test_datasets_and_dataframes_convert_on_the_workers(session: lc.Session) -> None:
    ds = lc.data.range(40, override_num_blocks=4).map(lambda r: {"id": r["id"], "sq": r["id"] ** 2})
    since = _since()
    df = ds.to_dask()
    assert df.npartitions == 4 and list(df.columns) == ["id", "sq"]
    assert df.sq.sum().compute() == sum(i * i for i in range(40))
    back = lc.data.from_dask(df[df.id % 2 == 0])
    assert back.count() == 20 and back.take(2) == [{"id": 0, "sq": 0}, {"id": 2, "sq": 4}]
    names = {r["name"] or r["stage"] for r in _rows(since)}
    assert {"from_dask", "fromdelayed"} <= names  # made into partitions and blocks by tasks, not in the driver
    with pytest.raises(TypeError, match="takes a dask dataframe"):
        lc.data.from_dask(pd.DataFrame())
    assert lc.dataframe.to_dataset(df).count() == 40 and lc.dataframe.from_dataset(ds).npartitions == 4


def test_every_dask_dataframe_name_is_there() -> None:
    assert lc.dataframe.concat is __import__("dask.dataframe").dataframe.concat
    assert "read_parquet" in dir(lc.dataframe) and lc.dataframe.read_parquet.__doc__.startswith(
        "``dask.dataframe.read_parquet`` on the labcluster session")
    with pytest.raises(AttributeError, match="dask.dataframe"):
        lc.dataframe.no_such_name
