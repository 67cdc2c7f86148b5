import os
import sys
import types
from collections import namedtuple

import pytest

from speedster_dist import hardware as _hardware
from speedster_dist.hardware import cpu_features
from speedster_dist.records import DeviceKind


def test_cpu_features_keep_only_what_matters():
    flags = ["fpu", "sse2", "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16"]
    assert cpu_features(flags) == {
        "avx2",
        "fma",
        "avx512f",
        "avx512_vnni",
        "avx512_bf16",
        "amx_bf16",
    }


def test_key_is_readable_and_names_the_strongest_features():
    key = _hardware._cpu_key(
        "GenuineIntel",
        "Intel(R) Xeon(R) Platinum 8480+ CPU @ 2.00GHz",
        frozenset({"avx2", "avx512f", "avx512_vnni", "amx_bf16"}),
        16,
    )
    assert key == "cpu-intel-xeon-platinum-8480-amxbf16-avx512vnni-16c"
    amd = _hardware._cpu_key(
        "AuthenticAMD", "AMD EPYC 7763 64-Core Processor", frozenset({"avx2", "fma"}), 2
    )
    assert amd == "cpu-amd-epyc-7763-avx2-2c"


def test_local_cpu_is_stable_and_detected(monkeypatch):
    _hardware.local_cpu.cache_clear()
    first = _hardware.local_cpu()
    assert first.device is DeviceKind.CPU and first.cores >= 1
    assert first.key.startswith("cpu-") and " " not in first.key
    _hardware.local_cpu.cache_clear()
    assert _hardware.local_cpu() == first


def test_simulated_type_overrides_the_key(monkeypatch):
    _hardware.local_cpu.cache_clear()
    monkeypatch.setenv(_hardware.SIMULATED_TYPE_ENV, "cpu-simulated-a")
    try:
        assert _hardware.local_cpu().key == "cpu-simulated-a"
    finally:
        _hardware.local_cpu.cache_clear()


def _fake_smi(folder, rows):
    smi = folder / "nvidia-smi"
    lines = "\\n".join(rows)
    smi.write_text(
        "#!/bin/sh\n"
        'case "$*" in *driver_version*) echo 570.86;; *) printf "' + lines + '\\n";; esac\n'
    )
    smi.chmod(0o755)


def test_gpus_are_found_whatever_cuda_visible_devices_says(tmp_path, monkeypatch):
    # A zero-GPU Ray task (the node probe) may see CUDA_VISIBLE_DEVICES="": nvidia-smi
    # still lists every GPU of the node, under the key a loaded learner will compute.
    monkeypatch.setitem(sys.modules, "pynvml", None)  # no NVML bindings: nvidia-smi is used
    _fake_smi(tmp_path, ["NVIDIA H200, 143771, 9.0", "NVIDIA H200, 143771, 9.0"])
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    gpus = [h for h in _hardware.local_hardware_types() if h.device is DeviceKind.GPU]
    assert [g.key for g in gpus] == ["gpu-nvidia-h200-140gb-sm90"]  # one type, two GPUs
    (gpu,) = gpus
    assert gpu.compute_capability == "9.0" and gpu.gpu_memory_mb == 143771
    assert gpu.gpu_driver == "570.86"


def test_a_broken_nvidia_smi_falls_back_to_cuda(tmp_path, monkeypatch):
    _fake_smi(tmp_path, ["garbage"])
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    assert _hardware._smi_gpus() is None


class _NVMLError(Exception):
    pass


_Memory = namedtuple("_Memory", "total free used")


def _fake_pynvml(gpus, driver=b"570.86", init_error=False):
    """A stand-in for nvidia-ml-py's ``pynvml``: ``gpus`` are (name, bytes, (major, minor))."""
    calls = []

    def init():
        calls.append("init")
        if init_error:
            raise _NVMLError("NVML Shared Library Not Found")

    module = types.ModuleType("pynvml")
    module.__dict__.update(
        NVMLError=_NVMLError,
        nvmlInit=init,
        nvmlShutdown=lambda: calls.append("shutdown"),
        nvmlDeviceGetCount=lambda: len(gpus),
        nvmlDeviceGetHandleByIndex=lambda index: gpus[index],
        nvmlDeviceGetName=lambda gpu: gpu[0],
        nvmlDeviceGetMemoryInfo=lambda gpu: _Memory(gpu[1], gpu[1], 0),
        nvmlDeviceGetCudaComputeCapability=lambda gpu: gpu[2],
        nvmlSystemGetDriverVersion=lambda: driver,
    )
    return module, calls


def _no_smi(tmp_path, monkeypatch):
    """nvidia-smi, if called, would say something else: NVML must have answered."""
    _fake_smi(tmp_path, ["Wrong GPU, 1024, 1.0"])
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")


@pytest.mark.parametrize("name", [b"NVIDIA H200", "NVIDIA H200"])  # old and new bindings
def test_gpus_are_found_through_nvml_first(tmp_path, monkeypatch, name):
    _no_smi(tmp_path, monkeypatch)
    l4 = ("NVIDIA L4", 23034 * 2**20, (8, 9))
    fake, calls = _fake_pynvml([(name, 143771 * 2**20, (9, 0))] * 2 + [l4])
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    gpus = [h for h in _hardware.local_hardware_types() if h.device is DeviceKind.GPU]
    # the same keys as nvidia-smi's figures give (the test above)
    assert [g.key for g in gpus] == ["gpu-nvidia-h200-140gb-sm90", "gpu-nvidia-l4-22gb-sm89"]
    assert gpus[0].gpu_memory_mb == 143771 and gpus[0].compute_capability == "9.0"
    assert gpus[0].gpu_name == "NVIDIA H200" and gpus[0].gpu_driver == "570.86"
    assert calls == ["init", "shutdown"]  # one NVML session, always closed


def test_nvml_without_a_driver_falls_back_to_nvidia_smi(tmp_path, monkeypatch):
    _fake_smi(tmp_path, ["NVIDIA A10G, 23028, 8.6"])
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    fake, calls = _fake_pynvml([], init_error=True)
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    gpus = [h for h in _hardware.local_hardware_types() if h.device is DeviceKind.GPU]
    assert [g.key for g in gpus] == ["gpu-nvidia-a10g-22gb-sm86"]
    assert gpus[0].gpu_driver == "570.86" and calls == ["init"]


def test_an_nvml_error_mid_query_falls_back_and_still_shuts_nvml_down(tmp_path, monkeypatch):
    _fake_smi(tmp_path, ["NVIDIA A10G, 23028, 8.6"])
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    fake, calls = _fake_pynvml([("NVIDIA H200", 2**40, (9, 0))])

    def lost(gpu):
        raise _NVMLError("GPU is lost")

    fake.nvmlDeviceGetMemoryInfo = lost
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    gpus = [h for h in _hardware.local_hardware_types() if h.device is DeviceKind.GPU]
    assert [g.key for g in gpus] == ["gpu-nvidia-a10g-22gb-sm86"]
    assert calls == ["init", "shutdown"]
