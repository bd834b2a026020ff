"""The private collection's keys and values as the blocks see them: hashes nobody can test.

Fabric puts every private write's key hash and value hash in the block. Here a
curious organisation holds those hashes and guesses: "patient1's consents on this
dataset", "compute, for research, to University". With the keys hidden and the values
salted under the Hospital's secret, neither guess matches anything (issue 15).
"""

from __future__ import annotations

import hashlib
import json

import pytest

from flowblock.canonical import canonical_json
from flowblock.testing.flowblock_ledger import Refusal

pytestmark = pytest.mark.unit

COLLECTION = "_implicit_org_HospitalMSP"


def private_rows(ledger) -> list[tuple[bytes, bytes, bytes, bytes]]:
    """(key, key hash, value, value hash) of every private value the Hospital holds."""
    rows = ledger.state._reader.execute(
        "SELECT v.key, v.key_hash, v.value, h.value_hash FROM private_values v "
        "JOIN private_hashes h USING (ns, collection, key_hash) WHERE v.collection=?",
        (COLLECTION,),
    ).fetchall()
    return [tuple(row) for row in rows]


def test_no_guess_of_a_key_or_a_value_matches_a_hash_in_the_blocks(local):
    world, ledger = local
    world.setup(consent=False)
    p1, p2, _ = world.patients
    first = world.grant(p1, "org:University", "C", "research")
    world.grant(p2, "org:University", "C", "research")
    rows = private_rows(ledger)
    keys = [key for key, *_ in rows]
    key_hashes = {key_hash for _, key_hash, *_ in rows}
    value_hashes = {value_hash for *_, value_hash in rows}
    # No key names a patient, a record or a grant's terms ...
    for patient in ("patient1", "patient2", "patient3"):
        assert not any(patient.encode() in key for key in keys), keys
    # ... and the keys and values an attacker would guess hash to nothing in the blocks.
    for guess in (f"consents|{world.dataset}|patient1@Hospital", "consent\x00patient1@Hospital"):
        assert hashlib.sha256(guess.encode()).digest() not in key_hashes
    entry = {"patient": "patient1@Hospital", "grantee": "org:University", "rights": "C",
             "purpose": "research", "until": "", "record_id": ""}  # fmt: skip
    guessed = canonical_json({"grants": {first["grant_id"]: entry}})
    assert hashlib.sha256(guessed).digest() not in value_hashes
    # Yet the stored value is that very entry, with a salt.
    stored = [json.loads(value) for key, _, value, _ in rows if key != b"secret"]
    assert {"grants": {first["grant_id"]: entry}} in [
        {k: v for k, v in value.items() if k != "salt"} for value in stored
    ]
    # Alike entries (each patient's empty marker of a grant of theirs) hash unlike.
    assert len(value_hashes) == len(rows)


def test_a_patients_grants_come_a_page_at_a_time(local):
    world, _ = local
    world.setup(consent=False)
    patient = world.patients[0]
    made = [world.grant(patient, "org:University", "C", purpose)["grant_id"]
            for purpose in ("a", "b", "c")]  # fmt: skip
    seen, bookmark = [], ""
    while True:
        page = world.evaluate(patient, "consent:MyGrants", 2, bookmark)
        seen += [grant["grant_id"] for grant in page["grants"]]
        bookmark = page["bookmark"]
        if not bookmark:
            break
    assert sorted(seen) == sorted(made)
    world.refused(400, "bookmark must be one a previous page returned", patient,
                  "consent:MyGrants", 2, "elsewhere", submit=False)  # fmt: skip


def test_a_collection_is_set_up_once_and_needed_first(local):
    world, _ = local
    world.submit(world.steward, "records:RegisterDataset", world.dataset, "tabular",
                 json.dumps({"columns": {"age": "integer"}}))  # fmt: skip
    with pytest.raises(Refusal, match="is not enrolled as a patient of Hospital"):
        world.grant(world.patients[0], "org:University", "C", "research")
    with pytest.raises(Refusal, match="has not set up its private collection yet"):
        world.enrol(world.patients[0])
    world.refused(400, "at least 32 random bytes", world.steward, "consent:SetUpCollection",
                  transient={"secret": b"short"})  # fmt: skip
    world.refused(403, "needs the role admin or steward or executor", world.alice,
                  "consent:SetUpCollection", transient={"secret": bytes(32)})  # fmt: skip
    world.set_up_collection()
    world.refused(409, "set up already", world.executor, "consent:SetUpCollection",
                  transient={"secret": b"another secret of thirty-two b!!"})  # fmt: skip
    world.enrol(world.patients[0])
    assert world.grant(world.patients[0], "org:University", "C", "research")["status"] == "ACTIVE"
