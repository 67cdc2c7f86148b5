"""Exporting a torch model to ONNX, cached per node by model fingerprint and shapes.

``onnx`` is imported inside the functions so that importing this module never needs it."""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import logging
import re
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from speedster_dist.backends._onnx.files import EXTERNAL_DATA_BYTES, external_files
from speedster_dist.backends._protocol import SourceModel, UnsupportedCandidate
from speedster_dist.cache import cache_dir, find_entry, publish_entry

__all__ = ["MODEL_FILE", "export_onnx", "short_error"]

logger = logging.getLogger(__name__)

MODEL_FILE = "model.onnx"
_CACHE_KIND = "onnx"  # the cache folder of exports (see speedster_dist.cache)
_ERROR_CHARS = 300


def export_onnx(model: SourceModel, workdir: Path, opset: int = 17) -> Path:
    """The model as an ONNX file: the user's file, a cached export, or a fresh one.

    Exports are cached per node as entries of ``cache_root()/onnx`` (:mod:`speedster_dist.cache`)
    keyed ``<fingerprint>-<io>-opset<N>``, because several trials on one node need the same
    file (``<io>`` hashes the example inputs' static shapes and dtypes, which the weights
    fingerprint does not cover but an export bakes in). An entry is reused only when it is
    this user's, writable by nobody else and matches the checksums recorded when it was
    written; else a fresh one is exported beside it. Entries are written whole and renamed
    into place, so concurrent processes never see half a file (two may export at once; one
    wins). Without a fingerprint, or with an unusable cache, the export goes to ``workdir``.
    Raises :class:`UnsupportedCandidate` when no exporter can handle the model.
    """
    if model.onnx_path is not None:
        return Path(model.onnx_path)
    if model.module is None:
        raise UnsupportedCandidate("the source model has neither a torch module nor an ONNX file")
    if not model.fingerprint:
        target = Path(workdir) / "export" / MODEL_FILE
        _export_into(model, target, opset)
        return target
    key = f"{model.fingerprint}-{_io_key(model)}-opset{opset}"

    def write(files: Path) -> None:
        _export_into(model, files / MODEL_FILE, opset)

    try:
        folder = cache_dir(_CACHE_KIND)
        return (find_entry(folder, key) or publish_entry(folder, key, write)) / MODEL_FILE
    except OSError as exc:  # read-only home, full disk, a cache others may write...
        logger.warning("ONNX cache unusable (%s); exporting into the workdir", exc)
        return export_onnx(_without_fingerprint(model), workdir, opset)


def _io_key(model: SourceModel) -> str:
    """Hash of what an export fixes besides the weights: names, dtypes, static dims."""
    shapes = [
        (
            str(t.dtype),
            [
                -1 if axis in model.dynamic_axes.get(name, {}) else size
                for axis, size in enumerate(t.shape)
            ],
        )
        for name, t in zip(model.input_names, model.example_inputs, strict=True)
    ]
    text = repr((model.input_names, model.output_names, shapes, sorted(model.dynamic_axes)))
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def _without_fingerprint(model: SourceModel) -> SourceModel:
    from dataclasses import replace

    return replace(model, fingerprint="")


def _export_into(model: SourceModel, path: Path, opset: int) -> None:
    """Export ``model.module`` to ``path``: legacy exporter first, then torch.export."""
    module = model.module
    assert module is not None  # checked by export_onnx
    path.parent.mkdir(parents=True, exist_ok=True)
    large = _parameter_bytes(module) > EXTERNAL_DATA_BYTES
    errors: list[str] = []
    with (
        _eager_attention(module),
        _training_flags_kept(module),
        torch.no_grad(),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore")  # tracer warnings are expected and not actionable
        for name, exporter in (("legacy", _export_legacy), ("dynamo", _export_dynamo)):
            try:
                exporter(module, model, path, opset, large)
            except Exception as exc:
                errors.append(f"{name} exporter: {short_error(exc)}")
                _clear_folder(path.parent)
                continue
            _store_large_externally(path, large)
            return
    raise UnsupportedCandidate("ONNX export failed; " + " | ".join(errors))


def _export(
    module: torch.nn.Module, model: SourceModel, path: Path, opset: int, **exporter: Any
) -> None:
    """``torch.onnx.export`` of ``module`` on the model's example, with its names, quietly;
    the ``exporter``'s own arguments on top."""
    torch.onnx.export(
        module,
        tuple(model.example_inputs),
        str(path),
        input_names=list(model.input_names),
        output_names=list(model.output_names),
        opset_version=opset,
        verbose=False,
        **exporter,
    )


def _export_legacy(
    module: torch.nn.Module, model: SourceModel, path: Path, opset: int, large: bool
) -> None:
    # The TorchScript-based exporter: ~3x faster than dynamo here, and its graphs are the
    # ones the ORT transformer optimizer knows how to fuse.
    axes = model.dynamic_axes or None
    _export(module, model, path, opset, dynamo=False, dynamic_axes=axes, do_constant_folding=True)


def _export_dynamo(
    module: torch.nn.Module, model: SourceModel, path: Path, opset: int, large: bool
) -> None:
    shapes = _dynamic_shapes(module, model)
    _export(module, model, path, opset, dynamo=True, dynamic_shapes=shapes, external_data=large)


def _dynamic_shapes(module: torch.nn.Module, model: SourceModel) -> tuple[Any, ...] | None:
    """torch.export's ``dynamic_shapes`` for the positional inputs, from ``dynamic_axes``."""
    if not model.dynamic_axes:
        return None
    # DYNAMIC (not named Dims): inputs whose axes are equal at trace time (input_ids and
    # attention_mask) would otherwise have to be declared equal by hand.
    specs = tuple(
        {axis: torch.export.Dim.DYNAMIC for axis in model.dynamic_axes.get(name, {})} or None
        for name in model.input_names
    )
    params = inspect.signature(module.forward).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params):
        return (specs,)  # forward(*tensors) is one argument to torch.export
    return specs


@contextlib.contextmanager
def _eager_attention(module: torch.nn.Module) -> Iterator[None]:
    """Export Hugging Face models with eager attention, restoring the user's setting after.

    Eager attention exports as MatMul/Softmax patterns that the ORT transformer optimizer
    fuses (Attention, SkipLayerNorm...); sdpa does not (MiniLM: 25 ms fused vs 30 ms).
    """
    saved = [(config, config._attn_implementation_internal) for config in _hf_configs(module)]
    try:
        if saved:
            _switch_to_eager(module)
        yield
    finally:
        for config, value in saved:
            config._attn_implementation_internal = value


@contextlib.contextmanager
def _training_flags_kept(module: torch.nn.Module) -> Iterator[None]:
    """Restore every submodule's train/eval flag after export.

    The legacy exporter puts the module in eval mode and then calls ``train(mode)`` on the
    root with the root's old flag: an eval model under a root left in training mode (a
    wrapper built after ``model.eval()``) would come back with dropout switched on.
    """
    flags = [(sub, sub.training) for sub in module.modules()]
    try:
        yield
    finally:
        for sub, training in flags:
            sub.training = training


def _hf_configs(module: torch.nn.Module) -> list[Any]:
    """Every Hugging Face config (sub-configs included) reachable from ``module``."""
    found: dict[int, Any] = {}
    pending = [getattr(sub, "config", None) for sub in module.modules()]
    while pending:
        config = pending.pop()
        if config is None or id(config) in found:
            continue
        if hasattr(config, "_attn_implementation_internal"):
            found[id(config)] = config
            pending.extend(getattr(config, key, None) for key in getattr(config, "sub_configs", {}))
    return list(found.values())


def _switch_to_eager(module: torch.nn.Module) -> None:
    for sub in module.modules():
        config = getattr(sub, "config", None)
        if getattr(config, "_attn_implementation", "eager") == "eager":
            continue
        try:
            setter = getattr(sub, "set_attn_implementation", None)
            if callable(setter):
                setter("eager")
            else:  # older transformers: the config property dispatches to sub-configs
                config._attn_implementation = "eager"  # type: ignore[union-attr]
        except Exception as exc:  # exporting with the model's own attention still works
            logger.info("could not switch %s to eager attention: %s", type(sub).__name__, exc)


def _parameter_bytes(module: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in module.state_dict().values())


def _store_large_externally(path: Path, large: bool) -> None:
    """Give a large export one ``model.onnx.data`` file next to it (or none when small).

    The legacy exporter writes one file per tensor for models over 2 GiB; one data file
    is what :func:`copy_onnx` and every consumer expect.
    """
    if not (large or bool(external_files(path))):
        return
    import onnx

    proto = onnx.load(str(path))  # pulls every external tensor into memory
    _clear_folder(path.parent)
    onnx.save_model(
        proto,
        str(path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=path.name + ".data",
    )


def _clear_folder(folder: Path) -> None:
    for entry in folder.iterdir():
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def short_error(exc: BaseException) -> str:
    """The innermost cause of ``exc`` in one line (exporter errors are pages long)."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip()
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    message = f"{type(exc).__name__}: {first}"
    return message if len(message) <= _ERROR_CHARS else message[: _ERROR_CHARS - 3] + "..."
