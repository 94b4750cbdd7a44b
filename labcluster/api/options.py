"""Task options with Ray's names, validated once, when they are given.

>>> TaskOptions().merged(num_gpus=1).request()  # a GPU worker's own thread runs it: no CPU slot
{'GPU': 1.0}
>>> TaskOptions().merged(num_cpus=2).request()
{'CPU': 2.0}
>>> TaskOptions().merged(num_gpu=1)  # doctest: +ELLIPSIS
Traceback (most recent call last):
  ...
TypeError: unknown option 'num_gpu' (did you mean 'num_gpus'?); valid options are: bundle_index, max_retries, ...
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .. import config
from ..exceptions import unknown_name

Self = TypeVar("Self", bound="Options")


class Options:
    """Shared by task and actor options: a frozen dataclass whose ``merged`` names a bad key and validates."""

    #: how an unknown key is described in the error ("option", "actor option")
    kind = "option"

    @classmethod
    def valid_names(cls) -> list[str]:
        return sorted(f.name for f in dataclasses.fields(cls))  # type: ignore[arg-type]

    def merged(self: Self, **overrides: Any) -> Self:
        """Return a copy with ``overrides`` applied; an unknown or ill-typed option raises at once."""
        valid = self.valid_names()
        for key in overrides:
            if key not in valid:
                raise unknown_name(self.kind, key, valid)
        new = dataclasses.replace(self, **overrides)  # type: ignore[type-var]
        new.validate()
        return new

    def validate(self) -> None:
        """Check the values; raise ValueError/TypeError naming the option and the fix."""

    def request(self) -> dict[str, float]:
        """The Dask resource restrictions: CPU slots, GPUs and custom resources (zeros dropped).

        Work that asks for GPUs asks for no CPU slot: it runs on a GPU worker, whose thread is there for it, not
        among the cluster's CPU slots (``cluster/groups.py``). So a GPU task never waits behind CPU work, and CPU
        work never takes a GPU worker's thread."""
        fields: Any = self
        req = {"CPU": float(fields.num_cpus), "GPU": float(fields.num_gpus)}
        req.update({k: float(v) for k, v in fields.resources.items()})
        return without_cpu_for_gpus({k: v for k, v in req.items() if v})

    def in_group(self) -> tuple[Any, int] | None:
        """``(placement group, bundle index)`` when the work runs inside a placement group."""
        strategy = getattr(self, "scheduling_strategy", None)
        if strategy is not None:
            return strategy.placement_group, int(strategy.placement_group_bundle_index)
        group = getattr(self, "placement_group", None)
        if group is not None:
            return group, int(getattr(self, "bundle_index", -1))
        return None


def without_cpu_for_gpus(request: dict[str, float]) -> dict[str, float]:
    """A request (or a placement-group bundle) that asks for GPUs asks for no CPU slots (see ``Options.request``).

    >>> without_cpu_for_gpus({"CPU": 1.0, "GPU": 1.0}), without_cpu_for_gpus({"CPU": 2.0})
    ({'GPU': 1.0}, {'CPU': 2.0})
    """
    return {k: v for k, v in request.items() if k != "CPU"} if request.get("GPU") else request


@dataclass(frozen=True)
class TaskOptions(Options):
    """What ``@lc.remote(...)`` and ``.options(...)`` accept for a task."""

    num_cpus: float = 1.0
    num_gpus: float = 0.0
    resources: Mapping[str, float] = field(default_factory=dict)
    #: how often a task is re-run when its worker dies; None means the cluster default (Ray: 3); -1: forever
    max_retries: int | None = None
    #: re-run on application exceptions too: True (any), or a tuple of exception types
    retry_exceptions: bool | tuple[type[BaseException], ...] = False
    #: values the task returns (a tuple of them), or "dynamic" / "streaming" for a generator task (generators.py)
    num_returns: int | str = 1
    name: str | None = None
    #: run inside a placement group's bundle: ``placement_group=pg, bundle_index=i`` (-1: any bundle), or
    #: Ray's ``scheduling_strategy=lc.util.scheduling_strategies.PlacementGroupSchedulingStrategy(pg, i)``
    placement_group: Any = None
    bundle_index: int = -1
    scheduling_strategy: Any = None

    def validate(self) -> None:
        for label, v in (("num_cpus", self.num_cpus), ("num_gpus", self.num_gpus)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
                raise ValueError(f"{label} must be a number >= 0, got {v!r}")
        if not isinstance(self.resources, Mapping):
            raise TypeError(f"resources must be a dict like {{'special': 1}}, got {type(self.resources).__name__}")
        for k, v in self.resources.items():
            if k in ("CPU", "GPU"):
                raise ValueError(f"use num_cpus= / num_gpus= instead of resources={{{k!r}: ...}}")
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
                raise ValueError(f"resource {k!r} must be a number >= 0, got {v!r}")
        if self.max_retries is not None and (not isinstance(self.max_retries, int) or self.max_retries < -1):
            raise ValueError(f"max_retries must be an int >= -1 (-1: retry forever), got {self.max_retries!r}")
        if self.num_returns not in ("dynamic", "streaming") and (
                not isinstance(self.num_returns, int) or isinstance(self.num_returns, bool) or self.num_returns < 1):
            raise ValueError(f"num_returns must be an int >= 1, 'dynamic' or 'streaming' (generator tasks), "
                             f"got {self.num_returns!r}")
        if not isinstance(self.retry_exceptions, bool):
            if isinstance(self.retry_exceptions, list):
                object.__setattr__(self, "retry_exceptions", tuple(self.retry_exceptions))
            if not isinstance(self.retry_exceptions, tuple) or not all(
                isinstance(t, type) and issubclass(t, BaseException) for t in self.retry_exceptions
            ):
                raise TypeError(f"retry_exceptions must be True/False or a list of exception types, "
                                f"got {self.retry_exceptions!r}")
        if not isinstance(self.bundle_index, int) or self.bundle_index < -1:
            raise ValueError(f"bundle_index must be an int >= -1 (-1: any bundle), got {self.bundle_index!r}")
        if self.placement_group is not None and self.scheduling_strategy is not None:
            raise ValueError("pass placement_group= or scheduling_strategy=, not both")
        if self.scheduling_strategy is not None and not hasattr(self.scheduling_strategy, "placement_group"):
            raise TypeError(f"scheduling_strategy must be a PlacementGroupSchedulingStrategy, got "
                            f"{self.scheduling_strategy!r}")
        if self.name is not None and (not isinstance(self.name, str) or not self.name):
            raise ValueError(f"name must be a non-empty string, got {self.name!r}")

    @property
    def effective_max_retries(self) -> int:
        return int(config.get("max-retries")) if self.max_retries is None else self.max_retries
