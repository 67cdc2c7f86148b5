"""Signed manifests: checksums catch accidents, a signature catches tampering."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from speedster_dist import load_model
from speedster_dist.artifacts import ArtifactError, Manifest
from speedster_dist.learner import HardwareKeyedLearner

from .test_hostile import _entry_raw, _manifest, _write, artifact, mlp  # noqa: F401

KEY = "a shared secret of the ML platform team"


def _tamper_consistently(path: Path) -> None:
    """What checksums cannot catch: a changed file and its checksum changed to match."""
    manifest = _manifest(path)
    raw = _entry_raw(manifest)
    name = raw["options"]["file"]
    target = path / raw["folder"] / name
    data = target.read_bytes() + b"\x00"
    target.write_bytes(data)
    raw["files"][name] = hashlib.sha256(data).hexdigest()
    _write(path, manifest)


def _resign(path: Path, key: object) -> Path:
    meta = Manifest.read(path)
    learner = HardwareKeyedLearner(meta.io(), meta.entries(), portable=meta.portable())
    return learner.save(path, signing_key=key)


def test_a_signed_learner_loads_with_its_key_and_refuses_tampering(artifact: Path):  # noqa: F811
    _resign(artifact, KEY)
    assert json.loads((artifact / "manifest.json").read_text())["signature"]["algorithm"] == (
        "hmac-sha256"
    )
    assert load_model(artifact, verify_key=KEY) is not None
    with pytest.raises(ArtifactError, match="does not match"):
        load_model(artifact, verify_key="another secret of the same length!")
    _tamper_consistently(artifact)
    with pytest.raises(ArtifactError, match="does not match"):
        load_model(artifact, verify_key=KEY)


def test_an_unsigned_learner_is_refused_when_a_key_is_expected(
    artifact: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
):
    with pytest.raises(ArtifactError, match="not signed"):
        load_model(artifact, verify_key=KEY)
    monkeypatch.setenv("SPEEDSTER_DIST_VERIFY_KEY", KEY)
    with pytest.raises(ArtifactError, match="not signed"):
        load_model(artifact)
    monkeypatch.delenv("SPEEDSTER_DIST_VERIFY_KEY")
    monkeypatch.setenv("SPEEDSTER_DIST_SIGNING_KEY", KEY)
    _resign(artifact, None)  # the variable signs when no key is given
    monkeypatch.setenv("SPEEDSTER_DIST_VERIFY_KEY", KEY)
    assert load_model(artifact) is not None


def test_short_hmac_keys_are_refused(artifact: Path):  # noqa: F811
    with pytest.raises(ValueError, match="at least 16 bytes"):
        _resign(artifact, "short")
    assert "signature" not in _manifest(artifact)  # the failed save changed nothing


def test_ed25519_keys_sign_and_verify(artifact: Path):  # noqa: F811
    ed25519 = pytest.importorskip("cryptography.hazmat.primitives.asymmetric.ed25519")
    private = ed25519.Ed25519PrivateKey.generate()
    _resign(artifact, private)
    assert load_model(artifact, verify_key=private.public_key()) is not None
    stranger = ed25519.Ed25519PrivateKey.generate().public_key()
    with pytest.raises(ArtifactError, match="does not verify"):
        load_model(artifact, verify_key=stranger)
    _tamper_consistently(artifact)
    with pytest.raises(ArtifactError, match="does not verify"):
        load_model(artifact, verify_key=private.public_key())
