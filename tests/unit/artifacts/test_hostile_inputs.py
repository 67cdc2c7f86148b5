"""Artifacts built to hang the loader or kill it with a raw error: a FIFO where a file is
expected, JSON nested past Python's recursion limit, a number Python refuses to convert,
an entry keyed like the portable fallback. Each is refused with ArtifactError, at once."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pytest

from speedster_dist import load_model
from speedster_dist.artifacts import ArtifactError, read_kit

from .test_hostile import LOCAL, _entry_raw, _manifest, _write, artifact, mlp  # noqa: F401

_WAIT_S = 60.0  # generous for a loaded 2-core machine; a FIFO would block for ever


def _load_within_time(path: Path, fifo: Path) -> BaseException | None:
    """``load_model(path)`` in a thread; if it is still blocked after the wait, a writer
    opens ``fifo`` to release it (so that the test fails rather than hangs)."""
    outcome: dict[str, Any] = {}

    def load() -> None:
        try:
            load_model(path)
        except BaseException as exc:  # handed to the test thread
            outcome["error"] = exc

    thread = threading.Thread(target=load, daemon=True)
    thread.start()
    thread.join(_WAIT_S)
    if thread.is_alive():
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))  # unblocks the reader
        thread.join(10)
        pytest.fail(f"load_model blocked on the FIFO {fifo.name} for {_WAIT_S:.0f} s")
    return outcome.get("error")


def test_a_fifo_as_the_manifest_is_refused_without_blocking(artifact: Path):  # noqa: F811
    (artifact / "manifest.json").unlink()
    os.mkfifo(artifact / "manifest.json")
    error = _load_within_time(artifact, artifact / "manifest.json")
    assert isinstance(error, ArtifactError)
    assert "manifest.json' is not a regular file" in str(error)


def test_a_fifo_as_a_model_file_is_refused_without_blocking(artifact: Path):  # noqa: F811
    raw = _entry_raw(_manifest(artifact))
    model = artifact / raw["folder"] / raw["options"]["file"]
    model.unlink()
    os.mkfifo(model)
    error = _load_within_time(artifact, model)
    assert isinstance(error, ArtifactError)
    assert f"{raw['options']['file']}' is not a regular file" in str(error)


def test_a_fifo_in_the_rebench_kit_is_refused_without_blocking(tmp_path: Path):
    kit = tmp_path / "learner" / "rebench"
    kit.mkdir(parents=True)
    os.mkfifo(kit / "kit.json")
    with pytest.raises(ArtifactError, match=r"kit.json cannot be read.*not a regular file"):
        read_kit(tmp_path / "learner")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[" * 100_000 + "]" * 100_000, "nests more than 32 levels"),  # RecursionError
        ('{"format": ' + "[" * 40 + "]" * 40 + "}", "nests more than 32 levels"),
        ('{"version": ' + "9" * 5000 + "}", "a number of 5000 digits"),  # int max str digits
        ('{"format": "speedster-dist-learner", "version": 1e999999}', "format version inf"),
        ("\xff\xfe", "is corrupt"),
    ],
    ids=["deep", "deep-within-limit", "5000-digits", "huge-float", "not-utf8"],
)
def test_malformed_json_is_an_artifact_error(artifact: Path, text: str, message: str):  # noqa: F811
    (artifact / "manifest.json").write_bytes(text.encode("latin-1"))
    with pytest.raises(ArtifactError, match=message):
        load_model(artifact)


def test_an_entry_keyed_like_the_portable_fallback_is_refused(artifact: Path):  # noqa: F811
    manifest = _manifest(artifact)
    raw = manifest["entries"].pop(LOCAL.key)
    raw["hardware"]["key"] = "portable"
    manifest["entries"]["portable"] = raw
    _write(artifact, manifest)
    with pytest.raises(ArtifactError, match="'portable' names the portable fallback"):
        load_model(artifact)
