"""Spark on labcluster: PySpark's RDD API, whose transformations are tasks, whose shuffle is tasks and objects,
and whose broadcast variables are ``put``.

``from labcluster.spark import SparkContext`` in place of ``from pyspark import SparkContext`` runs a PySpark RDD
program on the labcluster session's cluster: its jobs are labcluster tasks, in the same records, timeline and
lineage as everything else, one ``lc.stage`` per Spark stage.

>>> from labcluster.spark import SparkContext                                      # doctest: +SKIP
>>> sc = SparkContext("local[2]")                                                 # doctest: +SKIP
>>> sc.parallelize(range(10)).map(lambda x: x * x).filter(lambda x: x % 2).sum()  # doctest: +SKIP
165
"""

from .context import SparkConf, SparkContext
from .keyed import Partitioner, ResultIterable
from .rdd import RDD, StorageLevel
from .shared import Accumulator, AccumulatorParam, Broadcast
from .tasks import portable_hash

__all__ = [
    "RDD",
    "Accumulator",
    "AccumulatorParam",
    "Broadcast",
    "Partitioner",
    "ResultIterable",
    "SparkConf",
    "SparkContext",
    "StorageLevel",
    "portable_hash",
]
