"""``lc.util.placement_group``: Ray's ``ray.util.placement_group`` module, for programs that import it by name.

>>> from labcluster.util.placement_group import placement_group, placement_group_table, get_placement_group
"""

from ..api.placement import (
    PlacementGroup,
    get_placement_group,
    placement_group,
    placement_group_table,
    remove_placement_group,
)

__all__ = ["PlacementGroup", "get_placement_group", "placement_group", "placement_group_table",
           "remove_placement_group"]
