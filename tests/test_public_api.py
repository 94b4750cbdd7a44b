import subprocess
import sys
import types

import labcluster


def test_all_is_sorted_and_complete() -> None:
    # the public names are imported on first use (labcluster/__init__.py): every one of them resolves, and nothing
    # else public sits in the package namespace
    assert labcluster.__all__ == sorted(labcluster.__all__)
    assert set(labcluster.__all__) == {*labcluster._HOME, "__version__"}
    for name in labcluster.__all__:
        assert getattr(labcluster, name) is not None, name
    public = {name for name, value in vars(labcluster).items() if not name.startswith("_")
              and not (isinstance(value, types.ModuleType) and name not in ("exceptions", "util")) and name != "TYPE_CHECKING"}
    # IPython's extension protocol (%load_ext labcluster) needs these two names on the package itself
    ipython_hooks = {"load_ipython_extension", "unload_ipython_extension"}
    assert public <= set(labcluster.__all__) | ipython_hooks, public - set(labcluster.__all__)
    assert sorted(dir(labcluster)) == sorted(set(dir(labcluster)) | set(labcluster.__all__))


def test_every_public_name_has_a_docstring() -> None:
    for name in labcluster.__all__:
        obj = getattr(labcluster, name)
        if callable(obj) or isinstance(obj, types.ModuleType):
            assert obj.__doc__, name


def test_import_does_not_import_ipython() -> None:
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('IPython', 'ipywidgets', 'jupyter_server', 'ipykernel'):\n"
        "            raise ImportError('blocked: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import labcluster, labcluster.cli, labcluster.demo, labcluster.data, labcluster.data.compare\n"
        "assert not [m for m in sys.modules if m.split('.')[0] == 'IPython']\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
