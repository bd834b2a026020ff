"""Results sealed to the requester: only they open them, and only for the right token."""

from __future__ import annotations

import base64
import json

import pytest

from flowblock.sealing import SealError, digest, open_sealed, seal


def test_only_the_requester_opens_the_result(demo_world):
    alice, bob = demo_world.identity("alice"), demo_world.identity("bob")
    sealed = seal(b'{"mean": 131.2}', alice.certificate.public_key(), "token-1")
    assert open_sealed(sealed, alice, "token-1") == b'{"mean": 131.2}'
    with pytest.raises(SealError, match="sealed for someone else"):
        open_sealed(sealed, bob, "token-1")


def test_a_result_cannot_be_replayed_as_another_tokens(demo_world):
    alice = demo_world.identity("alice")
    sealed = seal(b"result", alice.certificate.public_key(), "token-1")
    with pytest.raises(SealError):
        open_sealed(sealed, alice, "token-2")


def test_an_altered_or_garbled_result_is_refused(demo_world):
    alice = demo_world.identity("alice")
    envelope = json.loads(base64.b64decode(seal(b"result", alice.certificate.public_key(), "t")))
    ciphertext = bytearray(base64.b64decode(envelope["ciphertext"]))
    ciphertext[0] ^= 1
    envelope["ciphertext"] = base64.b64encode(bytes(ciphertext)).decode()
    altered = base64.b64encode(json.dumps(envelope).encode()).decode()
    with pytest.raises(SealError, match="altered"):
        open_sealed(altered, alice, "t")
    with pytest.raises(SealError, match="damaged"):
        open_sealed("not base64 at all!", alice, "t")


def test_every_seal_is_fresh_and_the_digest_is_of_the_plaintext(demo_world):
    key = demo_world.identity("alice").certificate.public_key()
    assert seal(b"same", key, "t") != seal(b"same", key, "t")
    assert digest(b"same") == "0967115f2813a3541eaef77de9d9d5773f1c0c04314b0bbfe4ff3b3b1c55b5d5"
