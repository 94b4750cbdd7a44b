"""Warnings that point at the user's line: the first frame outside labcluster, however deep the call that warns.

>>> import warnings
>>> with warnings.catch_warnings(record=True) as seen:
...     warnings.simplefilter("always")
...     warn_user("careful")
>>> seen[0].filename == __file__ or seen[0].filename.startswith("<doctest")
True
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings

#: frames skipped: labcluster's own, and the context managers' plumbing they run through
_SKIP = (os.path.dirname(os.path.abspath(__file__)) + os.sep, contextlib.__file__)


def warn_user(message: str, category: type[Warning] = UserWarning) -> None:
    """:func:`warnings.warn` with the stack level of the nearest caller outside labcluster's own files (and
    :mod:`contextlib`'s, which labcluster's ``with`` blocks run through)."""
    frame, level = sys._getframe(1), 2
    while frame.f_back is not None and frame.f_code.co_filename.startswith(_SKIP):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)
