"""labcluster.spark: PySpark's RDD API on labcluster tasks, on a real (in-process) Dask cluster.

The first three tests are PySpark programs as PySpark's own examples write them (word count, pi, a join and a
groupByKey), with only the import changed; their results are checked against the same computation in plain Python,
which is what PySpark gives for them.
"""

import gzip
import operator
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import labcluster as lc
from labcluster.exceptions import SerializationError, TaskError
from labcluster.spark import SparkConf, SparkContext, StorageLevel


@pytest.fixture(scope="module")
def sc() -> Iterator[SparkContext]:
    lc.shutdown()
    lc.init(num_cpus=2, processes=False, include_dashboard=False)
    context = SparkContext(appName="tests")
    yield context
    context.stop()
    lc.shutdown()


def _records_since(index: int) -> list[dict[str, Any]]:
    time.sleep(0.2)  # the last records reach the scheduler
    return [r for r in lc.list_tasks(since=index) if r["stage"]]


def _next_index() -> int:
    rows = lc.list_tasks()
    return int(rows[-1]["index"]) + 1 if rows else 0


# -- PySpark's examples, unchanged but for the import ----------------------------------------------------------

def test_word_count_as_pyspark_writes_it(sc: SparkContext, tmp_path: Path) -> None:
    words = [random.Random(i).choice(["spark", "ray", "dask", "lab", "cluster"]) for i in range(3000)]
    lines = [" ".join(words[i:i + 7]) for i in range(0, len(words), 7)]
    path = tmp_path / "words.txt"
    path.write_text("\n".join(lines) + "\n")

    text_file = sc.textFile(str(path))
    counts = text_file.flatMap(lambda line: line.split(" ")) \
                      .map(lambda word: (word, 1)) \
                      .reduceByKey(lambda a, b: a + b)
    output = counts.collect()

    assert dict(output) == Counter(words)
    assert len(output) == len(set(words))


def test_pi_estimate_as_pyspark_writes_it(sc: SparkContext) -> None:
    def inside(p: int) -> bool:
        rng = random.Random(p)  # PySpark's example uses random.random(); seeded here so both sides agree
        x, y = rng.random(), rng.random()
        return x * x + y * y < 1

    num_samples = 20_000
    count = sc.parallelize(range(0, num_samples), 4).filter(inside).count()
    pi = 4 * count / num_samples

    assert count == sum(inside(p) for p in range(num_samples))
    assert 3.0 < pi < 3.3


def test_join_and_group_by_key_as_pyspark_writes_them(sc: SparkContext) -> None:
    x = sc.parallelize([("a", 1), ("b", 4)])
    y = sc.parallelize([("a", 2), ("a", 3)])
    assert sorted(x.join(y).collect()) == [("a", (1, 2)), ("a", (1, 3))]
    assert sorted(x.leftOuterJoin(y).collect()) == [("a", (1, 2)), ("a", (1, 3)), ("b", (4, None))]
    assert sorted(y.rightOuterJoin(x).collect()) == [("a", (2, 1)), ("a", (3, 1)), ("b", (None, 4))]
    assert sorted(x.fullOuterJoin(y).collect()) == [("a", (1, 2)), ("a", (1, 3)), ("b", (4, None))]
    rdd = sc.parallelize([("a", 1), ("b", 1), ("a", 1)])
    assert sorted(rdd.groupByKey().mapValues(len).collect()) == [("a", 2), ("b", 1)]
    assert sorted(rdd.groupByKey().mapValues(list).collect()) == [("a", [1, 1]), ("b", [1])]
    assert [(k, tuple(map(list, v))) for k, v in sorted(x.cogroup(y).collect())] == [("a", ([1], [2, 3])),
                                                                                      ("b", ([4], []))]


# -- transformations and actions, against plain Python ---------------------------------------------------------

DATA = list(range(23))
PAIRS = [(i % 5, i) for i in range(23)]


@pytest.mark.parametrize(("build", "expected"), [
    pytest.param(lambda sc: sc.parallelize(DATA, 4).map(lambda x: x * 2).collect(), [x * 2 for x in DATA], id="map"),
    pytest.param(lambda sc: sc.parallelize(DATA, 4).flatMap(lambda x: [x] * (x % 3)).collect(),
                 [y for x in DATA for y in [x] * (x % 3)], id="flatMap"),
    pytest.param(lambda sc: sc.parallelize(DATA, 4).filter(lambda x: x % 3 == 0).collect(),
                 [x for x in DATA if x % 3 == 0], id="filter"),
    pytest.param(lambda sc: sc.parallelize(DATA, 4).mapPartitions(lambda it: [sum(it)]).collect(),
                 [sum(DATA[0:5]), sum(DATA[5:11]), sum(DATA[11:17]), sum(DATA[17:23])], id="mapPartitions"),
    pytest.param(lambda sc: sc.parallelize(DATA, 4).mapPartitionsWithIndex(lambda i, it: [(i, len(list(it)))])
                 .collect(), [(0, 5), (1, 6), (2, 6), (3, 6)], id="mapPartitionsWithIndex"),
    pytest.param(lambda sc: sc.parallelize(PAIRS, 3).mapValues(lambda v: -v).collect(),
                 [(k, -v) for k, v in PAIRS], id="mapValues"),
    pytest.param(lambda sc: sc.parallelize([("a", "x y"), ("b", "z")]).flatMapValues(str.split).collect(),
                 [("a", "x"), ("a", "y"), ("b", "z")], id="flatMapValues"),
    pytest.param(lambda sc: (sc.parallelize(PAIRS).keys().collect(), sc.parallelize(PAIRS).values().collect()),
                 ([k for k, _ in PAIRS], [v for _, v in PAIRS]), id="keys-values"),
    pytest.param(lambda sc: sc.parallelize(["ab", "c"]).keyBy(len).collect(), [(2, "ab"), (1, "c")], id="keyBy"),
    pytest.param(lambda sc: sc.parallelize(range(4), 2).zip(sc.parallelize("abcd", 2)).collect(),
                 list(zip(range(4), "abcd", strict=True)), id="zip"),
    pytest.param(lambda sc: sc.parallelize([1, 2], 2).union(sc.parallelize([3], 1)).collect(), [1, 2, 3],
                 id="union"),
    pytest.param(lambda sc: sorted(sc.parallelize([1, 1, 2, 3, 3, 3], 3).distinct(2).collect()), [1, 2, 3],
                 id="distinct"),
    pytest.param(lambda sc: sc.parallelize(range(1000), 4).sample(False, 0.1, 7).count(), None, id="sample"),
    pytest.param(lambda sc: sc.parallelize(DATA, 6).coalesce(2).glom().map(len).collect(), [11, 12],
                 id="coalesce"),
    pytest.param(lambda sc: sorted(sc.parallelize(DATA, 2).repartition(5).glom().map(len).collect()),
                 [4, 4, 5, 5, 5], id="repartition"),
    pytest.param(lambda sc: sorted(sc.parallelize(PAIRS, 3).partitionBy(2).glom().map(
                 lambda part: sorted({k % 2 for k, _ in part})).collect()), [[0], [1]], id="partitionBy"),
    pytest.param(lambda sc: sorted(sc.parallelize(PAIRS, 3).reduceByKey(operator.add).collect()),
                 sorted({k: sum(v for kk, v in PAIRS if kk == k) for k, _ in PAIRS}.items()), id="reduceByKey"),
    pytest.param(lambda sc: sorted(sc.parallelize(PAIRS, 3).aggregateByKey((0, 0), lambda a, v: (a[0] + v, a[1] + 1),
                                                                           lambda a, b: (a[0] + b[0], a[1] + b[1]))
                                   .collect()),
                 sorted({k: (sum(v for kk, v in PAIRS if kk == k), sum(1 for kk, _ in PAIRS if kk == k))
                         for k, _ in PAIRS}.items()), id="aggregateByKey"),
    pytest.param(lambda sc: sorted(sc.parallelize(PAIRS, 3).combineByKey(lambda v: [v], lambda c, v: [*c, v],
                                                                         lambda a, b: a + b)
                                   .mapValues(sorted).collect()),
                 sorted({k: sorted(v for kk, v in PAIRS if kk == k) for k, _ in PAIRS}.items()),
                 id="combineByKey"),
    pytest.param(lambda sc: sorted(sc.parallelize(PAIRS, 3).foldByKey(100, operator.add).collect()),
                 None, id="foldByKey"),
    pytest.param(lambda sc: sc.parallelize([(3, "c"), (1, "a"), (2, "b"), (5, "e"), (4, "d")] * 3, 3)
                 .sortByKey().keys().collect(), [1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4, 5, 5, 5], id="sortByKey"),
    pytest.param(lambda sc: sc.parallelize(DATA, 3).sortBy(lambda x: -x, numPartitions=4).collect(),
                 sorted(DATA, reverse=True), id="sortBy"),
    pytest.param(lambda sc: sc.parallelize(DATA, 3).sortBy(lambda x: x % 7, ascending=False).map(lambda x: x % 7)
                 .collect(), sorted((x % 7 for x in DATA), reverse=True), id="sortBy-descending"),
    pytest.param(lambda sc: sorted(sc.parallelize([1, 2], 2).cartesian(sc.parallelize("ab", 2)).collect()),
                 [(1, "a"), (1, "b"), (2, "a"), (2, "b")], id="cartesian"),
])
def test_transformations_give_what_plain_python_gives(sc: SparkContext, build: Any, expected: Any) -> None:
    got = build(sc)
    if expected is None:  # random, or a zero counted per partition: checked by shape
        assert got is not None
        return
    assert got == expected


def test_fold_by_key_adds_the_zero_once_per_partition_and_key_as_spark_does(sc: SparkContext) -> None:
    # one partition: each key's zero is added once
    assert sorted(sc.parallelize(PAIRS, 1).foldByKey(100, operator.add).collect()) == sorted(
        {k: 100 + sum(v for kk, v in PAIRS if kk == k) for k, _ in PAIRS}.items())


def test_actions(sc: SparkContext) -> None:
    rdd = sc.parallelize(DATA, 4)
    assert rdd.count() == 23 and rdd.sum() == sum(DATA) and rdd.mean() == sum(DATA) / 23
    assert rdd.first() == 0 and rdd.take(7) == DATA[:7] and rdd.take(100) == DATA
    assert rdd.top(3) == [22, 21, 20] and rdd.takeOrdered(3, key=lambda x: -x) == [22, 21, 20]
    assert rdd.takeOrdered(2) == [0, 1]
    assert rdd.reduce(operator.add) == sum(DATA) and rdd.fold(0, operator.add) == sum(DATA)
    assert rdd.aggregate((0, 0), lambda a, x: (a[0] + x, a[1] + 1), lambda a, b: (a[0] + b[0], a[1] + b[1])) == (
        sum(DATA), 23)
    assert rdd.max() == 22 and rdd.min() == 0 and rdd.max(key=lambda x: -x) == 0
    assert dict(sc.parallelize(PAIRS).countByKey()) == Counter(k for k, _ in PAIRS)
    assert dict(sc.parallelize([1, 1, 2]).countByValue()) == {1: 2, 2: 1}
    assert sc.parallelize([("a", 1), ("b", 2)]).collectAsMap() == {"a": 1, "b": 2}
    assert sc.parallelize(PAIRS).lookup(3) == [v for k, v in PAIRS if k == 3]
    assert rdd.getNumPartitions() == 4 and not rdd.isEmpty() and sc.emptyRDD().isEmpty()
    assert sc.parallelize([], 3).isEmpty() and sc.parallelize([], 3).count() == 0
    assert list(rdd.toLocalIterator()) == DATA
    assert sc.range(5).collect() == [0, 1, 2, 3, 4] and sc.range(2, 10, 3, numSlices=2).collect() == [2, 5, 8]
    assert rdd.glom().collect() == [DATA[0:5], DATA[5:11], DATA[11:17], DATA[17:23]]
    with pytest.raises(ValueError, match="Can not reduce\\(\\) empty RDD"):
        sc.emptyRDD().reduce(operator.add)
    with pytest.raises(ValueError, match="RDD is empty"):
        sc.parallelize([], 2).first()


def test_a_small_take_of_a_big_rdd_computes_few_partitions(sc: SparkContext) -> None:
    since = _next_index()
    assert sc.parallelize(range(1000), 50).take(3) == [0, 1, 2]
    takes = [r for r in _records_since(since) if r["name"] == "take"]
    assert len(takes) == 1


def test_foreach_and_save_as_text_file(sc: SparkContext, tmp_path: Path) -> None:
    out = tmp_path / "out"
    sc.parallelize(["x", "y", "z"], 2).saveAsTextFile(str(out))
    assert sorted(p.name for p in out.iterdir()) == ["_SUCCESS", "part-00000", "part-00001"]
    assert sc.textFile(str(out)).collect() == ["x", "y", "z"]
    with pytest.raises(FileExistsError, match="already exists"):
        sc.parallelize([1]).saveAsTextFile(str(out))
    acc = sc.accumulator(0)
    sc.parallelize(range(10), 3).foreach(lambda x: acc.add(x))
    sc.parallelize(range(10), 3).foreachPartition(lambda it: acc.add(sum(1 for _ in it)))
    assert acc.value == 45 + 10


# -- text files ------------------------------------------------------------------------------------------------

def test_text_file_splits_give_every_line_once_in_order(sc: SparkContext, tmp_path: Path) -> None:
    rng = random.Random(3)
    lines = ["x" * rng.randrange(0, 40) + str(i) for i in range(500)]
    (tmp_path / "a.txt").write_bytes(("\r\n".join(lines[:250]) + "\r\n").encode())
    (tmp_path / "b.txt").write_text("\n".join(lines[250:]))  # no line break at the end
    rdd = sc.textFile(str(tmp_path), minPartitions=9)
    assert rdd.getNumPartitions() >= 9
    assert rdd.collect() == lines
    with gzip.open(tmp_path / "c.txt.gz", "wt") as f:
        f.write("one\ntwo\n")
    assert sc.textFile(str(tmp_path / "c.txt.gz"), 4).collect() == ["one", "two"]
    assert sc.textFile(f"{tmp_path / 'a.txt'},{tmp_path / 'c.txt.gz'}").count() == 252


# -- stages, records, lineage ----------------------------------------------------------------------------------

def test_a_shuffle_is_a_stage_boundary_in_the_records_and_the_lineage(sc: SparkContext) -> None:
    since = _next_index()
    counts = sc.parallelize(["a b", "b c", "c c"], 3).flatMap(str.split).map(lambda w: (w, 1)) \
        .reduceByKey(operator.add, numPartitions=2)
    assert sorted(counts.collect()) == [("a", 1), ("b", 2), ("c", 3)]
    stages = Counter(r["stage"].split(": ", 1)[1] for r in _records_since(since))
    # three map tasks, each with one object per reduce partition (2), then two reduce tasks
    assert stages == {"parallelize -> flatMap -> map -> reduceByKey (map side)": 3 + 3 * 2,
                      "reduceByKey -> collect": 2}
    graph = counts.lineage()
    assert [n["group"].split(": ", 1)[1] for n in graph.stages.to_dict()["nodes"]] == [
        "reduceByKey -> collect", "parallelize -> flatMap -> map -> reduceByKey (map side)"]
    assert len(graph.stages.edges) == 1 and len(graph.tasks.nodes) == 11
    assert "<svg" in graph._repr_html_()

    # a second action on the same shuffle runs its reduce side only (Spark skips the map stage)
    since = _next_index()
    assert counts.count() == 3
    assert {r["stage"].split(": ", 1)[1] for r in _records_since(since)} == {"reduceByKey -> count"}


def test_to_debug_string_shows_the_stages_as_spark_prints_them(sc: SparkContext) -> None:
    base = sc.parallelize(range(10), 2)
    rdd = base.map(lambda x: (x % 3, x)).reduceByKey(operator.add).mapValues(str)
    rdd.setName("totals")
    ids = [base.id(), base.id() + 1, base.id() + 2, base.id() + 3]
    assert rdd.toDebugString().decode().splitlines() == [
        f"(2) PythonRDD[{ids[3]}] totals at mapValues []",
        f" |  ShuffledRDD[{ids[2]}] at reduceByKey []",
        f" +-(2) PythonRDD[{ids[1]}] at map []",
        f"    |  ParallelCollectionRDD[{ids[0]}] at parallelize []",
    ]
    assert "reduceByKey" in rdd._repr_html_() and repr(rdd) == f"PythonRDD[{ids[3]}] 'totals' at mapValues (2 partitions)"
    cached = base.cache()
    assert cached.toDebugString().decode() == f"(2) ParallelCollectionRDD[{ids[0]}] at parallelize " \
                                              f"[Memory Serialized 1x Replicated]"
    cached.unpersist()


def test_a_persisted_rdd_is_computed_once(sc: SparkContext) -> None:
    calls = sc.accumulator(0)

    def slow(x: int) -> int:
        calls.add(1)
        return x * 10

    rdd = sc.parallelize(range(8), 4).map(slow).persist(StorageLevel.MEMORY_AND_DISK)
    assert rdd.sum() == 280 and rdd.count() == 8 and rdd.filter(lambda x: x > 30).count() == 4
    assert calls.value == 8 and rdd.is_cached
    rdd.unpersist()
    assert rdd.count() == 8 and calls.value == 16 and not rdd.is_cached


# -- shared variables ------------------------------------------------------------------------------------------

def test_broadcast_is_a_put_every_task_reads(sc: SparkContext) -> None:
    table = {i: i * i for i in range(1000)}
    b = sc.broadcast(table)
    assert b.value is table
    assert sc.parallelize(range(10), 3).map(lambda x: b.value[x]).collect() == [x * x for x in range(10)]
    b.unpersist()
    assert sc.parallelize([5]).map(lambda x: b.value[x]).collect() == [25]
    b.destroy()
    with pytest.raises(RuntimeError, match="destroyed"):
        b.value
    with pytest.raises(Exception, match="destroyed"):
        sc.parallelize([5]).map(lambda x: b.value[x]).collect()


def test_accumulators_count_in_tasks_and_read_in_the_driver(sc: SparkContext) -> None:
    errors = sc.accumulator(0)
    total = sc.accumulator(0.0)

    def parse(line: str) -> Any:
        if not line.isdigit():
            errors.add(1)
            return None
        total.add(float(line))
        return int(line)

    good = sc.parallelize(["1", "x", "2", "y", "3"], 3).map(parse).filter(lambda v: v is not None)
    assert good.collect() == [1, 2, 3]
    assert errors.value == 2 and total.value == 6.0
    errors += 10
    assert errors.value == 12
    with pytest.raises(Exception, match="cannot be read inside a task"):
        sc.parallelize([1]).map(lambda x: errors.value).collect()


# -- errors ----------------------------------------------------------------------------------------------------

def test_a_failing_function_names_its_operation_and_partition(sc: SparkContext) -> None:
    def bad(x: int) -> int:
        if x == 7:
            raise ValueError("seven is not allowed")
        return x

    with pytest.raises(ValueError, match="seven is not allowed") as info:
        sc.parallelize(range(10), 3).map(lambda x: x + 1).map(bad).filter(bool).collect()
    err = info.value
    assert isinstance(err, TaskError)
    text = str(err)
    assert "in bad" in text and "in RDD operation 'map' (PythonRDD[" in text and "partition 2" in text


def test_reduce_by_key_of_an_rdd_that_is_not_pairs_says_so(sc: SparkContext) -> None:
    with pytest.raises(TypeError, match=r"reduceByKey needs an RDD of \(key, value\) pairs, got an element \d "
                                        r"\(int\); make pairs first"):
        sc.parallelize([1, 2, 3]).reduceByKey(operator.add).collect()


def test_an_unpicklable_closure_fails_when_the_transformation_is_made(sc: SparkContext) -> None:
    lock = threading.Lock()
    with pytest.raises(SerializationError, match="'lock'.*cannot be pickled"):
        sc.parallelize([1]).map(lambda x: (lock, x))


def test_bad_input_fails_fast_with_the_fix(sc: SparkContext, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such file or directory"):
        sc.textFile(str(tmp_path / "missing.txt"))
    with pytest.raises(ValueError, match="same number of partitions"):
        sc.parallelize([1, 2], 2).zip(sc.parallelize([1, 2], 1))
    with pytest.raises(ValueError, match="partitions of different lengths"):
        sc.parallelize([1, 2, 3], 2).zip(sc.parallelize([1, 2, 3, 4], 2)).collect()
    with pytest.raises(ValueError, match=r"numPartitions\) must be an int >= 1"):
        sc.parallelize([1]).repartition(0)
    with pytest.raises(TypeError, match="map needs a function"):
        sc.parallelize([1]).map(3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="Cannot run multiple SparkContexts at once"):
        SparkContext()
    with pytest.raises(ValueError, match="not on a Spark master; connect labcluster"):
        SparkContext("spark://host:7077")
    assert SparkContext.getOrCreate() is sc


def test_the_context_is_bound_to_the_session(sc: SparkContext) -> None:
    assert sc.defaultParallelism == 2 and sc.defaultMinPartitions == 2
    assert sc.session is lc.current_session() and "SparkContext" in sc._repr_html_()
    conf = sc.getConf()
    assert conf.get("spark.app.name") == "tests" and isinstance(conf, SparkConf)


def test_empty_rdds_shuffle_to_empty_results(sc: SparkContext) -> None:
    empty = sc.emptyRDD()
    assert empty.reduceByKey(operator.add).collect() == [] and empty.distinct().count() == 0
    assert empty.groupByKey().collect() == [] and empty.sortByKey().collect() == []
    assert empty.join(sc.parallelize([(1, 2)])).collect() == []
    assert sorted(empty.fullOuterJoin(sc.parallelize([(1, 2)])).collect()) == [(1, (None, 2))]


def test_zip_with_index_group_by_and_id(sc: SparkContext) -> None:
    assert sc.parallelize("abcde", 3).zipWithIndex().collect() == [("a", 0), ("b", 1), ("c", 2), ("d", 3), ("e", 4)]
    assert sorted((k, sorted(v)) for k, v in sc.parallelize(range(7), 2).groupBy(lambda x: x % 3).collect()) == [
        (0, [0, 3, 6]), (1, [1, 4]), (2, [2, 5])]
    a, b = sc.parallelize([1]), sc.parallelize([2])
    assert isinstance(a.id(), int) and b.id() > a.id()


def test_a_failed_shuffle_is_computed_again_by_the_next_action(sc: SparkContext, tmp_path: Path) -> None:
    marker = tmp_path / "failed-once"

    def flaky(x: int) -> tuple[int, int]:
        if x == 3 and not marker.exists():
            marker.write_text("")
            raise ConnectionError("the source was not there yet")
        return x % 2, x

    totals = sc.parallelize(range(6), 3).map(flaky).reduceByKey(operator.add)
    with pytest.raises(ConnectionError, match="not there yet"):
        totals.collect()
    assert sorted(totals.collect()) == [(0, 6), (1, 9)]  # the map side ran again, not its stored failure


def test_a_destroyed_broadcast_lets_its_object_go(sc: SparkContext) -> None:
    b = sc.broadcast(list(range(100)))
    key = b._ref.key
    b.destroy()
    assert b._ref is None and "destroyed" in repr(b)
    time.sleep(0.3)
    assert key not in lc.current_session().client.who_has()


def test_capturing_an_rdd_or_the_context_in_a_task_says_why_it_cannot(sc: SparkContext) -> None:
    other = sc.parallelize([3])
    with pytest.raises(SerializationError, match="SPARK-5063.*join the two RDDs"):
        sc.parallelize([1, 2]).map(lambda x: other.count())
    with pytest.raises(SerializationError, match="the SparkContext .* lives in the driver"):
        sc.parallelize([1]).map(lambda x: sc.defaultParallelism)
    with pytest.raises(AttributeError, match="'RDD' object has no attribute 'reduceBykey'; did you mean 'reduceByKey'"):
        sc.parallelize([1]).reduceBykey(operator.add)  # type: ignore[attr-defined]
    assert sc.version == "3.5.0"


def test_a_context_without_a_session_starts_one_and_stops_it(sc: SparkContext) -> None:
    sc.stop()  # the module's context; it did not start the session, so that stays
    assert lc.is_initialized()
    lc.shutdown()
    with SparkContext("local[1]", "own") as own:
        assert lc.is_initialized() and own.defaultParallelism == 1
        assert own.parallelize(range(5)).map(lambda x: x + 1).sum() == 15
    assert not lc.is_initialized()
