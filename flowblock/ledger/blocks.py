"""Blocks as Fabric builds them: hash-chained headers over the transactions they hold.

A block header's hash is SHA-256 over the ASN.1 DER sequence (number, previous hash,
data hash), and the data hash is SHA-256 over the concatenated transactions, exactly as
Fabric's ``protoutil`` computes them, so a chain written here verifies with Fabric's
own rules and vice versa.
"""

from __future__ import annotations

import hashlib

from fabric_protos.common import common_pb2


def _der_length(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    encoded = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(encoded)]) + encoded


def _der(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + _der_length(len(content)) + content


def _der_integer(value: int) -> bytes:
    # Two's complement, big-endian, minimal: a leading zero keeps a high bit positive.
    return _der(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big"))


def header_bytes(header: common_pb2.BlockHeader) -> bytes:
    """Fabric's ``BlockHeaderBytes``: DER SEQUENCE { INTEGER, OCTET STRING, OCTET STRING }."""
    return _der(
        0x30,
        _der_integer(header.number)
        + _der(0x04, header.previous_hash)
        + _der(0x04, header.data_hash),
    )


def header_hash(header: common_pb2.BlockHeader) -> bytes:
    return hashlib.sha256(header_bytes(header)).digest()


def data_hash(data: common_pb2.BlockData) -> bytes:
    return hashlib.sha256(b"".join(data.data)).digest()


def new_block(number: int, previous_hash: bytes, envelopes: list[bytes]) -> common_pb2.Block:
    """A block holding ``envelopes``, chained to the previous header's hash."""
    data = common_pb2.BlockData(data=envelopes)
    block = common_pb2.Block(
        header=common_pb2.BlockHeader(
            number=number, previous_hash=previous_hash, data_hash=data_hash(data)
        ),
        data=data,
    )
    # Fabric always carries every metadata slot, even empty ones.
    block.metadata.metadata.extend([b""] * len(common_pb2.BlockMetadataIndex.items()))
    return block


def signed_metadata_message(
    value: bytes, signature_header: bytes, header: common_pb2.BlockHeader
) -> bytes:
    """What the orderer signs in a block's SIGNATURES metadata."""
    return value + signature_header + header_bytes(header)
