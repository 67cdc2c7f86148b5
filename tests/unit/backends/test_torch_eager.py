import pytest

from speedster_dist.testing.backend_contract import check_backend_contract


@pytest.mark.parametrize("kind", ["mlp", "bert"])
def test_eager_contract(tmp_path, kind):
    drop = check_backend_contract("torch", "fp32", "", tmp_path, tolerance=1e-5, kind=kind)
    assert drop == pytest.approx(0.0, abs=1e-6)
