"""Results sealed to one reader: only the holder of the requester's key can open them.

A result posted to the ledger is visible to every peer, so it is encrypted to the
requester's certificate key: ECIES on P-256 (an ephemeral ECDH key, HKDF-SHA256,
AES-256-GCM), bound to the token it answers so a sealed result cannot be replayed as
another token's. Everyone can still verify it: the token carries the SHA-256 of the
plaintext, which the reader checks after opening.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from flowblock.errors import FlowBlockError
from flowblock.identity import Identity

SCHEME = "flowblock-ecies-p256-hkdf-sha256-aes256gcm-v1"


class SealError(FlowBlockError):
    """A sealed result cannot be opened: not ours, damaged, or for another token."""


def _key(shared: bytes, ephemeral: bytes, context: bytes) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=ephemeral, info=SCHEME.encode() + context
    ).derive(shared)


def seal(plaintext: bytes, reader: ec.EllipticCurvePublicKey, context: str) -> str:
    """``plaintext`` encrypted so that only ``reader``'s private key opens it (base64 JSON)."""
    ephemeral = ec.generate_private_key(ec.SECP256R1())
    ephemeral_public = ephemeral.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    key = _key(ephemeral.exchange(ec.ECDH(), reader), ephemeral_public, context.encode())
    nonce = os.urandom(12)
    ciphertext = AESGCM(key).encrypt(nonce, plaintext, context.encode())
    envelope = {
        "scheme": SCHEME,
        "ephemeral": base64.b64encode(ephemeral_public).decode(),
        "nonce": base64.b64encode(nonce).decode(),
        "ciphertext": base64.b64encode(ciphertext).decode(),
    }
    return base64.b64encode(json.dumps(envelope, sort_keys=True).encode()).decode()


def open_sealed(sealed: str, reader: Identity, context: str) -> bytes:
    """The plaintext of a result sealed to ``reader`` for ``context``; else SealError."""
    if reader.private_key is None:
        raise SealError("opening a sealed result needs the reader's private key.")
    try:
        envelope = json.loads(base64.b64decode(sealed))
        if envelope.get("scheme") != SCHEME:
            raise SealError(
                f"the result is sealed with an unknown scheme {envelope.get('scheme')!r}."
            )
        ephemeral_public = base64.b64decode(envelope["ephemeral"])
        ephemeral = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), ephemeral_public)
        key = _key(
            reader.private_key.exchange(ec.ECDH(), ephemeral), ephemeral_public, context.encode()
        )
        return AESGCM(key).decrypt(
            base64.b64decode(envelope["nonce"]),
            base64.b64decode(envelope["ciphertext"]),
            context.encode(),
        )
    except SealError:
        raise
    except InvalidTag:
        raise SealError(
            "the sealed result cannot be opened with this identity (it was sealed for "
            "someone else or for another token, or it was altered)."
        ) from None
    except (ValueError, KeyError, TypeError, AttributeError):  # not the envelope we make
        raise SealError("the sealed result is damaged and cannot be read.") from None


def digest(plaintext: bytes) -> str:
    """The hash a token records of its plaintext result, for anyone to verify."""
    return hashlib.sha256(plaintext).hexdigest()


def write_context(dataset: str, patient: str) -> str:
    """What rows written for a patient are sealed for: not replayable for another one."""
    return f"write:{dataset}:{patient}"
