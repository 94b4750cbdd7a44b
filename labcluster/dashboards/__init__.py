"""labcluster's bokeh dashboards, served by the scheduler's own dashboard server (``individual-labcluster-*`` pages).

:func:`~labcluster.dashboards.pages.add_pages` is called by labcluster's scheduler plugin when it starts, so every
scheduler that runs the plugin (local heads, ``labcluster scheduler``, a remote one ``lc.init(address=...)`` added
it to) serves the pages and lists them in ``/individual-plots.json``, where dask-labextension finds them. The
table of pages is :data:`~labcluster.dashboards.pages.PAGES`. Nothing here imports IPython: the pages run in the
scheduler process, next to distributed's own.
"""

from __future__ import annotations

from .pages import PAGES, add_pages

__all__ = ["PAGES", "add_pages"]
