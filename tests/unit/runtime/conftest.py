import pytest

from speedster_dist.measure import MeasureSettings
from speedster_dist.records import DeviceKind, HardwareType
from speedster_dist.runtime import NodeProbe, backend_catalog
from speedster_dist.testing.backend_contract import contract_payload

FAKE_HW = HardwareType("cpu-fake-2c", DeviceKind.CPU, "fake test CPU", frozenset({"avx2"}), 2)
# The load check (a round on an overloaded machine is repeated, then marked) has its own tests:
# elsewhere this shared test machine would mark every confirmation.
FAST = MeasureSettings(
    warmup_calls=1, warmup_s=0, min_calls=5, min_duration_s=0.02, load_check=False
)


def fake_probe(*names, hardware=FAKE_HW):
    catalog = tuple(i for i in backend_catalog(DeviceKind.CPU) if i.name in names)
    return NodeProbe("node-1", (hardware,), ((hardware.key, catalog),))


@pytest.fixture
def payload():
    return contract_payload("mlp", 0.01, FAST)
