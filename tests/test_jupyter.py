"""The notebook layer: the magics' parsing as plain functions, then the magics in a real IPython shell on a real
cluster. (What needs a kernel, interrupts and output in the right cell, is in test_kernel.py.)"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell

import labcluster as lc
from labcluster.jupyter.commands import MagicArgumentError, parse_cell, parse_cluster
from labcluster.jupyter.dashboards import DashboardView
from labcluster.jupyter.remote_cell import names_read, namespace_for, run_cell


@pytest.mark.parametrize(("line", "fields"), [
    pytest.param("start", {"action": "start", "gpus": "auto", "workers": None}, id="start"),
    pytest.param("start --workers 2 --threads 3 --gpus sim:2 --resources disk=1 special=0.5 --name lab",
                 {"workers": 2, "threads": 3, "gpus": "sim:2", "resources": {"disk": 1.0, "special": 0.5},
                  "name": "lab"}, id="start-everything"),
    pytest.param("connect tcp://10.0.0.5:8786", {"action": "connect", "address": "tcp://10.0.0.5:8786"},
                 id="connect"),
    pytest.param("scale 3", {"group": "cpu", "n": 3}, id="scale-cpu"),
    pytest.param("scale gpu 0", {"group": "gpu", "n": 0}, id="scale-group-to-zero"),
    pytest.param("dashboard timeline", {"page": "timeline"}, id="dashboard"),
    pytest.param("status", {"action": "status"}, id="status"),
])
def test_cluster_lines(line: str, fields: dict[str, Any]) -> None:
    cmd = parse_cluster(line)
    assert {k: getattr(cmd, k) for k in fields} == fields


def test_start_options_become_worker_groups() -> None:
    groups = parse_cluster("start --workers 2 --threads 1 --gpus sim:1 --resources disk=1").options()["workers"]
    assert [(g.name, g.n, g.nthreads, dict(g.resources), g.simulated) for g in groups] == [
        ("cpu", 2, 1, {"disk": 1.0}, None), ("gpu", 1, 1, {"GPU": 1}, True)]
    assert parse_cluster("start --gpus 2").options() == {"num_gpus": 2}
    assert parse_cluster("start --resources disk=2").options() == {"resources": {"disk": 2.0}}


@pytest.mark.parametrize(("line", "says"), [
    pytest.param("", "needs a subcommand: start, connect", id="empty"),
    pytest.param("strat", "no subcommand 'strat'; use one of start", id="typo"),
    pytest.param("start --workers x", "--workers: invalid positive int value: 'x'", id="not-a-number"),
    pytest.param("start --workers 0", "--workers: invalid positive int value: '0'", id="zero-workers"),
    pytest.param("start --gpus many", "--gpus: invalid auto, N or sim:N value: 'many'", id="bad-gpus"),
    pytest.param("start --resources disk", "NAME=NUMBER pairs, got 'disk'", id="resource-without-value"),
    pytest.param("start --resources disk=lots", "NAME=NUMBER pairs, got 'disk=lots'", id="resource-not-number"),
    pytest.param("start --gpu 1", "unrecognized arguments: --gpu 1", id="unknown-option"),
    pytest.param("connect", "the following arguments are required: address", id="connect-without-address"),
    pytest.param("scale cpu two", "N must be a number of workers (0 or more), got 'two'", id="scale-not-number"),
    pytest.param("scale a 1 2", "takes [GROUP] N, got 'a 1 2'", id="scale-too-many"),
    pytest.param("dashboard nope", "invalid choice: 'nope'", id="dashboard-page"),
    pytest.param("stop now", "unrecognized arguments: now", id="stop-with-argument"),
    pytest.param("start --name 'lab", "close the quote", id="open-quote"),
])
def test_a_bad_cluster_line_names_the_problem_and_the_fix(line: str, says: str) -> None:
    with pytest.raises(MagicArgumentError) as e:
        parse_cluster(line)
    assert says in str(e.value)
    assert re.search(r"--help|e\.g\.|close the quote", str(e.value)), str(e.value)  # and a way out


def test_cell_lines() -> None:
    cmd = parse_cell("--num-cpus 2 --num-gpus 1 --resources disk=1 --retries 2 -o a b --name train --no-block")
    assert cmd.task_options() == {"name": "train", "num_cpus": 2.0, "num_gpus": 1.0, "max_retries": 2,
                                  "resources": {"disk": 1.0}}
    assert cmd.outputs == ["a", "b"] and not cmd.block
    assert parse_cell("").task_options() == {"name": "distributed_cell"} and parse_cell("").block
    for line, says in (("--num-cpus -1", "invalid number (0 or more) value: '-1'"), ("-o 1x", "variable names"),
                       ("--cpus 1", "unrecognized arguments: --cpus 1"), ("--retries x", "invalid count")):
        with pytest.raises(MagicArgumentError, match=re.escape(says)):
            parse_cell(line)


def test_what_a_cell_reads_and_how_it_runs() -> None:
    assert names_read("for i in range(n):\n    total = f(i)\nprint(total, In)") == ["n", "f"]
    assert names_read("x += 1\ny = [v * k for v in data]\nclass A(Base):\n    size = limit") == [
        "x", "data", "Base", "k", "limit"]
    assert names_read("@wrap(level)\ndef g(df, scale=default):\n    return df * scale + offset") == [
        "wrap", "level", "default", "offset"]
    assert namespace_for("y = x + 1", {"x": 1, "z": 2}) == {"x": 1}
    lock = __import__("threading").Lock()  # a name the cell makes itself, or a parameter, does not travel
    assert namespace_for("lock = make()\nwith lock:\n    pass", {"lock": lock, "make": 1}) == {"make": 1}
    assert namespace_for("f = lambda y: y + 1\nf(2)", {"y": lock}) == {}
    assert run_cell("a = x * 2\nb = a + 1\nb", ["a"], {"x": 5}) == (11, 10)
    assert run_cell("x + 1", [], {"x": 1}) == 2
    assert run_cell("code + outputs", [], {"code": 1, "outputs": 2}) == 3  # names of run_cell's own, too
    assert run_cell("import math", [], {}) is None
    with pytest.raises(NameError, match="the cell defines no 'c'; assign it in the cell, or drop it from -o"):
        run_cell("a = 1", ["a", "c"], {})


def test_a_dashboard_view_is_live_only_through_a_jupyter_server() -> None:
    live = DashboardView("timeline", port=8787, proxy_base="/user/x/")
    assert live.live_url == "/user/x/proxy/8787/individual-labcluster-timeline"
    assert "<iframe src='/user/x/proxy/8787/individual-labcluster-timeline'" in live._repr_html_()
    assert "token" not in live._repr_html_()
    assert DashboardView("actors", port=None, proxy_base="/").live_url is None
    assert DashboardView("actors", port=8787, proxy_base=None).live_url is None
    with pytest.raises(ValueError, match="no page 'gpu'; the pages are resources, timeline, lineage, actors"):
        DashboardView("gpu", port=1, proxy_base=None)


# -- the magics in a real IPython shell ----------------------------------------------------------------------------

class Shell:
    """A real IPython shell with the extension loaded; :meth:`run` returns (result, what it printed)."""

    def __init__(self, capfd: pytest.CaptureFixture[str]) -> None:
        self.ip = InteractiveShell.instance()
        self.capfd = capfd
        self.ip.run_cell("%load_ext labcluster")

    def run(self, code: str) -> tuple[Any, str]:
        self.capfd.readouterr()
        result = self.ip.run_cell(code, store_history=True)
        out = self.capfd.readouterr()
        return result, out.out + out.err


@pytest.fixture
def shell(capfd: pytest.CaptureFixture[str]) -> Iterator[Shell]:
    sh = Shell(capfd)
    yield sh
    sh.ip.run_cell("%unload_ext labcluster")
    lc.shutdown()
    InteractiveShell.clear_instance()


def test_the_magics_in_an_ipython_shell(shell: Shell) -> None:
    result, said = shell.run("%cluster status")
    assert "UsageError: %cluster status: no cluster in this kernel; start one with %cluster start" in said
    result, said = shell.run("%%distributed\n1")
    assert "no cluster in this kernel" in said
    result, said = shell.run("%cluster start --workers 1 --threads 2 --gpus sim:1 --name teaching")
    assert result.success, said
    session = lc.current_session()
    assert session.name == "teaching" and lc.cluster_resources()["GPU"] == 1
    result, said = shell.run("%cluster start")
    assert "this kernel already has a cluster" in said and "%cluster stop first" in said

    shell.ip.user_ns.update(base=10, ref=lc.put(32), code="a notebook's own", outputs=3)
    result, said = shell.run("%%distributed\nlen(code) + outputs")
    assert result.result == 19, said
    result, said = shell.run("%%distributed --num-cpus 1 -o doubled\nimport labcluster as lc\n"
                             "doubled = base * 2\nprint('ran on', lc.get_runtime_context().get_node_id() != '')\n"
                             "doubled + lc.get(ref)")
    assert result.success, said
    assert result.result == 52 and shell.ip.user_ns["doubled"] == 20
    result, said = shell.run("%%distributed --no-block -o later\nlater = base + 1\nlater * 2")
    assert isinstance(result.result, lc.ObjectRef) and isinstance(shell.ip.user_ns["later"], lc.ObjectRef)
    assert lc.get(result.result) == 22 and lc.get(shell.ip.user_ns["later"]) == 11
    result, said = shell.run("%%distributed --num-gpus 1\nimport labcluster as lc\nlc.get_gpu_ids()")
    assert result.result == [0]

    shell.ip.user_ns["lock"] = __import__("threading").Lock()
    result, said = shell.run("%%distributed\nwith lock:\n    pass")
    assert "SerializationError" in said and "'lock' (lock), which the cell reads, cannot be pickled" in said
    result, said = shell.run("%%distributed\nx = (\n")
    assert "UsageError: %%distributed: the cell is not valid Python" in said
    result, said = shell.run("%%distributed\ndef f(v):\n    return 1 / v\nf(0)")
    assert isinstance(result.error_in_exec, ZeroDivisionError)
    assert "return 1 / v" in str(result.error_in_exec)  # the cell's own line, in the remote traceback
    result, said = shell.run("%%distributed --num-gpus 4\n1")
    assert "InfeasibleResourceError" in said

    result, said = shell.run("%cluster scale 2")
    assert "worker group 'cpu' has 2 workers (started cpu-1)" in said
    assert sorted(w.name for w in session.workers()) == ["cpu-0", "cpu-1", "gpu-0"]
    result, said = shell.run("%cluster scale cpu 1")
    assert "(retired cpu-1)" in said and "died" not in said
    result, said = shell.run("import labcluster as lc\n@lc.remote\nclass Keeper:\n    def ping(self):\n        return 1\n\n"
                             "keeper = Keeper.options(num_gpus=1).remote()\nlc.get(keeper.ping.remote())")
    result, said = shell.run("%cluster scale gpu 0")  # the actor is not taken along silently
    assert "UsageError: %cluster scale: cannot retire gpu-0: it holds actors or placement-group bundles" in said
    assert lc.get(shell.ip.user_ns["keeper"].ping.remote()) == 1
    result, said = shell.run("%cluster scale tpu 1")
    assert "UsageError: %cluster scale: the cluster has no worker group 'tpu'; its groups are cpu, gpu" in said
    from labcluster.cluster.info import live_html
    from labcluster.jupyter.widgets import ClusterWidget

    widget = ClusterWidget(session)  # its buttons, pressed: scale the gpu group up and down
    assert "simulated" in live_html(session) and "gpu-0" in widget.body.value
    widget.group.value, widget.count.value = "gpu", 2
    widget.scale_button.click()
    assert "worker group 'gpu' has 2 workers (started gpu-1)" in widget.status.value, widget.status.value
    assert lc.cluster_resources()["GPU"] == 2
    widget.count.value = 1
    widget.scale_button.click()
    assert lc.cluster_resources()["GPU"] == 1
    widget.close()
    result, said = shell.run("%cluster dashboard actors")
    assert result.success, said
    result, said = shell.run("%cluster stop")
    assert "labcluster: stopped the session" in said and not lc.is_initialized()
    result, said = shell.run("%cluster stop")
    assert "no cluster to stop" in said


def test_a_terminal_progress_bar_is_tqdm_and_ends_in_its_state(capfd: pytest.CaptureFixture[str]) -> None:
    @lc.remote
    def nap(seconds: float) -> float:
        __import__("time").sleep(seconds)
        return seconds

    with lc.init(num_cpus=2, processes=False, include_dashboard=False):
        capfd.readouterr()
        assert lc.get([nap.remote(0.3) for _ in range(4)], progress=True) == [0.3] * 4
        err = capfd.readouterr().err
        assert "lc.get" in err and "4/4" in err and "done" in err, err
        assert lc.get([nap.remote(0.01)]) == [0.01] and capfd.readouterr().err == ""  # no bar unless asked


def test_lc_dashboard_stays_the_function_when_the_pages_package_is_imported() -> None:
    # an in-process scheduler imports labcluster.dashboards (its pages) into this process: lc.dashboard is the
    # notebook view all the same, and outside a Jupyter server it is a snapshot that says why it is not live
    with lc.init(num_cpus=1, processes=False, dashboard_address="127.0.0.1:0"):
        import labcluster.dashboards  # noqa: F401

        view = lc.dashboard("actors")
        assert callable(lc.dashboard) and view.live_url is None and view.direct_url is not None
        assert "a static snapshot, not live" in view._repr_html_()
