"""`import speedster_dist` must work without any optional backend library installed."""

import subprocess
import sys
import textwrap

BLOCKER = textwrap.dedent(
    """
    import importlib.abc, sys

    class Missing(importlib.abc.MetaPathFinder):
        blocked = {"onnxruntime", "openvino", "tensorrt", "onnx"}

        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in self.blocked:
                raise ImportError(f"No module named {name!r} (blocked by the test)")
            return None

    sys.meta_path.insert(0, Missing())
    """
)


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", BLOCKER + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_import_is_light_and_needs_no_backend_library():
    proc = _run(
        """
        import speedster_dist
        assert speedster_dist.__version__
        heavy = {"torch", "ray", "onnxruntime", "openvino", "tensorrt"} & set(sys.modules)
        assert not heavy, heavy
        from speedster_dist import optimize_model, load_model, LearnerMetadata  # noqa: F401
        print("ok")
        """
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "ok"


def test_missing_backend_libraries_show_as_unavailable_with_a_reason():
    proc = _run(
        """
        from speedster_dist.records import DeviceKind
        from speedster_dist.runtime import backend_catalog
        catalog = {info.name: info.unavailable for info in backend_catalog(DeviceKind.CPU)}
        for name in ("onnxruntime", "openvino", "tensorrt"):
            assert catalog[name], (name, catalog[name])
        assert catalog["torch"] is None and catalog["torchscript"] is None
        print(catalog["onnxruntime"])
        """
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "onnxruntime" in proc.stdout or "blocked" in proc.stdout


def test_an_in_process_search_needs_no_ray_optuna_pyarrow_or_openvino():
    # The GPU machine's image has torch, transformers and onnxruntime only: the GPU
    # benchmark searches in-process there (benchmarks/gpu.py).
    proc = _run(
        """
        import importlib.abc
        class Gone(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {"ray", "optuna", "pyarrow", "openvino"}:
                    raise ImportError(f"No module named {name!r} (blocked by the test)")
        sys.meta_path.insert(0, Gone())
        sys.meta_path = [f for f in sys.meta_path if type(f).__name__ != "Missing"]

        import torch
        from speedster_dist import optimize_model
        from speedster_dist.measure import MeasureSettings
        from speedster_dist.runtime import InlineExecutor
        from speedster_dist.testing.models import tiny_mlp

        model = tiny_mlp()
        data = [((torch.randn(1, 16),), 0) for _ in range(5)]
        quick = MeasureSettings(warmup_calls=1, warmup_s=0, min_calls=3, min_duration_s=0.01)
        learner = optimize_model(
            model, data, executor=InlineExecutor(), searcher="exhaustive", progress=False,
            measure_settings=quick, device="cpu", ignore_compilers=["torch_compile"],
        )
        x = torch.randn(1, 16)  # the samples' shape: all of them had batch 1
        torch.testing.assert_close(learner(x), model(x), rtol=1e-4, atol=1e-5)
        print("ok", sorted({r.candidate.backend for r in learner.results}))
        """
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1].startswith("ok")
    assert "onnxruntime" in proc.stdout  # searched, as the GPU machine's onnxruntime would be


def test_without_openvino_its_backend_says_how_to_install_it_and_refuses_work():
    # openvino is the `openvino` extra (in `cpu`): a GPU node, or a plain install, lacks it.
    proc = _run(
        """
        import sys
        from pathlib import Path
        sys.meta_path = [f for f in sys.meta_path if type(f).__name__ != "Missing"]
        import importlib.abc
        class NoOpenVino(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "openvino":
                    raise ImportError(f"No module named {name!r} (blocked by the test)")
        sys.meta_path.insert(0, NoOpenVino())

        from speedster_dist.backends import UnsupportedCandidate, get_backend
        from speedster_dist.records import DeviceKind
        from speedster_dist.runtime import backend_catalog

        catalog = {i.name: i.unavailable for i in backend_catalog(DeviceKind.CPU)}
        assert catalog["onnxruntime"] is None, catalog  # the rest of [cpu] still works
        print(catalog["openvino"])
        options = {"xml": "model.xml", "bin": "model.bin"}
        try:
            get_backend("openvino").load(Path("."), options, DeviceKind.CPU)
        except UnsupportedCandidate as exc:  # a learner's OpenVINO entry, loaded here
            print("load:", exc)
        assert "openvino" not in sys.modules
        """
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    reason, load = proc.stdout.strip().splitlines()
    assert reason == "openvino not installed: pip install 'speedster-dist[openvino]' (or [cpu])"
    assert load == f"load: {reason}"


def test_package_exports_the_speedster_entry_points():
    import speedster_dist
    from speedster_dist.api import optimize_model
    from speedster_dist.artifacts import LearnerMetadata
    from speedster_dist.learner import load_model

    assert speedster_dist.optimize_model is optimize_model
    assert speedster_dist.LearnerMetadata is LearnerMetadata
    assert speedster_dist.load_model is load_model
