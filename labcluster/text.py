"""How labcluster writes counts in reprs and messages (one rule, so every repr reads the same).

>>> plural(1, "block"), plural(16, "block")
('1 block', '16 blocks')
"""

from __future__ import annotations


def plural(count: int, noun: str) -> str:
    """``count`` and ``noun``, with an ``s`` unless ``count`` is 1."""
    return f"{count} {noun}{'' if count == 1 else 's'}"
