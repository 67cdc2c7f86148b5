"""The sentence-embedding part of a saved learner made from a sentence-transformer.

A ``SentenceTransformer`` is a transformer, then modules that turn its token embeddings into
one vector per text (``Pooling``, and ``Normalize`` when the model has one). The learner's
compiled model is the transformer; what comes after it is saved here as data: the pooling
module's configuration, whether the embeddings are normalized, and the tokenizer's files
(vocabularies and JSON, never a pickle, never code), each with its SHA-256 like every file of
the learner. The manifest records it as ``encoder``::

    "encoder": {"folder": "_encoder", "files": {"tokenizer.json": "<sha256>", ...},
                "pooling": {"embedding_dimension": 384, "pooling_mode": "mean", ...},
                "normalize": true}
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from speedster_dist.artifacts._files import VerifiedFiles
from speedster_dist.errors import ArtifactError

__all__ = [
    "ENCODER_FOLDER",
    "POOLING_MODES",
    "TOKENIZER_FILES",
    "SentenceEncoding",
    "check_pooling",
    "encoding_from_json",
    "encoding_json",
    "pooling_modes",
]

ENCODER_FOLDER = "_encoder"
# What a tokenizer's save_pretrained writes that a tokenizer needs: data only. A name not
# listed here (a pickle, a Python file) is neither saved nor loaded.
TOKENIZER_FILES = frozenset(
    {
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "added_tokens.json",
        "vocab.txt",
        "vocab.json",
        "merges.txt",
        "spiece.model",
        "sentencepiece.bpe.model",
        "tokenizer.model",
    }
)
# The pooling modes of sentence-transformers' Pooling module, and the flags that named them
# before sentence-transformers 6 (its configuration then held one flag per mode).
POOLING_MODES = ("cls", "max", "mean", "mean_sqrt_len_tokens", "weightedmean", "lasttoken")
_MODE_FLAGS = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}
_POOLING_KEYS: dict[str, type | tuple[type, ...]] = {
    "embedding_dimension": int,
    "word_embedding_dimension": int,  # its name before sentence-transformers 6
    "pooling_mode": (str, list),
    "include_prompt": bool,
    **dict.fromkeys(_MODE_FLAGS, bool),
}


@dataclass(frozen=True)
class SentenceEncoding:
    """How token embeddings become sentence embeddings, and the tokenizer's files.

    ``pooling`` is the configuration of the model's ``Pooling`` module (``get_config_dict()``),
    ``normalize`` whether a ``Normalize`` module follows it; ``files`` maps each tokenizer
    file name to its bytes (read, and checked against its checksum, when used).
    """

    pooling: Mapping[str, Any]
    normalize: bool
    files: Mapping[str, bytes] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        check_pooling(self.pooling, "the pooling configuration")
        unknown = sorted(set(self.files) - TOKENIZER_FILES)
        if unknown:
            raise ValueError(f"not tokenizer data files: {unknown}")


def encoding_json(
    encoding: SentenceEncoding, folder: str, checksums: Mapping[str, str]
) -> dict[str, Any]:
    """The manifest record of ``encoding`` whose files were written to ``folder``."""
    pooling = {
        key: list(value) if isinstance(value, tuple) else value
        for key, value in encoding.pooling.items()
    }
    return {
        "folder": folder,
        "files": dict(checksums),
        "pooling": pooling,
        "normalize": encoding.normalize,
    }


def encoding_from_json(root: Path, raw: Mapping[str, Any]) -> SentenceEncoding:
    """The encoding a (validated) manifest records; its files are read when used."""
    files = VerifiedFiles(root, str(raw["folder"]), raw["files"])
    return SentenceEncoding(dict(raw["pooling"]), bool(raw["normalize"]), files)


def pooling_modes(pooling: Mapping[str, Any]) -> list[str]:
    """The pooling modes a Pooling configuration names (either form)."""
    mode = pooling.get("pooling_mode")
    if mode is not None:
        return [mode] if isinstance(mode, str) else list(mode)
    return [name for flag, name in _MODE_FLAGS.items() if pooling.get(flag)] or ["mean"]


def check_pooling(pooling: Any, where: str) -> None:
    """Raise :class:`ArtifactError` unless ``pooling`` is a Pooling configuration we read."""
    if not isinstance(pooling, Mapping):
        raise ArtifactError(f"{where}: expected an object")
    for key, value in pooling.items():
        kind = _POOLING_KEYS.get(key)
        if kind is None:
            raise ArtifactError(f"{where}: unknown pooling setting {key!r}")
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ArtifactError(f"{where}.{key}: unexpected {type(value).__name__}")
    modes = pooling_modes(pooling)
    if not modes or any(m not in POOLING_MODES for m in modes):
        raise ArtifactError(f"{where}.pooling_mode: {modes!r} are not among {POOLING_MODES}")
