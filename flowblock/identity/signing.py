"""ECDSA P-256 signatures over SHA-256, normalised to low-S as Fabric requires.

An ECDSA signature (r, s) has a twin (r, n - s) that verifies just as well; Fabric
peers accept only the one with s <= n/2 so a signature cannot be altered into a new,
valid one. Every signature FlowBlock makes goes through :func:`sign`.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature as _CryptoInvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from flowblock.errors import InvalidSignature

#: The order n of the P-256 group; low-S means s <= n // 2.
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
_HALF_ORDER = P256_ORDER >> 1


def generate_key() -> ec.EllipticCurvePrivateKey:
    """A fresh P-256 private key, the only curve Fabric's default MSP accepts."""
    return ec.generate_private_key(ec.SECP256R1())


def private_key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    """The key as unencrypted PKCS#8 PEM, the form Fabric's keystore holds."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def sign(private_key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    """Sign SHA-256(data) and return the DER signature with S in the low half."""
    r, s = decode_dss_signature(private_key.sign(data, ec.ECDSA(hashes.SHA256())))
    if s > _HALF_ORDER:
        s = P256_ORDER - s
    return encode_dss_signature(r, s)


def is_low_s(signature: bytes) -> bool:
    """Whether a DER ECDSA signature has S in the lower half of the group order."""
    _, s = decode_dss_signature(signature)
    return s <= _HALF_ORDER


def verify(public_key: ec.EllipticCurvePublicKey, data: bytes, signature: bytes) -> None:
    """Raise :class:`InvalidSignature` unless ``signature`` is a low-S signature of ``data``."""
    try:
        low_s = is_low_s(signature)
    except ValueError as error:
        raise InvalidSignature("the signature is not a DER-encoded ECDSA signature.") from error
    if not low_s:
        raise InvalidSignature("the signature has a high S value; Fabric accepts only low-S.")
    try:
        public_key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
    except _CryptoInvalidSignature as error:
        raise InvalidSignature("the signature does not verify under the signer's key.") from error
