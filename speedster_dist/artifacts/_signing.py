"""Signed manifests: who wrote a learner, not only whether its files changed by accident.

Checksums in a manifest detect accidents; anyone who can edit the folder can also edit the
checksums. A signature over the manifest (which holds every file's SHA-256) closes that:
HMAC-SHA256 with a shared secret (``bytes`` or ``str``), or Ed25519 with a key pair from the
``cryptography`` package (the private key signs, the public key verifies). The signature is a
field of ``manifest.json`` itself, computed over the canonical JSON of the rest, so a save
replaces manifest and signature in one atomic rename.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Mapping
from typing import Any

from speedster_dist.errors import SignatureError

__all__ = [
    "SIGNATURE_FIELD",
    "SIGNING_KEY_ENV",
    "VERIFY_KEY_ENV",
    "SignatureError",
    "sign_manifest",
    "signing_key_from_env",
    "verify_key_from_env",
    "verify_manifest",
]

SIGNATURE_FIELD = "signature"
SIGNING_KEY_ENV = "SPEEDSTER_DIST_SIGNING_KEY"
VERIFY_KEY_ENV = "SPEEDSTER_DIST_VERIFY_KEY"
_HMAC, _ED25519 = "hmac-sha256", "ed25519"


def signing_key_from_env() -> str | None:
    return os.environ.get(SIGNING_KEY_ENV) or None


def verify_key_from_env() -> str | None:
    return os.environ.get(VERIFY_KEY_ENV) or None


def _canonical(manifest: Mapping[str, Any]) -> bytes:
    body = {k: v for k, v in manifest.items() if k != SIGNATURE_FIELD}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def _secret(key: bytes | str) -> bytes:
    secret = key.encode() if isinstance(key, str) else bytes(key)
    if len(secret) < 16:
        raise SignatureError("an HMAC key must be at least 16 bytes long")
    return secret


def _is_ed25519(key: Any, public: bool) -> bool:
    try:
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError:
        return False
    kind = ed25519.Ed25519PublicKey if public else ed25519.Ed25519PrivateKey
    return isinstance(key, kind)


def sign_manifest(manifest: Mapping[str, Any], key: Any) -> dict[str, str]:
    """The signature field for ``manifest`` (``bytes``/``str``: HMAC-SHA256; an
    ``Ed25519PrivateKey``: Ed25519)."""
    payload = _canonical(manifest)
    if _is_ed25519(key, public=False):
        return {"algorithm": _ED25519, "value": key.sign(payload).hex()}
    if not isinstance(key, bytes | str):
        raise SignatureError(
            f"a signing key is bytes, str or an Ed25519PrivateKey, not {type(key).__name__}"
        )
    value = hmac.new(_secret(key), payload, hashlib.sha256).hexdigest()
    return {"algorithm": _HMAC, "value": value}


def verify_manifest(manifest: Mapping[str, Any], key: Any) -> None:
    """Raise :class:`SignatureError` unless ``manifest`` carries a valid signature for
    ``key`` (``bytes``/``str``: HMAC-SHA256; an ``Ed25519PublicKey``: Ed25519)."""
    signature = manifest.get(SIGNATURE_FIELD)
    if signature is None:
        raise SignatureError("the manifest is not signed, and a verify key was given")
    if not isinstance(signature, dict) or not isinstance(signature.get("value"), str):
        raise SignatureError("the manifest's signature field is malformed")
    payload = _canonical(manifest)
    algorithm = signature.get("algorithm")
    if _is_ed25519(key, public=True):
        if algorithm != _ED25519:
            raise SignatureError(f"the manifest is signed with {algorithm!r}, not Ed25519")
        from cryptography.exceptions import InvalidSignature

        try:
            key.verify(bytes.fromhex(signature["value"]), payload)
        except (InvalidSignature, ValueError):
            raise SignatureError("the manifest's Ed25519 signature does not verify") from None
        return
    if not isinstance(key, bytes | str):
        raise SignatureError(
            f"a verify key is bytes, str or an Ed25519PublicKey, not {type(key).__name__}"
        )
    if algorithm != _HMAC:
        raise SignatureError(f"the manifest is signed with {algorithm!r}, not HMAC-SHA256")
    expected = hmac.new(_secret(key), payload, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature["value"]):
        raise SignatureError(
            "the manifest's signature does not match: it was changed after signing, or "
            "signed with another key"
        )
