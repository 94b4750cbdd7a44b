"""The notebooks run under nbval, which compares each cell's outputs with the stored ones: a progress bar that
appears only when a wait happens to last past ``labcluster.progress.auto-after`` would come and go from run to
run. The kernels nbval starts inherit this environment: no bar appears by itself there (one asked for with
``progress=True`` still does)."""

import os

os.environ["DASK_LABCLUSTER__PROGRESS__AUTO_AFTER"] = "1h"
