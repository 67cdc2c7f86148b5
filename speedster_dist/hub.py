"""Models by name: a Hugging Face model id (``org/name``) or a local folder, as a model.

An id is resolved from the local Hugging Face cache (``HF_HUB_CACHE``, else
``$HF_HOME/hub``, read when called): offline by default, as with ``HF_HUB_OFFLINE=1`` and
``local_files_only=True``; only ``allow_download=True`` (CLI: ``--allow-download``) fetches
it from the Hub, and then only its configuration, safetensors weights and tokenizer files.
Weights load from safetensors only (``use_safetensors=True``): a model whose weights are
pickles (``pytorch_model.bin``) is refused, since unpickling runs code. Code shipped with a
model (``auto_map`` in its configuration, custom sentence-transformers modules) runs only
with ``trust_remote_code=True``. A folder with ``modules.json`` loads as a
``SentenceTransformer`` (its learner then has ``encode``), any other as ``AutoModel``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from speedster_dist.errors import InputError

__all__ = ["check_model_folder", "hub_cache", "load_folder", "model_id", "open_model", "resolve"]

_PICKLES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
# What a download fetches: configuration, safetensors weights, tokenizer and
# sentence-transformers module files; code only for trust_remote_code.
_DATA_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model"]
_ST_MODULES = "sentence_transformers."


def hub_cache() -> Path:
    """The Hugging Face cache folder, from the environment as it is now (huggingface_hub
    reads it once, at import)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def model_id(model: Any) -> str | None:
    """``model`` when it is a string naming a Hugging Face model id and no local path."""
    if not isinstance(model, str) or os.path.exists(model):
        return None
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(model)
    except HFValidationError:
        return None
    return model


def _offline() -> bool:
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.strip().lower() in ("1", "on", "yes", "true")


def resolve(
    name: str | Path,
    allow_download: bool = False,
    revision: str | None = None,
    trust_remote_code: bool = False,
) -> Path:
    """The folder of the model ``name``: a local folder as it is, else the snapshot of the
    Hugging Face id ``name`` in the local cache (downloaded only with ``allow_download``,
    its code files only with ``trust_remote_code``). :class:`InputError` says how to get it
    otherwise."""
    if Path(name).is_dir():
        return Path(name)
    repo = model_id(str(name))
    if repo is None:
        raise InputError(
            f"model {str(name)!r} is neither a local folder nor a Hugging Face model id "
            "('org/name'): give a folder saved with save_pretrained, an .onnx file, or the "
            "id of a model in the local Hugging Face cache"
        )
    from huggingface_hub import snapshot_download
    from huggingface_hub.utils import LocalEntryNotFoundError  # (0.24 and 1.x+ alike)

    cache = hub_cache()
    local_only = not allow_download or _offline()
    try:
        folder = snapshot_download(
            repo,
            revision=revision,
            cache_dir=cache,
            local_files_only=local_only,
            allow_patterns=_DATA_PATTERNS + (["*.py"] if trust_remote_code else []),
        )
    except LocalEntryNotFoundError as exc:
        raise InputError(_not_cached(repo, cache, allow_download)) from exc
    except Exception as exc:  # no network, no such repository, a gated one...
        raise InputError(f"cannot download {repo} from the Hugging Face Hub: {exc}") from exc
    return Path(folder)


def _not_cached(repo: str, cache: Path, allow_download: bool) -> str:
    if allow_download:  # asked for, but the environment forbids it
        return (
            f"{repo} is not in the local Hugging Face cache ({cache}) and HF_HUB_OFFLINE (or "
            "TRANSFORMERS_OFFLINE) forbids downloading it: unset it, or download it first"
        )
    return (
        f"{str(repo)!r} is not a local folder, and no model {repo} is in the local Hugging "
        f"Face cache ({cache}; set HF_HUB_CACHE or HF_HOME to use another). Download it first "
        f"(`hf download {repo}`, or huggingface_hub.snapshot_download), or let speedster-dist "
        "fetch its safetensors weights: allow_download=True (CLI: --allow-download)"
    )


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{path} cannot be read as JSON: {exc}") from exc


def check_model_folder(folder: Path, trust_remote_code: bool = False) -> None:
    """Refuse (:class:`InputError`) a model folder that would unpickle weights or run code
    from the folder without ``trust_remote_code``."""
    if not (folder / "config.json").is_file():
        raise InputError(f"{folder} has no config.json: it is not a Hugging Face model folder")
    names = [p.name for p in folder.iterdir() if p.is_file()]
    if not any(n.endswith(".safetensors") for n in names):
        pickles = sorted(n for n in names if n.endswith(_PICKLES))
        held = f"only pickled weights ({', '.join(pickles)})" if pickles else "no weights"
        raise InputError(
            f"{folder} holds {held}: weights are loaded from safetensors only "
            "(use_safetensors=True), since unpickling a file can run code. Convert them on a "
            "machine you trust (load the model there and save_pretrained it, which writes "
            "model.safetensors), or use a revision of the model that has model.safetensors"
        )
    code = _custom_code(folder)
    if code and not trust_remote_code:
        raise InputError(
            f"{folder} ships its own code ({code}): loading it would run that code. Pass "
            "trust_remote_code=True only if you trust who wrote it"
        )


def _custom_code(folder: Path) -> str | None:
    """What in ``folder`` names code of its own (None when nothing does)."""
    config = _read_json(folder / "config.json")
    if isinstance(config, dict) and config.get("auto_map"):
        return f"auto_map in config.json: {sorted(config['auto_map'])}"
    if (folder / "modules.json").is_file():
        modules = _read_json(folder / "modules.json")
        kinds = (
            [m.get("type") for m in modules if isinstance(m, dict)]
            if isinstance(modules, list)
            else []
        )
        custom = [k for k in kinds if not (isinstance(k, str) and k.startswith(_ST_MODULES))]
        if custom or not kinds:
            return f"modules.json names modules outside sentence-transformers: {custom}"
    return None


def load_folder(
    folder: Path, trust_remote_code: bool = False, model_class: str = "AutoModel"
) -> Any:
    """The model in ``folder`` (checked first): a ``SentenceTransformer`` when the folder
    has ``modules.json``, else a transformers ``model_class`` (an Auto class), in eval mode."""
    check_model_folder(folder, trust_remote_code)
    sentence = (folder / "modules.json").is_file()
    try:
        if sentence:
            model = _sentence_transformer(folder, trust_remote_code)
        else:
            import transformers

            model = getattr(transformers, model_class).from_pretrained(
                folder,
                local_files_only=True,
                use_safetensors=True,
                trust_remote_code=trust_remote_code,
            )
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"cannot load the model in {folder}: {exc}") from exc
    return model.eval()


def _sentence_transformer(folder: Path, trust_remote_code: bool) -> Any:
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise InputError(
            f"{folder} is a sentence-transformers model (it has modules.json): install "
            "sentence-transformers (the [minilm] extra brings it) to optimize it"
        ) from exc
    return SentenceTransformer(
        str(folder),
        device="cpu",
        local_files_only=True,
        trust_remote_code=trust_remote_code,
        model_kwargs={"use_safetensors": True},
    )


def open_model(model: Any, allow_download: bool = False, trust_remote_code: bool = False) -> Any:
    """``optimize_model``'s ``model`` as an object: a folder or a Hugging Face id loaded
    (see the module's docstring); an ``.onnx`` path, and any model object, as they are."""
    if not isinstance(model, str | Path):
        return model
    path = Path(model)
    if path.suffix.lower() == ".onnx" or path.is_file():
        return model  # prepare reads ONNX files (and says what else a file may be)
    folder = resolve(model, allow_download, trust_remote_code=trust_remote_code)
    loaded = load_folder(folder, trust_remote_code)
    repo = model_id(str(model))
    if repo is not None:  # named after its id, not after the snapshot's commit hash
        # (what naming.describe_model reads: the transformers model's name and config)
        inner = loaded[0].auto_model if (folder / "modules.json").is_file() else loaded
        inner.config._name_or_path = repo
        inner.name_or_path = repo
    return loaded
