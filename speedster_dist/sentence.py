"""Sentence-transformers: a ``SentenceTransformer`` as the model, ``encode`` on its learner.

The optimized part is the transformer, as the model's ``Pooling`` module reads it: token ids
in, token embeddings out (:class:`TokenEmbeddings`). Pooling and normalization run after the
compiled transformer, in :meth:`SentenceEncoder.encode`, by sentence-transformers' own
``Pooling`` and ``Normalize`` modules built from the model's configuration (saved with the
learner as :class:`~speedster_dist.artifacts.SentenceEncoding`), so that ``learner.encode``
returns what ``SentenceTransformer.encode`` returns. The accuracy guard compares the token
embeddings that pooling reads (``cosine`` by default, padding left out), which bounds the
pooled sentence embeddings too.

Supported: a text model made of a ``Transformer``, a ``Pooling`` and optionally a
``Normalize`` module, with no default prompt and no ``truncate_dim``; anything else is
refused before any trial, saying what to do instead.
"""

from __future__ import annotations

import shutil
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from speedster_dist.artifacts import TOKENIZER_FILES, SentenceEncoding
from speedster_dist.cache import scratch_dir
from speedster_dist.errors import ArtifactError, InputError

__all__ = [
    "SentenceEncoder",
    "TokenEmbeddings",
    "is_sentence_transformer",
    "split_sentence_transformer",
]

# What sentence-transformers' Transformer module calls and reads for a text model.
_TEXT_ONLY = {"text": {"method": "forward", "method_output_name": "last_hidden_state"}}
_TOKEN_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
_VOCABULARIES = ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model", "tokenizer.model")
_UNSUPPORTED_HELP = (
    "speedster-dist optimizes sentence-transformers made of a Transformer, a Pooling and "
    "optionally a Normalize module. Optimize its transformer instead (model[0].auto_model, "
    "a Hugging Face model) and apply the other modules to its outputs yourself"
)


def is_sentence_transformer(model: Any) -> bool:
    """Whether ``model`` is a ``SentenceTransformer`` (or a subclass), without importing
    sentence-transformers for any other model."""
    return any(
        cls.__name__ == "SentenceTransformer" and cls.__module__.startswith("sentence_transformers")
        for cls in type(model).__mro__
    )


class TokenEmbeddings(torch.nn.Module):
    """A sentence-transformer's transformer as its pooling reads it: the Hugging Face model
    called with the tokenizer's inputs, returning ``last_hidden_state`` (the token
    embeddings). ``config`` is the model's, so that its token inputs take any batch and
    length, as for any Hugging Face text model."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    @property
    def config(self) -> Any:
        return self.model.config

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:  # models without token types never get one
            inputs["token_type_ids"] = token_type_ids
        return self.model(**inputs, return_dict=True).last_hidden_state


def split_sentence_transformer(model: Any) -> tuple[TokenEmbeddings, SentenceEncoder]:
    """The part to optimize and what runs after it; :class:`InputError` for a
    sentence-transformer this does not support (the message says what to do instead)."""
    modules = list(model)
    names = [type(module).__name__ for module in modules]
    if names[:2] != ["Transformer", "Pooling"] or names[2:] not in ([], ["Normalize"]):
        raise InputError(f"this SentenceTransformer's modules are {names}. {_UNSUPPORTED_HELP}")
    transformer, pooling = modules[0], modules[1]
    problem = _unsupported(model, transformer, modules[2:])
    if problem:
        raise InputError(f"this SentenceTransformer {problem}. {_UNSUPPORTED_HELP}")
    encoding = SentenceEncoding(
        dict(pooling.get_config_dict()), len(modules) == 3, _tokenizer_files(transformer.tokenizer)
    )
    return TokenEmbeddings(transformer.auto_model).eval(), SentenceEncoder(
        encoding, transformer.tokenizer
    )


def _unsupported(model: Any, transformer: Any, rest: Sequence[Any]) -> str | None:
    modality = getattr(transformer, "modality_config", _TEXT_ONLY)
    if modality != _TEXT_ONLY:
        return f"is not a plain text model (its modalities: {modality})"
    if getattr(transformer, "tokenizer", None) is None:
        return "has no tokenizer"
    if getattr(model, "default_prompt_name", None):
        return f"prepends the prompt {model.default_prompt_name!r} to every text"
    if getattr(model, "truncate_dim", None):
        return f"truncates its embeddings to {model.truncate_dim} dimensions"
    if rest and getattr(rest[0], "module_input_name", "sentence_embedding") != (
        "sentence_embedding"
    ):
        return "normalizes its token embeddings, not its sentence embedding"
    return None


def _tokenizer_files(tokenizer: Any) -> dict[str, bytes]:
    """The data files ``tokenizer.save_pretrained`` writes (no pickle, no code)."""
    with tempfile.TemporaryDirectory(prefix="speedster-tokenizer-") as folder:
        tokenizer.save_pretrained(folder)
        files = {
            path.name: path.read_bytes()
            for path in sorted(Path(folder).iterdir())
            if path.name in TOKENIZER_FILES and path.is_file()
        }
    if not any(name in files for name in _VOCABULARIES):
        raise InputError(
            f"this SentenceTransformer's tokenizer ({type(tokenizer).__name__}) saves no "
            f"vocabulary file ({', '.join(_VOCABULARIES)}): its learner could not tokenize"
        )
    return files


def _load_tokenizer(files: Any) -> Any:
    """A tokenizer from its files (each read and checked against its checksum), loaded
    from a private copy by transformers, never running code from them."""
    from transformers import AutoTokenizer

    folder = scratch_dir("tokenizer-")
    try:
        for name in files:
            (folder / name).write_bytes(files[name])
        return AutoTokenizer.from_pretrained(folder, local_files_only=True, trust_remote_code=False)
    except ArtifactError:
        raise
    except Exception as exc:  # a damaged or changed file: the artifact's fault
        raise ArtifactError(f"the learner's tokenizer cannot be loaded: {exc}") from exc
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _pooling_modules(encoding: SentenceEncoding) -> tuple[Any, Any]:
    """sentence-transformers' Pooling (and Normalize) modules, as the model had them."""
    try:
        from sentence_transformers.sentence_transformer.modules import Normalize, Pooling
    except ImportError:  # sentence-transformers before 6
        from sentence_transformers.models import Normalize, Pooling  # type: ignore[no-redef]
    return Pooling(**encoding.pooling), Normalize() if encoding.normalize else None


class SentenceEncoder:
    """Texts in, sentence embeddings out, around a learner's compiled transformer.

    ``tokenizer`` is the live tokenizer of a learner made in this process; a loaded learner
    builds it from ``encoding.files`` at its first :meth:`encode`.
    """

    def __init__(self, encoding: SentenceEncoding, tokenizer: Any = None) -> None:
        self.encoding = encoding
        self._tokenizer = tokenizer
        self._modules: tuple[Any, Any] | None = None
        self._warned = False

    @property
    def tokenizer(self) -> Any:
        return self.load_tokenizer()

    def load_tokenizer(self) -> Any:
        """The tokenizer, built from its files (each checked against its checksum) the first
        time; :class:`ArtifactError` when they are damaged or changed."""
        if self._tokenizer is None:
            self._tokenizer = _load_tokenizer(self.encoding.files)
        return self._tokenizer

    def pool(self, token_embeddings: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The sentence embeddings of a batch, as the model's Pooling and Normalize make them."""
        if self._modules is None:
            self._modules = _pooling_modules(self.encoding)
        pooling, normalize = self._modules
        features = {"token_embeddings": token_embeddings, "attention_mask": attention_mask}
        with torch.inference_mode():
            features = pooling(features)
            if normalize is not None:
                features = normalize(features)
        return features["sentence_embedding"]

    def encode(
        self,
        runner: Any,
        sentences: str | Sequence[str],
        batch_size: int = 32,
        normalize_embeddings: bool = False,
        convert_to_numpy: bool = True,
        convert_to_tensor: bool = False,
    ) -> Any:
        """``SentenceTransformer.encode`` on ``runner`` (a learner's entry for this machine:
        called with the tokenizer's inputs by name, it returns the token embeddings).

        A winner built for fixed shapes (its ``fixed_shapes``, or the learner's input
        shapes) gets texts padded to its length, in batches of its size.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        single = isinstance(sentences, str)
        texts: list[str] = [sentences] if isinstance(sentences, str) else list(sentences)
        bad = next((i for i, text in enumerate(texts) if not isinstance(text, str)), None)
        if bad is not None:
            raise TypeError(f"encode takes texts; item {bad} is a {type(texts[bad]).__name__}")
        rows, length = _fixed_batch(runner)
        step = rows or batch_size
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))  # as ST: less padding
        vectors: list[torch.Tensor] = [torch.empty(0)] * len(texts)
        for start in range(0, len(order), step):
            chunk = order[start : start + step]
            batch = [texts[i] for i in chunk]
            batch += [batch[-1]] * ((rows or len(batch)) - len(batch))  # a fixed batch size
            pooled = self._embed(runner, batch, length)
            for index, vector in zip(chunk, pooled, strict=False):
                vectors[index] = vector
        embeddings = torch.stack(vectors) if vectors else torch.empty(0)
        if normalize_embeddings and len(vectors):
            embeddings = torch.nn.functional.normalize(embeddings, p=2, dim=-1)
        return _converted(embeddings, single, convert_to_numpy, convert_to_tensor)

    def _embed(self, runner: Any, batch: list[str], length: int | None) -> torch.Tensor:
        features = self._tokenize(batch, length)
        names = runner.io.input_names
        missing = [name for name in names if name not in features]
        if missing:
            raise ValueError(f"the tokenizer gives no {missing}; the learner takes {list(names)}")
        with torch.inference_mode():
            tokens = runner(**{name: features[name] for name in names})
        if isinstance(tokens, tuple | list):
            tokens = tokens[0]
        mask = features.get("attention_mask")
        if mask is None:
            mask = torch.ones(tokens.shape[:2], dtype=torch.long)
        return self.pool(tokens.detach().float().cpu(), mask)

    def _tokenize(self, batch: list[str], length: int | None) -> dict[str, torch.Tensor]:
        """The tokenizer's inputs as sentence-transformers makes them (longest padding,
        truncated at the tokenizer's maximum), or padded to a fixed winner's length."""
        tokenizer = self.tokenizer
        if length is None:
            encoded = tokenizer(
                batch, padding=True, truncation="longest_first", return_tensors="pt"
            )
            return dict(encoded)
        longest = max(len(ids) for ids in tokenizer(batch, truncation="longest_first")["input_ids"])
        if longest > length and not self._warned:
            self._warned = True
            warnings.warn(
                f"this learner's winner was built for {length} tokens: longer texts are "
                f"truncated to {length} (SentenceTransformer.encode keeps up to "
                f"{tokenizer.model_max_length}). Optimize with samples of several lengths "
                "to get a winner that takes any length",
                UserWarning,
                stacklevel=4,
            )
        encoded = tokenizer(
            batch,
            padding="max_length",
            truncation="longest_first",
            max_length=length,
            return_tensors="pt",
        )
        return dict(encoded)


def _fixed_batch(runner: Any) -> tuple[int | None, int | None]:
    """The batch size and length a winner takes, where it takes only one (else None)."""
    fixed = getattr(runner.compiled, "fixed_shapes", None) or {}
    names = list(runner.io.input_names)
    shape: Sequence[int | None] | None = fixed.get("input_ids") or next(iter(fixed.values()), None)
    if shape is None and runner.io.input_shapes is not None and "input_ids" in names:
        shape = runner.io.input_shapes[names.index("input_ids")]
    if not shape or len(shape) != 2:
        return None, None
    return shape[0], shape[1]


def _converted(embeddings: torch.Tensor, single: bool, to_numpy: bool, to_tensor: bool) -> Any:
    """What ``SentenceTransformer.encode`` returns: one array (default), one tensor
    (``convert_to_tensor``) or a list of tensors (neither); one vector for one text."""
    if to_tensor:
        result: Any = embeddings
    elif to_numpy:
        result = embeddings.numpy() if len(embeddings) else embeddings.numpy().reshape(0)
    else:
        result = list(embeddings)
    return result[0] if single else result
