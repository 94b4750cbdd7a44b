"""Starting, connecting to and stopping clusters: real schedulers and worker processes."""

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest
from conftest import CLIProcess, children, fake_pynvml, free_port, gone, wait_until
from distributed import LocalCluster

import labcluster as lc
from labcluster import config
from labcluster.diagnostics import nvml
from labcluster.exceptions import ClusterError


@lc.remote
def slow_identity(x: int, seconds: float) -> int:
    time.sleep(seconds)
    return x


@lc.remote
def whoami() -> dict:
    ctx = lc.get_runtime_context()
    return {"node": ctx.get_node_id(), "gpus": lc.get_gpu_ids(), "cuda": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "mode": ctx.gpu_mode, "resources": ctx.get_assigned_resources()}


def test_ray_keywords_declare_what_the_local_cluster_advertises(shutdown_after: None) -> None:
    with lc.init(num_cpus=3, num_gpus=2, resources={"special": 1}, include_dashboard=False) as session:
        total = lc.cluster_resources()
        assert (total["CPU"], total["GPU"], total["special"]) == (3, 2, 1)  # the CPU slots asked for: the CPU worker's
        assert lc.is_initialized()
        nodes = lc.nodes()
        assert sorted(n["GPUMode"] for n in nodes) == ["none", "simulated", "simulated"]
        assert "simulated" in repr(session) and "simulated" in session._repr_html_()
        out = lc.get(whoami.options(num_gpus=1).remote())
        assert out["mode"] == "simulated" and out["gpus"] in ([0], [1])
        assert out["resources"] == {"GPU": 1.0}  # GPU work asks for no CPU slot
    assert not lc.is_initialized()


def test_real_gpus_are_pinned_one_per_worker(shutdown_after: None, monkeypatch: pytest.MonkeyPatch) -> None:
    GiB = 2**30
    monkeypatch.setattr(nvml, "_import_pynvml",
                        lambda: fake_pynvml([("GPU-1111", "A100", 40 * GiB), ("GPU-2222", "A100", 40 * GiB)]))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    lc.init(num_cpus=1, include_dashboard=False)
    seen = {tuple(lc.get(whoami.options(num_gpus=1).remote())["gpus"]) for _ in range(12)}
    outs = [lc.get(whoami.options(num_gpus=1).remote()) for _ in range(8)]
    assert {o["cuda"] for o in outs} <= {"GPU-1111", "GPU-2222"}
    assert all(o["mode"] == "nvml" for o in outs)
    assert seen <= {(0,), (1,)}
    cpu_out = lc.get(whoami.options(num_cpus=1).remote())
    assert cpu_out["node"] in {n["NodeID"] for n in lc.nodes()}


def test_explicit_worker_groups_with_custom_resources(shutdown_after: None) -> None:
    lc.init(workers=[lc.WorkerGroup("cpu", n=2, nthreads=1), lc.WorkerGroup("fat", nthreads=2,
                                                                            resources={"bigmem": 1})],
            include_dashboard=False)
    names = sorted(n["NodeName"] for n in lc.nodes())
    assert names == ["cpu-0", "cpu-1", "fat-0"]
    out = lc.get(whoami.options(resources={"bigmem": 1}).remote())
    fat = next(n for n in lc.nodes() if n["NodeName"] == "fat-0")
    assert out["node"] == fat["NodeID"]


def test_init_twice_shutdown_and_init_again(shutdown_after: None) -> None:
    first = lc.init(num_cpus=1, processes=False)
    with pytest.raises(RuntimeError, match="already called"):
        lc.init(num_cpus=1)
    assert lc.init(ignore_reinit_error=True) is first
    lc.shutdown()
    lc.shutdown()  # twice is fine
    lc.init(num_cpus=1, processes=False)
    assert lc.get(whoami.remote())["mode"] == "none"


def test_bad_init_arguments_say_what_is_wrong(shutdown_after: None) -> None:
    with pytest.raises(TypeError, match=r"unknown lc.init\(\) keyword 'num_cpu' \(did you mean 'num_cpus'\?\); valid"):
        lc.init(num_cpu=2)
    with pytest.raises(ValueError, match="describe a local cluster"):
        lc.init("tcp://127.0.0.1:1", num_cpus=2)
    with pytest.raises(ClusterError, match="could not reach a Dask scheduler"):
        lc.init(f"tcp://127.0.0.1:{free_port()}", timeout=1)
    assert not lc.is_initialized()


def test_first_remote_call_starts_a_default_cluster(shutdown_after: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert not lc.is_initialized()
    # a question about the cluster starts none (it would be empty): it says how to start one
    for question in (lc.cluster_resources, lc.available_resources, lc.nodes, lc.list_tasks, lc.list_actors,
                     lc.get_runtime_context, lc.util.placement_group_table, lc.timeline_figure):
        with pytest.raises(ClusterError, match=r"not initialized: call lc.init\(\) first"):
            question()
    assert not lc.is_initialized()
    with __import__("dask").config.set({"labcluster.local.processes": False}):
        assert lc.get(whoami.remote())["mode"] == "none"
    assert lc.is_initialized()
    said = capsys.readouterr().out  # work starts one, and says so
    assert re.search(r"^labcluster: started a local cluster in [\d.]+s \(CPU: \d+\), as lc.init\(\) would; "
                     r"lc.shutdown\(\) stops it$", said, re.M), said
    from dask.system import CPU_COUNT

    assert lc.cluster_resources()["CPU"] == CPU_COUNT  # sized to the machine
    assert [n["GPUMode"] for n in lc.nodes()] == ["none"]  # no GPU here, none simulated unless asked


@lc.remote
def environ(names: tuple[str, ...]) -> dict[str, str | None]:
    return {name: os.environ.get(name) for name in names}


def test_shutdown_leaves_no_orphan_processes(shutdown_after: None) -> None:
    before = children()
    driver_env = {name: os.environ.get(name) for name in ("MALLOC_TRIM_THRESHOLD_", "OMP_NUM_THREADS")}
    lc.init(num_cpus=2, simulate_gpus=2, include_dashboard=False)
    started = children() - before
    assert len(started) >= 3  # one process per worker (plus multiprocessing helpers)
    pids = {n["PID"] for n in lc.nodes()}
    assert pids <= started
    head = lc.current_session().client.run_on_scheduler(os.getpid)
    assert head in started - pids  # the scheduler and the Nannies run in the cluster's head process
    # every worker descends from the head (forked by its forkserver), in the head's session: out of the kernel's
    assert all(head in {p.pid for p in psutil.Process(pid).parents()} for pid in pids)
    assert os.getsid(head) != os.getsid(0) and os.getpgid(head) != os.getpgid(0)
    assert {os.getsid(pid) for pid in started} == {os.getsid(head)}
    # forked workers start with the environment a Nanny gives the workers it spawns (so does the head, whose fork
    # the forkserver is); this process's stays as it was
    spawn_env = ("MALLOC_TRIM_THRESHOLD_", "OMP_NUM_THREADS")
    assert lc.get(environ.remote(spawn_env)) == {"MALLOC_TRIM_THRESHOLD_": "65536", "OMP_NUM_THREADS": "1"}
    assert psutil.Process(head).environ().get("MALLOC_TRIM_THRESHOLD_") == "65536"
    assert {name: os.environ.get(name) for name in spawn_env} == driver_env
    lc.shutdown()
    assert wait_until(lambda: all(gone(pid) for pid in started), timeout=15), [p for p in started if not gone(p)]


_DRIVER = """
import json, os, time
if __name__ == "__main__":
    import labcluster as lc
    session = lc.init(num_cpus=1, include_dashboard=False)
    pids = [session.client.run_on_scheduler(os.getpid), *(n["PID"] for n in lc.nodes())]
    print(json.dumps(pids), flush=True)
    time.sleep(120)
"""


def test_a_killed_driver_leaves_no_scheduler_or_worker_behind(tmp_path: Path) -> None:
    # a kernel killed outright runs no cleanup: the head process notices its parent is gone
    script = tmp_path / "driver.py"
    script.write_text(_DRIVER)
    driver = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        assert driver.stdout is not None
        pids = json.loads(driver.stdout.readline())
        assert len(pids) == 2 and driver.pid not in pids
    finally:
        driver.kill()
        driver.wait(timeout=10)

    assert wait_until(lambda: all(gone(pid) for pid in pids), timeout=15), [p for p in pids if not gone(p)]


def test_a_dead_head_process_is_a_clear_error_and_shutdown_is_quick(shutdown_after: None) -> None:
    before = children()
    session = lc.init(num_cpus=1, include_dashboard=False)
    started = children() - before
    ref = slow_identity.remote(1, 30)
    os.kill(session.client.run_on_scheduler(os.getpid), signal.SIGKILL)
    with pytest.raises(ClusterError, match=r"head process \(pid \d+\) exited \(killed by SIGKILL\).*lc.init"):
        lc.get(ref)  # not a wait forever, not a GetTimeoutError that says the tasks keep running
    with pytest.raises(ClusterError, match="exited"):
        whoami.remote()  # every call says so
    t = time.monotonic()
    lc.shutdown()
    assert time.monotonic() - t < 15
    # the workers and the forkserver die with their head, though they are no children of this process any more
    assert wait_until(lambda: all(gone(pid) for pid in started), timeout=15), [p for p in started if not gone(p)]
    lc.init(num_cpus=1, include_dashboard=False)  # and a new cluster starts
    assert lc.get(whoami.remote())["mode"] == "none"


def test_a_cluster_that_cannot_start_says_why(shutdown_after: None) -> None:
    before = children()
    with pytest.raises(ClusterError, match=r"local cluster failed to start on host '192\.0\.2\.1': .*(assign|bind)"):
        lc.init(num_cpus=1, include_dashboard=False, host="192.0.2.1")  # TEST-NET-1: never this machine's
    assert not lc.is_initialized()
    assert wait_until(lambda: not (children() - before), timeout=15), children() - before


def _scheduler_streams(dask_scheduler=None) -> list:  # type: ignore[no-untyped-def]
    comms = [*dask_scheduler.stream_comms.values(), *dask_scheduler.client_comms.values()]
    return [(c.interval, c.recent_message_log.maxlen, len(c.recent_message_log)) for c in comms]


def _worker_stream(dask_worker=None) -> tuple:  # type: ignore[no-untyped-def]
    c = dask_worker.batched_stream
    return (c.interval, c.recent_message_log.maxlen, len(c.recent_message_log))


def test_every_stream_keeps_a_short_message_log(shutdown_after: None) -> None:
    # Dask's streams keep 1,000 sent payloads; under load that held ~100k task messages in the driver
    session = lc.init(num_cpus=2, include_dashboard=False)
    lc.get([whoami.remote() for _ in range(300)])
    log = config.get("stream-message-log")
    client_comm = session.client.scheduler_comm
    streams = [(client_comm.interval, client_comm.recent_message_log.maxlen, len(client_comm.recent_message_log)),
               *session.client.run_on_scheduler(_scheduler_streams), *session.client.run(_worker_stream).values()]
    assert len(streams) == 4  # client, the scheduler's two (to the worker and to the client), the worker's
    assert all(interval == 0 and maxlen == log and 0 < held <= log for interval, maxlen, held in streams), streams


@lc.remote
class Box:
    def put(self, x: int) -> int:
        return x


def test_shutdown_forgets_the_sessions_actors(shutdown_after: None) -> None:
    # a kernel runs many sessions: nothing of a closed one may stay behind in this process
    from labcluster.api.actors import Caller

    session = lc.init(num_cpus=2, include_dashboard=False)
    box = Box.remote()
    assert lc.get([box.put.remote(i) for i in range(5)], timeout=30) == list(range(5))
    caller = session.part(Caller)
    assert box._actor_id in caller.holders and box._actor_id in caller.routes
    lc.shutdown()
    assert not caller.holders and not caller.routes and not caller.pending and not caller.dead


def test_connect_to_a_cluster_object_and_leave_it_running(shutdown_after: None) -> None:
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None,
                      resources={"CPU": 2}) as cluster:
        session = lc.init(cluster=cluster)
        assert not session.owns_cluster
        assert not session.per_task_retries  # a plain Dask scheduler: Dask's cluster-wide limit applies
        with pytest.warns(UserWarning, match="does not run labcluster's retry plugin") as seen:
            lc.get(whoami.options(max_retries=2).remote(), timeout=30)
        assert [w.filename for w in seen] == [__file__]  # once, at the user's line
        assert lc.get(whoami.remote())["mode"] == "none"  # a plain Dask worker shows as group "dask"
        assert lc.nodes()[0]["Group"] == "dask"
        lc.shutdown()
        assert cluster.status.name == "running"
        assert len(cluster.scheduler_info["workers"]) == 1


def test_a_dataset_made_before_connecting_is_cut_for_the_cluster_it_runs_on(shutdown_after: None) -> None:
    """As Ray Data, blocks are counted when a dataset runs: made before lc.init, on this machine's cores (twice its
    CPU slots for a small range), it runs twice the remote cluster's slots."""
    from labcluster.cluster.groups import cpu_count

    ds = lc.data.range(10_000)
    ahead = ds.map_batches(lambda b: {"id": b["id"] * 2})
    assert ds.num_blocks() == ahead.num_blocks() == 2 * cpu_count()
    with LocalCluster(n_workers=2, threads_per_worker=4, processes=False, dashboard_address=None,
                      resources={"CPU": 4}) as cluster:
        lc.init(address=cluster.scheduler_address)
        assert ds.num_blocks() == 16 and "16 blocks" in repr(ahead)
        done = ahead.materialize()
        assert done.num_blocks() == 16 and done.count() == 10_000
        assert lc.data.range(10_000, override_num_blocks=3).num_blocks() == 3  # asked for: as asked
        lc.shutdown()


def test_a_scheduler_that_cannot_take_the_extension_still_runs_tasks_and_says_what_will_not_work(
        shutdown_after: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    # (a scheduler where labcluster is not installed refuses the extension's pickled plugin: the same path)
    from distributed import Client

    def refuse(self: Client, *args: object, **kwargs: object) -> None:
        raise ModuleNotFoundError("No module named 'labcluster'")

    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None,
                      resources={"CPU": 2}) as cluster:
        monkeypatch.setattr(Client, "register_plugin", refuse)
        with caplog.at_level("WARNING", logger="labcluster"):
            session = lc.init(cluster=cluster)
        assert session.extension is None
        assert "actors, placement groups, task records, lineage and timelines will not work" in caplog.text
        assert lc.get(whoami.remote())["mode"] == "none"  # tasks work
        with pytest.raises(ClusterError, match="placement groups needs labcluster's scheduler extension"):
            lc.placement_group([{"CPU": 1}])


def test_a_scheduler_with_another_labcluster_version_is_named_on_connect(
        shutdown_after: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    from labcluster.scheduler.extension import LabclusterExtension

    real = LabclusterExtension.info
    monkeypatch.setattr(LabclusterExtension, "info", lambda self: {**real(self), "version": "0.0.9"})
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None,
                      resources={"CPU": 2}) as cluster:
        with caplog.at_level("WARNING", logger="labcluster"):
            lc.init(cluster=cluster)  # adds the extension, then reads its info
            assert lc.get(whoami.remote())["mode"] == "none"  # still works: a warning, not a refusal
        assert f"runs labcluster 0.0.9 and this process {lc.__version__}" in caplog.text
        assert "install the same labcluster version where the scheduler runs" in caplog.text


def test_cli_scheduler_worker_status_and_connect_by_address(shutdown_after: None) -> None:
    port = free_port()
    scheduler = CLIProcess("scheduler", "--port", str(port), "--dashboard-address", "")
    worker = None
    try:
        line = scheduler.wait_for_line("labcluster scheduler at")
        address = line.split(" at ")[1].strip()
        assert address == f"tcp://127.0.0.1:{port}"
        worker = CLIProcess("worker", address, "--nthreads", "2", "--gpus", "sim:1", "--resources", "special=2",
                            "--name", "node1")
        worker.wait_for_line("node1-gpu-0")
        session = lc.init(address)
        assert session.per_task_retries  # the CLI scheduler runs labcluster's retry plugin
        log = config.get("stream-message-log")
        assert session.client.scheduler_comm.recent_message_log.maxlen == log
        # (lambdas: this test module cannot be imported by the CLI processes, so functions go by value)
        assert session.client.run_on_scheduler(lambda dask_scheduler: {
            c.recent_message_log.maxlen for c in dask_scheduler.client_comms.values()}) == {log}
        assert wait_until(lambda: len(lc.nodes()) == 2)
        total = lc.cluster_resources()
        assert (total["CPU"], total["GPU"], total["special"]) == (2, 1, 2)  # --nthreads: the node's CPU slots
        assert lc.get(whoami.options(num_gpus=1).remote())["mode"] == "simulated"
        assert set(session.client.run(lambda dask_worker: dask_worker.batched_stream.recent_message_log.maxlen)
                   .values()) == {log}
        lc.shutdown()
        status = CLIProcess("status", address)
        assert status.proc.wait(timeout=60) == 0
        assert status.proc.stdout is not None
        text = status.proc.stdout.read()
        assert "node1-gpu-0" in text and "1 GPU (simulated)" in text and "special: 2" in text
        assert worker.stop() == 0
        assert scheduler.proc.poll() is None  # workers leaving does not stop the scheduler
    finally:
        if worker is not None and worker.proc.poll() is None:
            worker.stop()
        assert scheduler.stop() == 0


def test_cli_worker_rejects_bad_gpu_spec() -> None:
    proc = CLIProcess("worker", "tcp://127.0.0.1:1", "--gpus", "2")
    assert proc.proc.wait(timeout=60) == 2
    assert proc.proc.stdout is not None
    assert "--gpus 2: this machine has 0 GPU(s)" in proc.proc.stdout.read()



def _status_code(url: str) -> int:
    try:
        return int(urllib.request.urlopen(url, timeout=10).status)
    except urllib.error.HTTPError as e:
        return int(e.code)


def test_dashboard_on_by_default_off_when_asked(shutdown_after: None) -> None:
    session = lc.init(num_cpus=1, processes=False, dashboard_address="127.0.0.1:0")
    assert session.dashboard_link and session.dashboard_link.startswith("http://127.0.0.1:")
    assert _status_code(session.dashboard_link) == 200
    port = session.client.scheduler_info(n_workers=0)["services"]["dashboard"]
    lc.shutdown()
    session = lc.init(num_cpus=1, include_dashboard=False)
    port = session.client.scheduler_info(n_workers=0)["services"]["dashboard"]  # health/metrics routes only
    assert _status_code(f"http://127.0.0.1:{port}/status") == 404


def test_every_listener_binds_loopback(shutdown_after: None) -> None:
    session = lc.init(num_cpus=1, simulate_gpus=1)
    pids = {os.getpid(), session.client.run_on_scheduler(os.getpid), *(n["PID"] for n in lc.nodes())}
    listening = [c for c in psutil.net_connections(kind="tcp") if c.status == psutil.CONN_LISTEN and c.pid in pids]
    assert len(listening) >= 5  # scheduler, its HTTP server, and each worker's comm and HTTP ports
    assert {c.laddr.ip for c in listening} == {"127.0.0.1"}


_FORKSERVER = """
import multiprocessing, os, sys, threading
from labcluster.cluster.forkserver import fork_forkserver
import labcluster.cluster.spec  # imported before the fork: the forkserver has it, so its children do


def grandchild():
    pass


def child(queue):
    # a worker may start forkserver processes of its own: the lock its forkserver held while forking is free here
    inner = multiprocessing.get_context("forkserver").Process(target=grandchild)
    inner.start()
    inner.join(30)
    queue.put((os.getppid(), "labcluster.cluster.spec" in sys.modules and inner.exitcode == 0))


if __name__ == "__main__":
    read, write = os.pipe()
    assert fork_forkserver(close_fds=[write])
    os.close(write)
    assert os.read(read, 1) == b""  # the forkserver does not hold the pipe it was told to close
    ctx = multiprocessing.get_context("forkserver")
    queue = ctx.Queue()
    process = ctx.Process(target=child, args=(queue,))
    process.start()
    parent, warm = queue.get(timeout=30)
    process.join(30)
    from multiprocessing import forkserver
    server = forkserver._forkserver._forkserver_pid
    print(parent == server, warm, os.getppid() != server)
    busy = threading.Thread(target=threading.Event().wait, args=(5,), daemon=True)
    busy.start()
    forkserver._forkserver._forkserver_pid = None
    print(fork_forkserver())  # another thread runs: forking now could copy a held lock; nothing is done
"""


def test_the_forkserver_is_a_fork_of_the_head_with_its_modules(tmp_path: Path) -> None:
    script = tmp_path / "forkserver_check.py"
    script.write_text(_FORKSERVER)
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "True", "True", "False"]
