"""labcluster in a real Jupyter kernel (jupyter_client): a kernel interrupt never takes the cluster down.

Jupyter interrupts a kernel by sending SIGINT to its whole process group (jupyter_client's local provisioner uses
killpg). The cluster ``lc.init()`` starts runs in a head process of its own session, out of that group's reach.
"""

from __future__ import annotations

import os
import queue
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from jupyter_client.manager import KernelManager


class Kernel:
    """A real IPython kernel, and what each cell sent on iopub (by the parent header of its request)."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        self.manager = KernelManager(kernel_name="python3")
        # bars appear by themselves after 1 s here, whatever the notebooks' conftest set for nbval's kernels
        # JPY_SESSION_NAME: the notebook's path, as Jupyter Server tells the kernels it starts
        self.manager.start_kernel(env={**os.environ, "DASK_LABCLUSTER__PROGRESS__AUTO_AFTER": "1s",
                                       "JPY_SESSION_NAME": "course/intro.ipynb", **(env or {})})
        self.client = self.manager.client()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=60)

    def run(self, code: str, timeout: float = 120, cell_id: str | None = None) -> dict[str, Any]:
        """Run a cell; return its reply and what it printed (stdout, stderr, errors, HTML shown), once the kernel is
        idle. ``cell_id``: sent as JupyterLab sends it, in the request's metadata."""
        if cell_id is None:
            return self.collect(self.client.execute(code), timeout)
        msg = self.client.session.msg("execute_request", {"code": code, "silent": False, "store_history": True,
                                                          "user_expressions": {}, "allow_stdin": False,
                                                          "stop_on_error": True}, metadata={"cellId": cell_id})
        self.client.shell_channel.send(msg)
        return self.collect(msg["header"]["msg_id"], timeout)

    def collect(self, msg_id: str, timeout: float) -> dict[str, Any]:
        out: dict[str, Any] = {"stdout": "", "stderr": "", "error": None, "evalue": "", "traceback": "", "html": []}
        deadline = time.monotonic() + timeout
        while True:
            try:
                msg = self.client.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"the cell did not finish within {timeout}s; so far: {out}") from None
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                out[content["name"]] += content["text"]
            elif kind == "error":  # the traceback as the notebook shows it, without its colours
                out["error"], out["evalue"] = content["ename"], content["evalue"]
                out["traceback"] = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(content["traceback"]))
            elif kind in ("execute_result", "display_data") and "text/html" in content["data"]:
                out["html"].append(content["data"]["text/html"])
            elif kind == "status" and content["execution_state"] == "idle":
                out["reply"] = self.client.get_shell_msg(timeout=10)["content"]
                return out

    def busy(self, msg_id: str, timeout: float = 30) -> None:
        """Wait until the kernel started running that cell."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = self.client.get_iopub_msg(timeout=timeout)
            if (msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "status"
                    and msg["content"]["execution_state"] == "busy"):
                return
        raise AssertionError("the cell never started")

    def close(self) -> None:
        self.client.stop_channels()
        self.manager.shutdown_kernel(now=False)


@pytest.fixture(scope="module")
def kernel() -> Iterator[Kernel]:
    k = Kernel()
    setup = k.run("import time\nimport labcluster as lc\n"
                  "session = lc.init(num_cpus=2, include_dashboard=False)\n"
                  "@lc.remote\ndef slow(seconds):\n    time.sleep(seconds)\n    return seconds\n"
                  "print(len(lc.nodes()))")
    assert setup["error"] is None and setup["stdout"].strip() == "1", setup
    yield k
    k.run("lc.shutdown()")
    k.close()


def _interrupt(kernel: Kernel, code: str, after: float = 1.5) -> tuple[dict[str, Any], float]:
    msg_id = kernel.client.execute(code)
    kernel.busy(msg_id)
    time.sleep(after)  # the cell is blocked by now
    interrupted = time.monotonic()
    kernel.manager.interrupt_kernel()
    out = kernel.collect(msg_id, timeout=30)
    return out, time.monotonic() - interrupted


@pytest.mark.parametrize("cell", [
    pytest.param("lc.get(slow.remote(20))", id="during-lc.get"),
    pytest.param("lc.wait([slow.remote(20)], num_returns=1)", id="during-lc.wait"),
    pytest.param("time.sleep(10)", id="during-plain-sleep"),
])
def test_an_interrupt_leaves_the_cluster_running(kernel: Kernel, cell: str) -> None:
    out, seconds = _interrupt(kernel, cell)
    assert out["error"] == "KeyboardInterrupt", out
    print(f"KeyboardInterrupt {seconds:.2f}s after the interrupt")  # the figure, for the record (no threshold)
    if cell.startswith("lc."):  # the cell's line and what the interrupt cancelled, not the frames of a thread wait
        assert re.search(r"was interrupted; cancelled what cell \[\d+\] started: 1 task; the cluster keeps "
                         r"running", out["evalue"]), out
        assert "threading.py" not in out["traceback"] and "distributed" not in out["traceback"], out["traceback"]
    # the next cell runs tasks at once, on the same workers, and prints nothing of Dask's
    after = kernel.run("print(len(lc.nodes()), lc.get(slow.remote(0.1), timeout=30))", timeout=60)
    assert after["error"] is None, after
    assert after["stdout"].strip() == "1 0.1"
    assert "Traceback" not in after["stderr"] and "KeyboardInterrupt" not in after["stderr"], after["stderr"]


def test_a_dead_worker_is_one_labcluster_line_in_the_cell_where_it_died(kernel: Kernel) -> None:
    out = kernel.run("import os, signal\nrefs = [slow.remote(1) for _ in range(2)]\ntime.sleep(0.3)\n"
                     "os.kill(lc.nodes()[0]['PID'], signal.SIGKILL)\nprint(lc.get(refs, timeout=60))", timeout=90)
    assert out["error"] is None, out
    lines = out["stdout"].splitlines()
    assert lines[-1] == "[1, 1]"
    assert any(line.startswith("labcluster: worker cpu-0 died; restarting it;") for line in lines), lines
    assert out["stderr"] == "", out["stderr"]  # Dask's WARNING lines went to the cluster's log file


def test_errors_in_a_cell_show_the_callers_line_the_message_and_the_users_source(kernel: Kernel) -> None:
    out = kernel.run("slow.options(num_gpus=3).remote(1)")
    assert out["error"] == "InfeasibleResourceError" and "no worker has a GPU" in out["evalue"], out
    assert "slow.options(num_gpus=3).remote(1)" in out["traceback"]
    assert "submit.py" not in out["traceback"] and "feasibility.py" not in out["traceback"], out["traceback"]
    # an actor class defined in a cell: its method's line shows in the remote traceback (inspect has no source
    # for the class there; its methods have)
    out = kernel.run("@lc.remote\nclass Parser:\n    def parse(self, text):\n        return int(text)\n\n"
                     "lc.get(Parser.remote().parse.remote('seven'))")
    assert out["error"] == "TaskError(ValueError)", out
    assert "return int(text)" in out["evalue"] and "<dynamic-code>" not in out["evalue"], out["evalue"]


def test_a_dataset_in_a_cell_shows_the_users_source_and_stops_on_interrupt(kernel: Kernel) -> None:
    # an operator function defined in a cell: its line shows in the remote traceback, with the operator and row
    out = kernel.run("def parse(row):\n    return {'n': int(row['text'])}\n\n"
                     "lc.data.from_items([{'text': '1'}, {'text': 'x'}]).map(parse).take_all()")
    assert out["error"] == "TaskError(ValueError)", out
    assert "return {'n': int(row['text'])}" in out["evalue"] and "<dynamic-code>" not in out["evalue"], out
    assert "in dataset operator 'Map(parse)', row 0 of block 1" in out["evalue"], out["evalue"]
    # a bad argument to an operator: the message under the user's line, not labcluster's frames and docstrings
    out = kernel.run("ds = lc.data.range(4)\nds.map_batches(parse, batch_format='polars')")
    assert out["error"] == "ValueError" and "batch_format must be one of" in out["evalue"], out
    assert "ds.map_batches(parse, batch_format='polars')" in out["traceback"], out["traceback"]
    assert "blocks.py" not in out["traceback"] and "dataset.py" not in out["traceback"], out["traceback"]
    assert "noqa" not in out["traceback"], out["traceback"]
    # an interrupt while a pipelined dataset streams: one line, the execution stopped, the next cell runs at once
    kernel.run("def nap(row):\n    time.sleep(0.2)\n    return row\nds = lc.data.range(100, override_num_blocks=100).map(nap)")
    out, seconds = _interrupt(kernel, "for batch in ds.iter_batches(batch_size=4):\n    pass", after=2.0)
    print(f"KeyboardInterrupt {seconds:.2f}s after the interrupt")
    assert out["error"] == "KeyboardInterrupt" and "the dataset's execution stopped" in out["evalue"], out
    assert "queue.py" not in out["traceback"] and "executor.py" not in out["traceback"], out["traceback"]
    after = kernel.run("print(lc.data.range(3).count(), len(lc.list_tasks(state='running')), "
                       "lc.get(slow.remote(0.1), timeout=30))", timeout=60)
    assert after["error"] is None and after["stdout"].strip() == "3 0 0.1", after


@pytest.mark.parametrize("cell", [
    pytest.param("refs = [slow.remote(30) for _ in range(3)]\nlc.get(refs)", id="in-lc.get"),
    pytest.param("refs = [slow.remote(30) for _ in range(3)]\ntime.sleep(30)", id="in-plain-python"),
    pytest.param("%%distributed\nimport time\ntime.sleep(30)", id="in-a-distributed-cell"),
])
def test_an_interrupt_cancels_what_the_cell_started_and_nothing_else(kernel: Kernel, cell: str) -> None:
    kernel.run("earlier = slow.remote(12)")  # a previous cell's task: the interrupt must leave it running
    out, seconds = _interrupt(kernel, cell, after=2.0)
    print(f"KeyboardInterrupt {seconds:.2f}s after the interrupt: {out['evalue'] or out['stderr']}")
    said = out["evalue"] + out["stderr"]
    assert out["error"] == "KeyboardInterrupt", out
    assert re.search(r"cancelled what cell \[\d+\] started: (3 tasks|1 task); the cluster keeps running", said), said
    time.sleep(5)  # what the cell started is gone for good; the earlier cell's task still runs; no worker was lost
    after = kernel.run("running = lc.list_tasks(state='running')\n"
                       "print(sorted({r['function'] for r in running}), earlier.state, len(lc.nodes()))")
    assert after["error"] is None and after["stdout"].strip() == "['slow'] pending 1", after
    assert kernel.run("print(lc.get(earlier, timeout=30))", timeout=60)["stdout"].strip() == "12"


def test_an_interrupt_cancels_the_cells_actor_calls_that_have_not_started(kernel: Kernel) -> None:
    kernel.run("@lc.remote\nclass Worker:\n    def __init__(self):\n        self.n = 0\n    def work(self):\n"
               "        time.sleep(1)\n        self.n += 1\n    def count(self):\n        return self.n\n\n"
               "w = Worker.remote()\nlc.get(w.count.remote())")
    out, _ = _interrupt(kernel, "lc.get([w.work.remote() for _ in range(6)])", after=1.5)
    # one call done, one running (it finishes), four never start
    assert "cancelled what cell" in out["evalue"] and "actor calls (one already running finishes)" in out["evalue"]
    time.sleep(2.5)
    after = kernel.run("print(lc.get(w.count.remote(), timeout=30))")
    assert after["stdout"].strip() == "2", after
    kernel.run("lc.kill(w)")


def test_the_cell_a_message_names_is_the_cell_numbered_so(kernel: Kernel) -> None:
    msg_id = kernel.client.execute("refs = [slow.remote(30)]\nlc.get(refs)")
    kernel.busy(msg_id)
    time.sleep(1.5)
    kernel.manager.interrupt_kernel()
    out = kernel.collect(msg_id, timeout=30)
    number = out["reply"]["execution_count"]  # In[number]
    assert f"cancelled what cell [{number}] started: 1 task" in out["evalue"], (number, out["evalue"])


def test_what_a_nested_task_prints_lands_in_the_cell_too(kernel: Kernel) -> None:
    out = kernel.run("@lc.remote\ndef inner():\n    print('from the inner task')\n    return 1\n\n"
                     "@lc.remote\ndef outer():\n    print('from the outer task')\n    return lc.get(inner.remote())\n\n"
                     "print(lc.get(outer.remote()))\ntime.sleep(0.5)")
    assert out["error"] is None, out
    assert sorted(out["stdout"].splitlines()) == ["1", "from the inner task", "from the outer task"], out


def test_what_a_task_prints_lands_in_the_cell_that_started_it(kernel: Kernel) -> None:
    kernel.run("@lc.remote\ndef chatty(n):\n    for i in range(n):\n        print('line', i, flush=True)\n"
               "        time.sleep(0.3)\n    import warnings\n    warnings.warn('the last line')\n    return n")
    first = kernel.client.execute("ref = chatty.remote(6)\nprint('first cell done')")
    time.sleep(0.5)
    second = kernel.client.execute("time.sleep(3)\nprint('second cell done')")
    streams: dict[str, list[tuple[str, str]]] = {first: [], second: []}
    deadline, second_done = time.monotonic() + 30, False
    while time.monotonic() < deadline and not (second_done and any("the last line" in t for _, t in streams[first])):
        try:
            msg = kernel.client.get_iopub_msg(timeout=1)
        except queue.Empty:
            continue
        parent = msg["parent_header"].get("msg_id")
        if parent in streams and msg["msg_type"] == "stream":
            streams[parent].append((msg["content"]["name"], msg["content"]["text"]))
        second_done |= (parent == second and msg["msg_type"] == "status"
                        and msg["content"]["execution_state"] == "idle")
    kernel.run("lc.get(ref)")
    text = "".join(t for name, t in streams[first] if name == "stdout")
    assert text == "first cell done\n" + "".join(f"line {i}\n" for i in range(6)), streams
    assert any(name == "stderr" and "UserWarning: the last line" in t for name, t in streams[first]), streams
    assert streams[second] == [("stdout", "second cell done\n")], streams  # none of the task's lines


def test_what_an_actor_method_prints_lands_in_the_calling_cell(kernel: Kernel) -> None:
    kernel.run("@lc.remote\nclass Greeter:\n    def greet(self, who):\n        print('hello', who)\n"
               "        return len(who)\n\ng = Greeter.remote()")
    out = kernel.run("print(lc.get(g.greet.remote('notebook')))\ntime.sleep(0.3)")
    # (the call's reply comes straight from the actor's worker, its output through the scheduler: either may be
    # first, both land in this cell)
    assert out["error"] is None and sorted(out["stdout"].splitlines()) == ["8", "hello notebook"], out
    # what a constructor prints lands once, in the cell that made the actor (not later, in whatever cell runs,
    # through the kernel's captured file descriptors, and again in the server's log)
    out = kernel.run("@lc.remote\nclass Loud:\n    def __init__(self):\n        print('loading the model')\n"
                     "    def ping(self):\n        return 'pong'\n\nloud = Loud.remote()\n"
                     "print(lc.get(loud.ping.remote()))\ntime.sleep(0.5)")
    assert out["error"] is None and out["stdout"].splitlines() == ["loading the model", "pong"], out
    assert "loading the model" not in kernel.run("time.sleep(1)")["stdout"]


def test_a_task_that_floods_its_cell_is_cut_with_a_note(kernel: Kernel) -> None:
    out = kernel.run("@lc.remote\ndef flood():\n    for i in range(5000):\n        print(i)\n\n"
                     "lc.get(flood.remote())\ntime.sleep(0.5)")
    lines = out["stdout"].splitlines()
    assert lines[:3] == ["0", "1", "2"] and len(lines) < 1000, len(lines)
    assert re.search(r"\[labcluster: \d+ lines of flood dropped: it printed more than 200 lines/s", out["stdout"])


def test_a_session_shows_as_the_cluster_widget_with_an_html_fallback(kernel: Kernel) -> None:
    msg_id = kernel.client.execute("session")
    bundles = []
    while True:
        msg = kernel.client.get_iopub_msg(timeout=30)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] in ("display_data", "execute_result"):
            bundles.append(msg["content"]["data"])
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            break
    assert len(bundles) == 1, bundles
    assert {"application/vnd.jupyter.widget-view+json", "text/html"} <= set(bundles[0]), bundles
    assert "labcluster session" in bundles[0]["text/html"] and "cpu-0" in bundles[0]["text/html"]


def _widget_traffic(kernel: Kernel, code: str) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    """Run a cell; return what it printed, the widgets it displayed, and the widget state updates it sent."""
    msg_id = kernel.client.execute(code)
    shown: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    out: dict[str, Any] = {"stdout": "", "error": None}
    while True:
        msg = kernel.client.get_iopub_msg(timeout=120)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        kind, content = msg["msg_type"], msg["content"]
        if kind == "display_data" and "application/vnd.jupyter.widget-view+json" in content["data"]:
            shown.append(content["data"])
        elif kind == "comm_msg" and content["data"].get("state"):
            updates.append(content["data"]["state"])
        elif kind == "stream":
            out["stdout"] += content["text"]
        elif kind == "error":
            out["error"] = content["ename"]
        elif kind == "status" and content["execution_state"] == "idle":
            return out, shown, updates


def test_progress_bars_appear_for_long_waits_move_and_end_in_their_state(kernel: Kernel) -> None:
    out, shown, updates = _widget_traffic(kernel, "print(lc.get([slow.remote(1) for _ in range(6)]))")
    assert out["stdout"].strip() == "[1, 1, 1, 1, 1, 1]" and len(shown) == 1, (out, shown)
    values = [u["value"] for u in updates if isinstance(u.get("value"), int)]
    assert values == sorted(values) and values[-1] == 6 and len(set(values)) >= 2, values  # it moved, then ended
    assert {"bar_style": "success"} in updates and any(u.get("value") == "6/6 &middot; done" for u in updates)

    out, shown, updates = _widget_traffic(kernel, "print(lc.get([slow.remote(0.05) for _ in range(3)]))")
    assert out["stdout"].strip() == "[0.05, 0.05, 0.05]" and shown == [], shown  # quick: no bar

    kernel.run("@lc.remote\ndef fails(i):\n    time.sleep(1.5)\n    if i % 2:\n        raise ValueError(i)\n"
               "    return i")
    out, shown, updates = _widget_traffic(kernel, "refs = [fails.remote(i) for i in range(4)]\n"
                                                  "ready, _ = lc.wait(refs, num_returns=4, timeout=60)")
    assert out["error"] is None and len(shown) == 1
    assert {"bar_style": "danger"} in updates and any(u.get("value") == "4/4 &middot; 2 failed" for u in updates)

    out, shown, updates = _widget_traffic(kernel, "def nap(row):\n    time.sleep(0.1)\n    return row\n\n"
                                                  "print(lc.data.range(40, override_num_blocks=8).map(nap).count())")
    assert out["stdout"].strip() == "40" and len(shown) == 1, (out, shown)  # one box: a bar per operator
    # without widgets (nbconvert, a console) it reads as words, not as VBox(children=...)
    assert shown[0]["text/plain"].startswith("pipelined execution of 1 stage(s): ReadRange->Map(nap)"), shown
    assert any("pipelined</b> &middot; done in" in str(u.get("value")) for u in updates), updates
    assert any(u.get("value") == "8/8 blocks, 40 rows" for u in updates), updates


def test_the_cell_that_imports_labcluster_is_a_cell_like_the_others() -> None:
    # import labcluster loads the extension mid-cell: that very cell's tasks print into it, and IPython's extension
    # manager knows the extension is loaded (%unload_ext finds it)
    k = Kernel()
    try:
        out = k.run("import time\nimport labcluster as lc\nlc.init(num_cpus=1, include_dashboard=False)\n"
                    "@lc.remote\ndef hi():\n    print('hi from the first cell')\n\nlc.get(hi.remote())\n"
                    "time.sleep(0.3)")
        assert out["error"] is None and out["stdout"] == "hi from the first cell\n", out
        out = k.run("%unload_ext labcluster\n%load_ext labcluster\nprint('reloaded')")
        assert out["stdout"].strip() == "reloaded" and "not loaded" not in out["stdout"] + out["stderr"], out
        k.run("lc.shutdown()")
    finally:
        k.close()


def test_the_cluster_a_kernel_started_is_listed_as_that_notebooks(kernel: Kernel) -> None:
    from labcluster.cluster import registry

    out = kernel.run("import os\nprint(session.address, os.getpid())")
    address, pid = out["stdout"].split()
    (entry,) = [e for e in registry.entries() if e["address"] == address]
    assert entry["owner"] == {"kind": "kernel", "notebook": "course/intro.ipynb", "pid": int(pid)}
    assert entry["processes"] is True and entry["dashboard"] is None and entry["head_pid"] != int(pid)


def test_bokehjs_goes_again_with_a_new_run_of_the_cell_that_carried_it() -> None:
    """A picture carries BokehJS (4 MB) once; re-running the cell that carried it clears that output, so its next
    picture carries it again (else a saved notebook's charts go blank); other cells' pictures wait for it."""
    k = Kernel()
    try:
        setup = k.run("import labcluster as lc\nfrom bokeh.plotting import figure\n"
                      "from labcluster.diagnostics.figures import Figure\n"
                      "def picture():\n    fig = figure(title='t')\n    fig.line([0, 1], [0, 1])\n"
                      "    return Figure(fig, 'a test picture')")
        assert setup["error"] is None, setup

        def carries(cell: str) -> list[bool]:
            out = k.run("picture()", cell_id=cell)
            assert out["error"] is None and out["html"], out
            return [len(h) > 1_000_000 for h in out["html"]]  # BokehJS inline is ~4 MB; a picture alone ~10 kB

        assert carries("cell-a") == [True]
        assert carries("cell-b") == [False]  # it waits for the one on the page
        assert carries("cell-a") == [True]  # cell-a ran again: its old output, and BokehJS with it, is gone
        assert carries("cell-b") == [False]
        assert k.run("1 + 1", cell_id="cell-a")["error"] is None  # cell-a again, with no picture this time
        assert carries("cell-b") == [True]  # so the next picture carries it
        out = k.run("picture()", cell_id="cell-c")
        assert "run that picture's cell again" in out["html"][0]  # what shows if BokehJS never comes
    finally:
        k.close()
