"""GPU probe and worker-group specs; NVML is faked (hardware boundary), everything else is real."""

import pytest
from conftest import fake_pynvml

import labcluster as lc
from labcluster.cluster.groups import default_groups, pin_gpus
from labcluster.cluster.spec import build_spec
from labcluster.diagnostics import nvml

GiB = 2**30
TWO = [("GPU-aaaa", "Tesla T4", 16 * GiB), ("GPU-bbbb", "Tesla T4", 16 * GiB)]


@pytest.fixture
def two_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nvml, "_import_pynvml", lambda: fake_pynvml(TWO))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)


def test_probe_without_library(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nvml, "_import_pynvml", lambda: None)
    result = nvml.probe()
    assert result.state is nvml.NVMLState.DISABLED_LIBRARY_NOT_FOUND and result.count == 0


def test_probe_without_driver_is_explicit_not_an_exception() -> None:
    result = nvml.probe()  # this machine has pynvml but no NVIDIA driver
    assert result.count == 0
    assert result.state in (nvml.NVMLState.DISABLED_NO_DRIVER, nvml.NVMLState.DISABLED_LIBRARY_NOT_FOUND)


def test_probe_dedups_by_uuid_and_honours_cuda_visible_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nvml, "_import_pynvml", lambda: fake_pynvml([*TWO, TWO[0]]))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert [d.uuid for d in nvml.probe().devices] == ["GPU-aaaa", "GPU-bbbb"]
    assert [d.uuid for d in nvml.probe(visible="1").devices] == ["GPU-bbbb"]
    assert [d.uuid for d in nvml.probe(visible="GPU-bbbb,1,0").devices] == ["GPU-bbbb", "GPU-aaaa"]
    hidden = nvml.probe(visible="")
    assert hidden.state is nvml.NVMLState.DISABLED_CUDA_VISIBLE_DEVICES and hidden.count == 0


def test_default_groups_one_gpu_worker_per_real_gpu(two_gpus: None) -> None:
    groups = pin_gpus(default_groups(num_cpus=4), nvml.probe())
    assert [(g.name, g.n, g.gpu_mode(0)) for g in groups] == [("cpu", 1, "none"), ("gpu", 2, "nvml")]
    spec = build_spec(groups)
    assert spec["gpu-0"]["options"]["env"]["CUDA_VISIBLE_DEVICES"] == "GPU-aaaa"
    assert spec["gpu-1"]["options"]["env"]["CUDA_VISIBLE_DEVICES"] == "GPU-bbbb"
    assert spec["gpu-1"]["options"]["resources"] == {"GPU": 1}  # its thread runs GPU work: no CPU slot
    assert spec["cpu-0"]["options"]["resources"] == {"CPU": 4}  # the cluster has the 4 CPU slots asked for
    # memory is split by threads, so the limits add up to the machine (not 100% + 50% + 50%)
    limits = [o["options"]["memory_limit"] for o in spec.values()]
    assert limits[0] == 4 * limits[1] and sum(limits) <= __import__("psutil").virtual_memory().total


def test_num_gpus_beyond_the_machine_is_simulated_and_labelled(two_gpus: None) -> None:
    # one naming rule: every GPU worker is gpu-<i>, real or simulated; the simulated ones say so everywhere
    groups = pin_gpus(default_groups(num_cpus=4, num_gpus=3), nvml.probe())
    assert [(g.name, g.n) for g in groups] == [("cpu", 1), ("gpu", 3)]
    assert [groups[1].gpu_mode(i) for i in range(3)] == ["nvml", "nvml", "simulated"]
    assert sorted(build_spec(groups)) == ["cpu-0", "gpu-0", "gpu-1", "gpu-2"]


def test_no_gpu_machine_has_no_gpu_workers_unless_asked() -> None:
    probe = nvml.ProbeResult(nvml.NVMLState.DISABLED_NO_DRIVER)
    assert [g.name for g in default_groups(probe=probe)] == ["cpu"]
    assert [(g.name, g.simulated) for g in default_groups(num_cpus=3, simulate_gpus=2, probe=probe)] == [
        ("cpu", None), ("gpu", True)]
    groups = default_groups(num_cpus=2, num_gpus=1, probe=probe)
    assert [(g.name, g.nthreads) for g in groups] == [("cpu", 2), ("gpu", 1)]  # CPU: 2 in all, as asked
    assert pin_gpus(groups, probe)[1].gpu_mode(0) == "simulated"
    spec = build_spec(pin_gpus(groups, probe))
    assert spec["cpu-0"]["options"]["resources"] == {"CPU": 2}
    assert spec["gpu-0"]["options"]["resources"] == {"GPU": 1}  # its thread runs GPU work, not CPU work


def test_group_validation_messages() -> None:
    with pytest.raises(ValueError, match="CPU slots come from nthreads"):
        lc.WorkerGroup("x", resources={"CPU": 2})
    with pytest.raises(ValueError, match="exactly one GPU each"):
        lc.WorkerGroup("x", resources={"GPU": 2}, simulated=False)
    with pytest.raises(ValueError, match="unique"):
        build_spec([lc.WorkerGroup("a"), lc.WorkerGroup("a")])
    probe = nvml.ProbeResult(nvml.NVMLState.DISABLED_NO_DRIVER)
    with pytest.raises(ValueError, match="needs 1 real GPU"):
        pin_gpus([lc.WorkerGroup("g", resources={"GPU": 1}, simulated=False)], probe)
