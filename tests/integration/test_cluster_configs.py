"""The cloud configs in cluster/ are valid and private: checked without a cloud."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from speedster_dist.hardware import HARDWARE_LABEL

CLUSTER = Path(__file__).resolve().parents[2] / "cluster"
GROUP_LABEL = "speedster-dist/node-group"
WANTED = {"cpu-sapphire-rapids", "cpu-genoa", "gpu-l4", "gpu-a10g", "gpu-h100"}


def test_autoscaler_yaml_passes_rays_own_validation_and_is_private():
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((CLUSTER / "autoscaler-aws.yaml").read_text())
    validate_config(prepare_config(config))  # raises on anything the cluster launcher rejects
    types = config["available_node_types"]
    assert set(types) == WANTED | {"head"}
    assert types["head"]["resources"] == {"CPU": 0}  # no trial measures on the head
    for name in WANTED:
        # Labelled by hardware group; the type key itself comes from probing the node.
        assert types[name]["labels"] == {GROUP_LABEL: name}
        assert HARDWARE_LABEL not in types[name]["labels"]
    assert config["provider"]["use_internal_ips"] is True
    starts = config["head_start_ray_commands"] + config["worker_start_ray_commands"]
    assert all("RAY_AUTH_MODE=token" in command for command in starts)
    assert "--dashboard-host=127.0.0.1" in config["head_start_ray_commands"][0]
    assert "~/.ray/auth_token" in config["file_mounts"]
    # Exactly one ONNX Runtime per node: the GPU build on GPU types, the CPU one elsewhere.
    cpu_setup = " ".join(config["head_setup_commands"] + config["worker_setup_commands"])
    assert '"onnxruntime>=' in cpu_setup and "onnxruntime-gpu" not in cpu_setup
    for name in WANTED:
        setup = " ".join(types[name].get("worker_setup_commands", config["worker_setup_commands"]))
        gpu = name.startswith("gpu-")
        assert ("onnxruntime-gpu" in setup) == gpu and ('"onnxruntime>=' in setup) != gpu
        assert ("tensorrt" in setup) == gpu


def test_kuberay_manifest_has_one_worker_group_per_hardware_type_and_is_private():
    cluster, policy = yaml.safe_load_all((CLUSTER / "kuberay.yaml").read_text())
    assert cluster["apiVersion"] == "ray.io/v1" and cluster["kind"] == "RayCluster"
    assert cluster["metadata"]["name"] == "speedster-dist"  # what nightly-cronjob.yaml selects
    spec = cluster["spec"]
    groups = {g["groupName"]: g for g in spec["workerGroupSpecs"]}
    assert set(groups) == WANTED
    assert spec["headGroupSpec"]["serviceType"] == "ClusterIP"
    assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    pods = [spec["headGroupSpec"]["template"]] + [g["template"] for g in groups.values()]
    for pod in pods:
        (container,) = pod["spec"]["containers"]
        env = {e["name"]: e for e in container["env"]}
        assert env["RAY_AUTH_MODE"]["value"] == "token"
        assert env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "ray-auth-token"
        assert pod["metadata"]["labels"] == policy["spec"]["podSelector"]["matchLabels"]
    for name, group in groups.items():
        assert group["labels"] == {GROUP_LABEL: name}
        limits = group["template"]["spec"]["containers"][0]["resources"]["limits"]
        assert ("nvidia.com/gpu" in limits) == name.startswith("gpu-")
    assert (
        groups["gpu-h100"]["template"]["spec"]["containers"][0]["resources"]["limits"][
            "nvidia.com/gpu"
        ]
        == 8
    )
    assert policy["kind"] == "NetworkPolicy" and policy["spec"]["ingress"] == [
        {"from": [{"podSelector": {}}]}
    ]


@pytest.mark.parametrize("script", ["local.sh"])
def test_local_script_is_valid_bash_and_never_stops_other_rays(script):
    import subprocess

    text = (CLUSTER / script).read_text()
    assert subprocess.run(["bash", "-n", str(CLUSTER / script)]).returncode == 0
    assert "ray stop" not in text.replace("never `ray stop`", "")
    assert "RAY_AUTH_MODE=token" in text and "127.0.0.1" in text


def test_costly_groups_start_at_zero_nodes_the_search_demand_brings_them_up():
    aws = yaml.safe_load((CLUSTER / "autoscaler-aws.yaml").read_text())["available_node_types"]
    kube, _ = yaml.safe_load_all((CLUSTER / "kuberay.yaml").read_text())
    replicas = {g["groupName"]: g["minReplicas"] for g in kube["spec"]["workerGroupSpecs"]}
    for name in WANTED - {"cpu-sapphire-rapids"}:  # every group but the one cheap CPU group
        assert aws[name]["min_workers"] == 0 and replicas[name] == 0, name
        # The custom resource a v1 autoscaler scales on (it ignores label selectors).
        assert aws[name]["resources"] == {f"speedster-group-{name}": 1}
