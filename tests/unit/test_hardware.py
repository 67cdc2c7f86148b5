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
