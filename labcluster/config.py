"""labcluster's configuration: ``labcluster.yaml`` merged into ``dask.config`` under ``labcluster.*``.

Every tunable lives in that YAML file with a comment saying what it does. Read values with
:func:`get` (a thin wrapper over ``dask.config.get`` that prefixes ``labcluster.``).

>>> import labcluster.config as cfg
>>> cfg.get("infeasible")
'error'
"""

from __future__ import annotations

import os
from typing import Any

import dask.config
import yaml

_FN = os.path.join(os.path.dirname(__file__), "labcluster.yaml")

with open(_FN) as _f:
    _DEFAULTS: dict[str, Any] = yaml.safe_load(_f)

dask.config.update_defaults(_DEFAULTS)

_MISSING = object()


def get(key: str, default: Any = _MISSING) -> Any:
    """Return ``labcluster.<key>`` from dask.config (``default`` if given and the key is absent)."""
    if default is _MISSING:
        return dask.config.get(f"labcluster.{key}")
    return dask.config.get(f"labcluster.{key}", default=default)


def seconds(key: str) -> float:
    """Return a duration setting such as ``timeouts.connect`` in seconds."""
    from dask.utils import parse_timedelta

    value = parse_timedelta(get(key), default="s")
    assert value is not None
    return float(value)


def nbytes(key: str) -> int:
    """Return a size setting such as ``data.min-block-size`` (``1 MiB``, or a plain number) in bytes."""
    from dask.utils import parse_bytes

    return int(parse_bytes(get(key)))
