"""Everything written to disk: the learner's manifest and files, load-time selection of the
entry for a machine, and the rebench kit. No Ray, Optuna or pyarrow here: a service that only
loads a learner imports this and the backends, nothing of the search.
"""

from speedster_dist.artifacts._card import CARD_FILE
from speedster_dist.artifacts._encoder import (
    ENCODER_FOLDER,
    POOLING_MODES,
    TOKENIZER_FILES,
    SentenceEncoding,
)
from speedster_dist.artifacts._entries import (
    PORTABLE_KEY,
    LearnerIO,
    ShapeError,
    WinnerEntry,
    portable_entry,
)
from speedster_dist.artifacts._files import atomic_write_text, sha256_file
from speedster_dist.artifacts._kit import (
    KIT_DIR,
    KIT_FILE,
    MODEL_KINDS,
    PICKLED_WEIGHTS,
    TEXT_SUFFIXES,
    InputSource,
    Kit,
    ModelSource,
    read_kit,
    write_kit,
)
from speedster_dist.artifacts._manifest import (
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    ArtifactError,
    Manifest,
    resave_keys,
)
from speedster_dist.artifacts._selection import (
    DATA_ONLY_SUFFIX,
    Selection,
    compatible,
    entry_speed,
    select_entry,
    stand_in_message,
)
from speedster_dist.artifacts._store import load_compiled, needs_trust, save_learner

__all__ = [
    "CARD_FILE",
    "DATA_ONLY_SUFFIX",
    "ENCODER_FOLDER",
    "FORMAT",
    "FORMAT_VERSION",
    "KIT_DIR",
    "KIT_FILE",
    "MANIFEST",
    "MODEL_KINDS",
    "PICKLED_WEIGHTS",
    "POOLING_MODES",
    "PORTABLE_KEY",
    "TEXT_SUFFIXES",
    "TOKENIZER_FILES",
    "ArtifactError",
    "InputSource",
    "Kit",
    "LearnerIO",
    "Manifest",
    "ModelSource",
    "Selection",
    "SentenceEncoding",
    "ShapeError",
    "WinnerEntry",
    "atomic_write_text",
    "compatible",
    "entry_speed",
    "load_compiled",
    "needs_trust",
    "portable_entry",
    "read_kit",
    "resave_keys",
    "save_learner",
    "select_entry",
    "sha256_file",
    "stand_in_message",
    "write_kit",
]
