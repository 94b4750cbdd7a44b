"""For the package's doctests (not shipped: the wheel excludes it): the clusters they start list themselves in a
registry of the test run's own, never in the user's."""

import os
import tempfile

# every cluster started here (and by the kernels started here, which inherit it) lists itself in a registry of
# this test run's own, never in the user's: set before labcluster reads its settings
os.environ.setdefault("DASK_LABCLUSTER__REGISTRY__DIRECTORY",
                      os.path.join(tempfile.mkdtemp(prefix="labcluster-test-"), "registry"))
