"""Signed manifests: who wrote a learner, not only whether its files changed by accident.

Checksums in a manifest detect accidents; anyone who can edit the folder can also edit the
checksums. A signature over the manifest (which holds every file's SHA-256) closes that:
HMAC-SHA256 with a shared secret, or Ed25519 with a key pair (the private key signs, the
public key verifies; ``cryptography`` reads and uses them). The signature is a field of
``manifest.json`` itself, computed over the canonical JSON of the rest, so a save replaces
manifest and signature in one atomic rename.

The algorithm comes from the key, never from the manifest: the manifest records the
algorithm it was signed with, and one whose record differs from the key's kind is refused.
A key given as text or bytes is read by its form, so that an Ed25519 public key (which
everyone may have) is never taken for an HMAC secret (which would let anyone sign):

- ``-----BEGIN PUBLIC KEY-----`` / ``-----BEGIN PRIVATE KEY-----`` (PEM), ``ssh-ed25519 ...``,
  the base64 DER of a public key, 64 hex digits (a raw public key), ``ed25519:<64 hex>``
  (a raw public key to verify, a raw private key to sign): Ed25519;
- ``hmac:<secret>``, or any other text of at least 16 bytes: an HMAC-SHA256 secret.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from speedster_dist.errors import SignatureError

__all__ = [
    "SIGNATURE_FIELD",
    "SIGNING_KEY_ENV",
    "VERIFY_KEY_ENV",
    "SignatureError",
    "sign_manifest",
    "signing_key_from_env",
    "verify_key_for",
    "verify_key_from_env",
    "verify_manifest",
]

SIGNATURE_FIELD = "signature"
SIGNING_KEY_ENV = "SPEEDSTER_DIST_SIGNING_KEY"
VERIFY_KEY_ENV = "SPEEDSTER_DIST_VERIFY_KEY"
_HMAC, _ED25519 = "hmac-sha256", "ed25519"
_HEX_KEY = re.compile(r"[0-9a-fA-F]{64}")
_ED25519_SPKI = bytes.fromhex("302a300506032b6570032100")  # DER prefix of a public key
_NEEDS_CRYPTOGRAPHY = "pip install 'speedster-dist[sign]' (the cryptography package)"


def _from_env(name: str, unset: str) -> str | None:
    value = os.environ.get(name)
    if value is not None and not value.strip():
        raise SignatureError(
            f"{name} is set but empty: unset it to {unset}, or set it to the key "
            "(an empty key never means 'no checking')"
        )
    return value


def signing_key_from_env() -> str | None:
    return _from_env(SIGNING_KEY_ENV, "save learners unsigned")


def verify_key_from_env() -> str | None:
    return _from_env(VERIFY_KEY_ENV, "load learners without checking their signature")


@dataclass(frozen=True)
class _Key:
    """A key read for one use: its algorithm and what computes with it (the HMAC secret's
    bytes, or an Ed25519 key object of ``cryptography``)."""

    algorithm: str
    material: Any


def _ed25519() -> Any:
    try:
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError:
        return None
    return ed25519


def _is_ed25519(key: Any, public: bool) -> bool:
    module = _ed25519()
    if module is None:
        return False
    return isinstance(key, module.Ed25519PublicKey if public else module.Ed25519PrivateKey)


def _text(key: bytes | bytearray | str) -> str | None:
    """``key`` as text when it is text (ASCII bytes included), else None (a binary secret)."""
    if isinstance(key, str):
        return key
    try:
        return bytes(key).decode("ascii")
    except UnicodeDecodeError:
        return None


def _looks_public(text: str) -> bool:
    """The forms a public key is shared in (they must never become an HMAC secret)."""
    if "-----BEGIN" in text or text.startswith(("ssh-ed25519 ", "ed25519:")):
        return True
    if _HEX_KEY.fullmatch(text):
        return True
    try:
        return base64.b64decode(text, validate=True).startswith(_ED25519_SPKI)
    except (binascii.Error, ValueError):
        return False


def _parse_ed25519(text: str, private: bool) -> Any:
    """The Ed25519 key written as ``text`` (see the module docstring)."""
    module = _ed25519()
    if module is None:
        raise SignatureError(f"the key is an Ed25519 key; reading it needs {_NEEDS_CRYPTOGRAPHY}")
    from cryptography.hazmat.primitives import serialization

    key: Any
    try:
        if "-----BEGIN" in text:
            if "PRIVATE KEY" in text:
                key = serialization.load_pem_private_key(text.encode(), password=None)
            else:
                key = serialization.load_pem_public_key(text.encode())
        elif text.startswith("ssh-ed25519 "):
            key = serialization.load_ssh_public_key(text.encode())
        elif _HEX_KEY.fullmatch(raw := text.removeprefix("ed25519:")):
            if private:
                key = module.Ed25519PrivateKey.from_private_bytes(bytes.fromhex(raw))
            else:
                key = module.Ed25519PublicKey.from_public_bytes(bytes.fromhex(raw))
        else:
            key = serialization.load_der_public_key(base64.b64decode(text))
    except (ValueError, TypeError, binascii.Error) as exc:
        raise SignatureError(
            f"the key looks like an Ed25519 key but cannot be read: {exc}"
        ) from None
    if not _is_ed25519(key, public=True) and not _is_ed25519(key, public=False):
        raise SignatureError(f"the key is a {type(key).__name__}, not an Ed25519 or HMAC key")
    return key


def _secret(key: bytes | bytearray | str) -> bytes:
    secret = key.encode() if isinstance(key, str) else bytes(key)
    if len(secret) < 16:
        raise SignatureError("an HMAC key must be at least 16 bytes long")
    return secret


def _read_key(key: Any, private: bool) -> _Key:
    """``key`` read for signing (``private``) or for verifying."""
    if _is_ed25519(key, public=False):
        return _Key(_ED25519, key if private else key.public_key())
    if _is_ed25519(key, public=True):
        if private:
            raise SignatureError(
                "an Ed25519 public key verifies; it cannot sign (give the private key)"
            )
        return _Key(_ED25519, key)
    if not isinstance(key, bytes | bytearray | str):
        kinds = "a signing key is bytes, str or an Ed25519PrivateKey"
        if not private:
            kinds = "a verify key is bytes, str or an Ed25519PublicKey"
        raise SignatureError(f"{kinds}, not {type(key).__name__}")
    text = _text(key)
    if text is None:  # binary bytes: a secret (documented)
        return _Key(_HMAC, _secret(key))
    if text.startswith("hmac:"):
        return _Key(_HMAC, _secret(text.removeprefix("hmac:")))
    stripped = text.strip()
    if not _looks_public(stripped):
        return _Key(_HMAC, _secret(key))
    if private and _HEX_KEY.fullmatch(stripped):
        raise SignatureError(
            "64 hex digits is how an Ed25519 key is written: say which this is, "
            "'ed25519:<hex>' for an Ed25519 private key or 'hmac:<hex>' for an HMAC secret"
        )
    parsed = _parse_ed25519(stripped, private)
    return _read_key(parsed, private)


def verify_key_for(signing_key: Any) -> Any:
    """The key that verifies what ``signing_key`` signs: the same HMAC secret, or the
    Ed25519 private key's public key. The nightly re-save verifies with it first."""
    key = _read_key(signing_key, private=True)
    return key.material.public_key() if key.algorithm == _ED25519 else key.material


def _canonical(manifest: Mapping[str, Any]) -> bytes:
    body = {k: v for k, v in manifest.items() if k != SIGNATURE_FIELD}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def sign_manifest(manifest: Mapping[str, Any], key: Any) -> dict[str, str]:
    """The signature field for ``manifest``, by ``key`` (see the module docstring for the
    forms a key may take; an ``Ed25519PrivateKey`` object signs with Ed25519)."""
    signer = _read_key(key, private=True)
    payload = _canonical(manifest)
    if signer.algorithm == _ED25519:
        return {"algorithm": _ED25519, "value": signer.material.sign(payload).hex()}
    value = hmac.new(signer.material, payload, hashlib.sha256).hexdigest()
    return {"algorithm": _HMAC, "value": value}


def verify_manifest(manifest: Mapping[str, Any], key: Any) -> None:
    """Raise :class:`SignatureError` unless ``manifest`` carries a valid signature by
    ``key``, with the algorithm of ``key``'s kind (an Ed25519 public key never checks an
    HMAC signature)."""
    verifier = _read_key(key, private=False)
    signature = manifest.get(SIGNATURE_FIELD)
    if signature is None:
        raise SignatureError("the manifest is not signed, and a verify key was given")
    if not isinstance(signature, dict) or not isinstance(signature.get("value"), str):
        raise SignatureError("the manifest's signature field is malformed")
    algorithm = signature.get("algorithm")
    if algorithm != verifier.algorithm:
        raise SignatureError(
            f"the manifest says it is signed with {str(algorithm)[:40]!r}, and the verify key "
            f"is an {verifier.algorithm} key: refused (a key checks its own algorithm only)"
        )
    payload = _canonical(manifest)
    if verifier.algorithm == _ED25519:
        from cryptography.exceptions import InvalidSignature

        try:
            verifier.material.verify(bytes.fromhex(signature["value"]), payload)
        except (InvalidSignature, ValueError):
            raise SignatureError("the manifest's Ed25519 signature does not verify") from None
        return
    expected = hmac.new(verifier.material, payload, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), signature["value"].encode()):
        raise SignatureError(
            "the manifest's signature does not match: it was changed after signing, or "
            "signed with another key"
        )
