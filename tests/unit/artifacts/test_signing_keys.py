"""The algorithm comes from the key, never from the manifest: an Ed25519 public key, in any
form it is shared in, is never an HMAC secret (everyone has it, so anyone could sign), and
an empty key never means "no checking"."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import pytest

from speedster_dist import load_model
from speedster_dist.artifacts import ArtifactError, Manifest
from speedster_dist.learner import HardwareKeyedLearner

from .test_hostile import _manifest, _write, artifact, mlp  # noqa: F401
from .test_signing import _resign

ed25519 = pytest.importorskip("cryptography.hazmat.primitives.asymmetric.ed25519")
serialization = pytest.importorskip("cryptography.hazmat.primitives.serialization")

PRIVATE = ed25519.Ed25519PrivateKey.generate()
PUBLIC = PRIVATE.public_key()
Enc, Pub = serialization.Encoding, serialization.PublicFormat
PUBLIC_TEXTS = {
    "pem": PUBLIC.public_bytes(Enc.PEM, Pub.SubjectPublicKeyInfo).decode(),
    "hex": PUBLIC.public_bytes_raw().hex(),
    "ed25519:hex": "ed25519:" + PUBLIC.public_bytes_raw().hex(),
    "ssh": PUBLIC.public_bytes(Enc.OpenSSH, Pub.OpenSSH).decode(),
    "base64 der": "".join(
        PUBLIC.public_bytes(Enc.PEM, Pub.SubjectPublicKeyInfo).decode().splitlines()[1:-1]
    ),
}
PRIVATE_PEM = PRIVATE.private_bytes(
    Enc.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
).decode()


def _forge_with_hmac(path: Path, secret: str) -> None:
    """What an attacker who knows the public key does: change the learner, then sign it
    with HMAC-SHA256 using the public key's text as the secret."""
    manifest = _manifest(path)
    manifest.pop("signature", None)
    manifest["io"]["input_names"] = ["forged"]
    body = json.dumps(manifest, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    value = hmac.new(secret.encode(), body.encode(), hashlib.sha256).hexdigest()
    manifest["signature"] = {"algorithm": "hmac-sha256", "value": value}
    _write(path, manifest)


@pytest.mark.parametrize("form", sorted(PUBLIC_TEXTS))
def test_a_learner_forged_with_the_public_key_as_hmac_secret_does_not_load(
    artifact: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    form: str,
):
    text = PUBLIC_TEXTS[form]
    _resign(artifact, PRIVATE)
    assert load_model(artifact, verify_key=text) is not None  # the genuine one verifies
    _forge_with_hmac(artifact, text)
    with pytest.raises(ArtifactError, match=r"signed with 'hmac-sha256'.*an ed25519 key"):
        load_model(artifact, verify_key=text)
    with pytest.raises(ArtifactError, match=r"signed with 'hmac-sha256'.*an ed25519 key"):
        load_model(artifact, verify_key=text.encode())  # as bytes read from a .pem file
    monkeypatch.setenv("SPEEDSTER_DIST_VERIFY_KEY", text)
    with pytest.raises(ArtifactError, match=r"signed with 'hmac-sha256'.*an ed25519 key"):
        load_model(artifact)


def test_the_recorded_algorithm_must_match_the_keys_kind(artifact: Path):  # noqa: F811
    _resign(artifact, PRIVATE)
    with pytest.raises(ArtifactError, match=r"signed with 'ed25519'.*an hmac-sha256 key"):
        load_model(artifact, verify_key="a shared secret of sixteen bytes+")
    manifest = _manifest(artifact)
    manifest["signature"]["algorithm"] = "hmac-sha256"  # the value is still Ed25519's
    _write(artifact, manifest)
    with pytest.raises(ArtifactError, match=r"signed with 'hmac-sha256'.*an ed25519 key"):
        load_model(artifact, verify_key=PUBLIC)


@pytest.mark.parametrize(
    "key", [PUBLIC, PUBLIC_TEXTS["pem"], PUBLIC_TEXTS["ssh"]], ids=["object", "pem", "ssh"]
)
def test_a_public_key_never_signs(artifact: Path, key: Any):  # noqa: F811
    with pytest.raises(ValueError, match="public key verifies; it cannot sign"):
        _resign(artifact, key)
    assert "signature" not in _manifest(artifact)


def test_keys_given_as_text_sign_and_verify_by_their_form(
    artifact: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.setenv("SPEEDSTER_DIST_SIGNING_KEY", PRIVATE_PEM)
    _resign(artifact, None)
    assert _manifest(artifact)["signature"]["algorithm"] == "ed25519"
    assert load_model(artifact, verify_key=PUBLIC_TEXTS["pem"]) is not None
    assert load_model(artifact, verify_key=PRIVATE_PEM) is not None  # its public half checks
    hex_secret = "ab" * 32  # `openssl rand -hex 32`: also how a raw Ed25519 key is written
    with pytest.raises(ValueError, match=r"say which this is.*'hmac:<hex>'"):
        _resign(artifact, hex_secret)
    _resign(artifact, f"hmac:{hex_secret}")
    assert _manifest(artifact)["signature"]["algorithm"] == "hmac-sha256"
    assert load_model(artifact, verify_key=f"hmac:{hex_secret}") is not None
    with pytest.raises(ArtifactError, match=r"signed with 'hmac-sha256'.*an ed25519 key"):
        load_model(artifact, verify_key=hex_secret)  # bare hex: a public key, not a secret


def test_an_empty_key_variable_is_an_error_not_no_checking(
    artifact: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.setenv("SPEEDSTER_DIST_VERIFY_KEY", "")
    with pytest.raises(ArtifactError, match="SPEEDSTER_DIST_VERIFY_KEY is set but empty"):
        load_model(artifact)
    with pytest.raises(ArtifactError, match="set but empty"):
        Manifest.read(artifact)
    monkeypatch.delenv("SPEEDSTER_DIST_VERIFY_KEY")
    monkeypatch.setenv("SPEEDSTER_DIST_SIGNING_KEY", " ")
    meta = Manifest.read(artifact)
    learner = HardwareKeyedLearner(meta.io(), meta.entries(), portable=meta.portable())
    with pytest.raises(ValueError, match="SPEEDSTER_DIST_SIGNING_KEY is set but empty"):
        learner.save(artifact)
