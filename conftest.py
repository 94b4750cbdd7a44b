"""For the whole suite (tests, doctests, notebooks): every cluster a test, a doctest or a kernel it starts lists
itself in a registry of this run's own (``labcluster.registry.directory``), never in the user's. Set before
labcluster reads its settings; the kernels that tests and nbval start inherit it."""

import os
import tempfile

os.environ.setdefault("DASK_LABCLUSTER__REGISTRY__DIRECTORY",
                      os.path.join(tempfile.mkdtemp(prefix="labcluster-test-"), "registry"))

# pytest-jupyter's fixtures (jp_serverapp, jp_fetch): the server extension's tests run against a real Jupyter server
pytest_plugins = ["pytest_jupyter.jupyter_server"]
