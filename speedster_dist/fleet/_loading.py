"""Turning files into a model and its sample inputs, for ``optimize``, ``sweep`` and ``rebench``.

Models: a Hugging Face folder (``config.json`` + safetensors, loaded with a ``transformers``
Auto class, never remote code) or model id (``org/name``, resolved from the local Hugging Face
cache: :mod:`speedster_dist.hub`), an ``.onnx`` file, a TorchScript archive (``.pt``, ``.pth``,
``.ts``: ``torch.jit.save``) or a ``torch.export`` archive (``.pt2``).
Inputs: texts in ``.json`` (a list of strings or of ``{"text": ...}`` objects), ``.jsonl``
(one string or object per line) or ``.txt`` (one text per line), tokenized with the model's
tokenizer; or arrays in an ``.npz`` (see :func:`_npz_samples`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from speedster_dist.artifacts import TEXT_SUFFIXES, InputSource, ModelSource
from speedster_dist.errors import ArtifactError, InputError
from speedster_dist.hub import check_model_folder, model_id, resolve
from speedster_dist.inputs import MIN_SAMPLES, few_samples

__all__ = [
    "check_sample_count",
    "detect_inputs",
    "detect_model",
    "read_inputs",
    "read_model",
    "sample_count",
]

TORCHSCRIPT_SUFFIXES = (".pt", ".pth", ".ts", ".torchscript")
# A tokenizer folder holds its vocabulary in one of these (fast tokenizers, WordPiece,
# BPE, SentencePiece). Without one, AutoTokenizer may still load, with an empty
# vocabulary that turns every text into unknown tokens: refused up front.
VOCABULARY_FILES = (
    "tokenizer.json",
    "vocab.txt",
    "vocab.json",
    "spiece.model",
    "sentencepiece.bpe.model",
    "tokenizer.model",
)


def detect_model(
    path: str | Path, model_class: str = "AutoModel", allow_download: bool = False
) -> ModelSource:
    """Which kind of model ``path`` is; raises InputError when it is none of them. A Hugging
    Face model id is resolved from the local cache (downloaded with ``allow_download``):
    its snapshot folder is the source's path."""
    where = Path(path)
    suffix = where.suffix.lower()
    if not where.exists() and not suffix and model_id(str(path)) is not None:
        where = resolve(str(path), allow_download)
    if where.is_dir():
        if not (where / "config.json").is_file():
            raise InputError(f"{where} is a folder without config.json: not a Hugging Face model")
        check_model_folder(where)  # safetensors only, no code of its own
        return ModelSource(where, "hf", model_class)
    if not where.is_file():
        raise InputError(
            f"model {where} does not exist (give a Hugging Face folder or model id 'org/name', "
            "an .onnx file, a TorchScript archive or a torch.export .pt2 file)"
        )
    if suffix == ".onnx":
        return ModelSource(where, "onnx")
    if suffix in TORCHSCRIPT_SUFFIXES:
        return ModelSource(where, "torchscript")
    if suffix == ".pt2":
        return ModelSource(where, "torch_export")
    raise InputError(
        f"cannot tell what model {where} is: give a Hugging Face folder, an .onnx file, a "
        f"TorchScript archive ({', '.join(TORCHSCRIPT_SUFFIXES)}) or a torch.export .pt2 file"
    )


def read_model(source: ModelSource, trust_code: bool = True) -> Any:
    """The model object ``optimize_model`` takes (an ``nn.Module``, or the ONNX path).

    TorchScript and torch.export files are programs: with ``trust_code=False`` (a rebench
    kit nobody vouched for) they are refused. A Hugging Face folder loads safetensors only,
    never remote code; an ONNX file is data.
    """
    if source.kind in ("torchscript", "torch_export") and not trust_code:
        raise ArtifactError(
            f"the model {source.path} is a {source.kind} program: loading it runs code from "
            "the file; re-benchmark it only if you trust who wrote it (--trust-code)"
        )
    if source.kind == "onnx":
        return source.path
    import torch

    try:
        if source.kind == "hf":
            import transformers

            auto = getattr(transformers, source.model_class, None)
            if auto is None or not hasattr(auto, "from_pretrained"):
                raise InputError(f"transformers has no Auto class {source.model_class!r}")
            # safetensors only: weights are data, never a pickle.
            model = auto.from_pretrained(source.path, local_files_only=True, use_safetensors=True)
        elif source.kind == "torchscript":
            from speedster_dist.fleet._scripted import ScriptedModel

            model = ScriptedModel(torch.jit.load(str(source.path), map_location="cpu"))
        else:
            from speedster_dist.backends.torch_compile import check_export_archive

            check_export_archive(source.path)  # nothing in it may be unpickled
            model = torch.export.load(str(source.path)).module()
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"cannot load {source.kind} model {source.path}: {exc}") from exc
    return model.eval() if hasattr(model, "eval") else model


def detect_inputs(
    path: str | Path,
    model: ModelSource,
    tokenizer: str | Path | None = None,
    max_length: int | None = None,
    batch_size: int = 1,
) -> InputSource:
    """Check the inputs file and find the tokenizer texts need (the model's folder)."""
    where = Path(path)
    if not where.is_file():
        raise InputError(f"inputs file {where} does not exist")
    suffix = where.suffix.lower()
    if suffix not in (*TEXT_SUFFIXES, ".npz"):
        raise InputError(
            f"inputs must be .json, .jsonl, .txt (texts) or .npz (arrays), got {where}"
        )
    if batch_size < 1:
        raise InputError(f"--batch-size must be at least 1, got {batch_size}")
    folder = Path(tokenizer) if tokenizer else None
    if suffix in TEXT_SUFFIXES and folder is None:
        if model.kind != "hf":
            raise InputError("texts need a tokenizer: pass --tokenizer FOLDER")
        folder = model.path
    if folder is not None and not folder.is_dir():
        raise InputError(f"tokenizer folder {folder} does not exist")
    if folder is not None and suffix in TEXT_SUFFIXES:
        _require_vocabulary(folder, given=tokenizer is not None)
    return InputSource(where, folder, max_length, batch_size)


def _require_vocabulary(folder: Path, given: bool) -> None:
    if any((folder / name).is_file() for name in VOCABULARY_FILES):
        return
    what = "the --tokenizer folder" if given else "the model folder"
    raise InputError(
        f"{what} {folder} has no tokenizer files ({', '.join(VOCABULARY_FILES[:3])}...): "
        "its texts would all become unknown tokens. Pass --tokenizer FOLDER (a folder "
        "written by tokenizer.save_pretrained), copy the tokenizer's files into "
        f"{folder}, or give token ids in an .npz file instead of texts"
    )


def sample_count(source: InputSource) -> int:
    """How many samples (batches of ``batch_size``) the inputs file gives."""
    if source.is_text:
        texts = len(_texts(source.path))
        return -(-texts // source.batch_size)  # the last batch may be short
    import numpy as np

    try:
        with np.load(source.path, allow_pickle=False) as data:
            rows = min((len(data[n]) if data[n].ndim else 0 for n in data.files), default=0)
    except Exception as exc:
        raise InputError(f"cannot read arrays from {source.path}: {exc}") from exc
    return rows // source.batch_size


def check_sample_count(source: InputSource) -> int:
    """Refuse inputs that give fewer than MIN_SAMPLES samples (the CLI's rule); returns
    the count."""
    count = sample_count(source)
    problem = few_samples(count)
    if problem is not None:
        batches = f" in batches of {source.batch_size}" if source.batch_size > 1 else ""
        raise InputError(
            f"{source.path} gives {problem}. Give at least {MIN_SAMPLES} samples{batches} "
            "(more texts or rows"
            + (", or a smaller --batch-size)" if source.batch_size > 1 else ")")
        )
    return count


def _texts(path: Path) -> list[str]:
    raw = path.read_text(encoding="utf-8")
    suffix = path.suffix.lower()
    try:
        if suffix == ".txt":
            items: list[Any] = [line for line in raw.splitlines() if line.strip()]
        elif suffix == ".jsonl":
            items = [json.loads(line) for line in raw.splitlines() if line.strip()]
        else:
            items = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(items, list) or not items:
        raise InputError(f"{path} holds no text: expected a non-empty list of strings")
    texts = [item.get("text") if isinstance(item, dict) else item for item in items]
    bad = next((i for i, t in enumerate(texts) if not isinstance(t, str)), None)
    if bad is not None:
        raise InputError(f"{path}: item {bad} is not a text (a string, or an object with 'text')")
    blank = next((i for i, t in enumerate(texts) if not str(t).strip()), None)
    if blank is not None:  # tokenized to special tokens only: nothing like real input
        raise InputError(
            f"{path}: item {blank} is an empty text (or only spaces): give texts like the "
            "ones the model will serve"
        )
    return [str(t) for t in texts]


def _npz_samples(path: Path, batch_size: int) -> list[Any]:
    """Every array holds the samples along its first axis, cut in batches of ``batch_size``.

    Named arrays (``input_ids``, ``attention_mask``...) are passed by name; an array named
    ``labels`` gives each sample its label, and the inputs are then passed positionally in
    the file's order (Speedster's ``((inputs...), label)`` form).
    """
    import numpy as np
    import torch

    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except Exception as exc:
        raise InputError(f"cannot read arrays from {path}: {exc}") from exc
    labels = arrays.pop("labels", None)
    if not arrays:
        raise InputError(f"{path} holds no input array")
    rows = {len(a) if a.ndim else 0 for a in arrays.values()}
    if len(rows) != 1 or 0 in rows or (labels is not None and len(labels) not in rows):
        raise InputError(f"{path}: every array needs the same number of rows (samples) on axis 0")
    count = rows.pop() // batch_size
    if count == 0:
        raise InputError(f"{path} has fewer rows than one batch of {batch_size}")
    positional = labels is not None or all(n.startswith("arr_") for n in arrays)
    samples: list[Any] = []
    for i in range(count):
        cut = slice(i * batch_size, (i + 1) * batch_size)
        tensors = {n: torch.from_numpy(np.ascontiguousarray(a[cut])) for n, a in arrays.items()}
        if labels is not None:
            samples.append((tuple(tensors.values()), torch.from_numpy(labels[cut])))
        else:
            samples.append(tuple(tensors.values()) if positional else tensors)
    return samples


def read_inputs(source: InputSource) -> tuple[list[Any], Any, dict[str, Any] | None]:
    """``(input_data, tokenizer, tokenizer_args)`` for ``optimize_model``."""
    if not source.is_text:
        return _npz_samples(source.path, source.batch_size), None, None
    from transformers import AutoTokenizer

    assert source.tokenizer is not None
    try:
        tokenizer = AutoTokenizer.from_pretrained(source.tokenizer, local_files_only=True)
    except Exception as exc:
        raise InputError(f"cannot load a tokenizer from {source.tokenizer}: {exc}") from exc
    args = None
    if source.max_length:
        args = {"padding": "max_length", "truncation": True, "max_length": source.max_length}
    return _texts(source.path), tokenizer, args
