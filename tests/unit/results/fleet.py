"""A synthetic fleet history: shared by the report's unit tests and its Chromium test."""

from speedster_dist.records import TrialStatus

from .conftest import confirm, nightly, run, trial

CPU, GPU = "cpu-intel-xeon-avx512vnni-8c", "gpu-nvidia-l4-24gb-sm89"


def fleet(history, confirmed=False):
    """A search on two hardware types, then five nights; the CPU winner regresses on night 5.

    ``confirmed``: the search re-timed each type's baseline and winner side by side, five
    rounds (the winner about 2.5x faster than the baseline, as in its trials)."""
    writer = run(history, "search")
    for hw, scale in ((CPU, 1.0), (GPU, 0.25)):
        base = trial("torch", "fp32", hw, 0.010 * scale, baseline=True, drop=1e-7)
        best = trial("onnxruntime", "int8", hw, 0.004 * scale, drop=0.012, technique="dynamic")
        writer.append(base)
        writer.append(best)
        writer.append(trial("openvino", "int8", hw, status=TrialStatus.REJECTED, drop=0.2))
        if confirmed:
            rounds = [0.0101, 0.0099, 0.0100, 0.0102, 0.0098]
            confirm(
                writer,
                [
                    (base, [p * scale for p in rounds]),
                    (best, [p * scale / 2.5 for p in rounds[1:] + rounds[:1]]),
                ],
            )
    writer.append(
        trial("tensorrt", "fp16", GPU, reason="RuntimeError: <engine> & 'friends' failed")
    )
    for night in range(1, 6):
        nightly(history, night, CPU, 0.0080 if night == 5 else 0.0040, 0.010)
