"""The notebooks run under nbval, which compares each cell's outputs with the stored ones: a progress bar that
appears only when a wait happens to last past ``labcluster.progress.auto-after`` would come and go from run to
run. The kernels nbval starts inherit this environment: no bar appears by itself there (one asked for with
``progress=True`` still does)."""

import os
import tempfile

os.environ["DASK_LABCLUSTER__PROGRESS__AUTO_AFTER"] = "1h"

# every cluster started here (and by the kernels started here, which inherit it) lists itself in a registry of
# this test run's own, never in the user's: set before labcluster reads its settings
os.environ.setdefault("DASK_LABCLUSTER__REGISTRY__DIRECTORY",
                      os.path.join(tempfile.mkdtemp(prefix="labcluster-test-"), "registry"))
