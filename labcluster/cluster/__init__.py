"""Clusters: worker groups -> SpecCluster specs, local clusters, and reading what a cluster has."""

from .groups import WorkerGroup
from .info import WorkerInfo

__all__ = ["WorkerGroup", "WorkerInfo"]
