"""What the shared ledger tells every organisation about a computation's cohort: nothing.

The attacker is a researcher who reads every block their organisation's peer stores
and every event the Gateway streams (issue 15). After an exact count over a filter, a
DP count over a one-patient filter and a grouped mean, the transactions of those
computations (request to receipts), their events and their answers name no patient of
any cohort, state no exact cohort size, and hold neither the cohort's parts nor their
salt; the parts are readable only on the data organisation's own peer, by the patient
(their receipts) and the organisation's auditor (the opening, checked by ``verify``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from fabric_protos.peer import chaincode_event_pb2, proposal_pb2, transaction_pb2

from flowblock.chaincode.contracts import CHAINCODE_NAME
from flowblock.client import Client
from flowblock.cohorts import cohort_parts
from flowblock.errors import EndorseError
from flowblock.identity import CertificateAuthority, read_attributes
from flowblock.identity.certificates import ROLE_ATTRIBUTE
from flowblock.ledger import Gateway, GatewayPool, protocol
from flowblock.network.devnet.blockstore import BlockStore
from flowblock.network.verify import verify_chain
from flowblock.testing.ledger import DevnetProcess
from flowblock.testing.study import Study, ages_apart, publish_and_allow

pytestmark = pytest.mark.security

#: The token transactions of a computation; records and consent are the patients' own.
COMPUTATION_FUNCTIONS = {
    "Request", "Approve", "Claim", "ReportProgress", "Complete", "Fail", "consent:RecordUsage",
}  # fmt: skip


@pytest.fixture(scope="module")
def pool(flowblock_devnet, demo_world):
    with GatewayPool(flowblock_devnet.address) as pool:
        rules = {"auto_approve": {"methods": ["count", "mean"], "purposes": ["research"],
                                  "organisations": ["University"], "max_epsilon": 1.0}}  # fmt: skip
        publish_and_allow(pool, demo_world, rules)
        yield pool


def vitals(n: int) -> pd.DataFrame:
    """Ages 20… one apart, so an age filter picks an exact number of patients."""
    return ages_apart(n, n, (("copd", 7),))


def transactions(block_file: Path) -> Iterator[tuple[str, bytes, transaction_pb2.Transaction]]:
    """Every endorser transaction in the block file: its function, raw bytes and body."""
    store = BlockStore(block_file, read_only=True)
    try:
        for block in store.blocks(1):
            for raw in block.data.data:
                envelope = protocol.common_pb2.Envelope.FromString(raw)
                unpacked = protocol.unpack_transaction(envelope)
                invocation = proposal_pb2.ChaincodeProposalPayload.FromString(
                    unpacked.action_payload.chaincode_proposal_payload
                )
                spec = protocol.chaincode_pb2.ChaincodeInvocationSpec.FromString(invocation.input)
                yield spec.chaincode_spec.input.args[0].decode(), raw, unpacked
    finally:
        store.close()


def numbers(value, skip=("progress",)) -> Iterator[int]:
    """Every whole number in a JSON value, but under the keys in ``skip``."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key not in skip:
                yield from numbers(item, skip)
    elif isinstance(value, list):
        for item in value:
            yield from numbers(item, skip)
    elif isinstance(value, int) and not isinstance(value, bool):
        yield value


def test_no_block_event_or_answer_names_a_cohort_or_its_size(
    pool, s3_server, demo_world, flowblock_devnet
):
    study = Study(pool, s3_server, demo_world, vitals(60), consenting=58, prefix="private")
    researcher = "alice@University"
    study.admin.submit("budget:Grant", study.dataset, researcher, 1.0)
    exact = study.ask("count", {"where": [["age", "<", 53]]})  # 33 patients
    target = study.consenting[10]
    alone = study.ask(
        "count",
        {"where": [["patient_id", "==", target], ["diagnosis", "==", "copd"]]},
        epsilon=0.001,
    )
    grouped = study.ask("mean", {"column": "systolic", "group_by": ["sex"]})
    results = [job.wait(timeout=60) for job in (exact, alone, grouped)]
    sizes = {job.token_id: len(study.executor.load_output(job.token_id)["patients"])
             for job in (exact, alone, grouped)}  # fmt: skip
    assert sizes[exact.token_id] == 33 and sizes[alone.token_id] == 0  # target has no copd
    assert results[0].cohort_size == 35  # released rounded, like every count
    assert results[1].cohort_size is None  # DP: the noisy count alone
    tokens = set(sizes)
    # Whom a researcher names in their own filter is theirs to say (the request is public).
    cohort_ids = [p for p in study.frame["patient_id"] if p != target]
    outputs = {t: study.executor.load_output(t) for t in tokens}
    secrets = [o["salt"].encode() for o in outputs.values()] + [
        part for t, o in outputs.items() for part in cohort_parts(t, o["salt"], o["patients"])
    ]

    block_file = flowblock_devnet.data_dir / "devnet" / "flowblock" / "blocks.bin"
    seen = set()
    for function, raw, unpacked in transactions(block_file):
        assert not any(secret in raw for secret in secrets), f"a cohort part is in {function}"
        answer = json.loads(unpacked.chaincode_action.response.payload or b"null")
        token_id = answer.get("token_id") if isinstance(answer, dict) else None
        if function not in COMPUTATION_FUNCTIONS or token_id not in tokens:
            continue
        seen.add(function)
        for patient in cohort_ids:
            assert patient.encode() not in raw, f"{patient} is named by {function}"
        written = [json.loads(kv.value) for kv in _writes(unpacked) if kv.value[:1] == b"{"]
        event = chaincode_event_pb2.ChaincodeEvent.FromString(unpacked.chaincode_action.events)
        shown = [json.loads(unpacked.chaincode_action.response.payload), *written]
        shown += [json.loads(event.payload)] if event.payload else []
        assert sizes[token_id] not in set(numbers(shown)) - {0}, f"{function} states a size"
    assert {"Request", "Claim", "Complete", "consent:RecordUsage"} <= seen
    # Anyone holding the blocks still verifies the whole chain, private writes included.
    report = verify_chain(block_file)
    assert report.ok, [str(finding) for finding in report.findings]

    # The events as the Gateway streams them: token ids and states, never a count.
    with Gateway(flowblock_devnet.address, demo_world.identity("alice"), timeout=30) as gate:
        stream = gate.get_network("flowblock").chaincode_events(CHAINCODE_NAME, start_block=0)
        events = []
        with stream:
            for event in stream:
                events.append(json.loads(event.payload))
                if event.tx_id == _last_receipt_tx(block_file):
                    break
    ours = [e for e in events if e.get("token_id") in tokens]
    assert ours and all(
        "patients" not in e and "cohort_size" not in e for e in ours
    ), ours  # fmt: skip


def test_no_block_names_a_patient_not_even_their_own_signature(
    pool, s3_server, demo_world, flowblock_devnet
):
    """Patients enrolled, records registered, consent granted and revoked, a read served
    under consent and computations run: no block of it names any of the patients, not
    even the certificates that sign their own consent (which carry pseudonyms)."""
    study = Study(pool, s3_server, demo_world, vitals(30), consenting=25, prefix="named")
    patient = study.consenting[0]
    study.consent(patient).grant(study.dataset, "user:bob@University", "R", "care")
    bob = Client(study.pool.gateway(demo_world.identity("bob")))
    from flowblock.executor.reads import process_read
    from flowblock.testing.access import served

    served(
        study.pool(study.patients[patient], "access"),
        lambda: bob.records.read(patient, study.dataset),
        lambda entry: process_read(study.executor, entry["access_id"]),
    )
    study.consent(study.consenting[1]).revoke(study.dataset, "org:University", "C")
    study.ask("count", {"where": [["age", "<", 45]]}).wait(timeout=60)
    study.ask("mean", {"column": "systolic", "group_by": ["sex"]}).wait(timeout=60)

    block_file = flowblock_devnet.data_dir / "devnet" / "flowblock" / "blocks.bin"
    patients = [p.encode() for p in study.frame["patient_id"]]
    signed_by_patients = set()
    for function, raw, unpacked in transactions(block_file):
        named = [p.decode() for p in patients if p in raw]
        assert not named, f"{function} names {named[:3]}"
        signer = x509.load_pem_x509_certificate(unpacked.creator.id_bytes)
        if read_attributes(signer).get(ROLE_ATTRIBUTE) == "patient":
            signed_by_patients.add(function)
            shown = signer.public_bytes(serialization.Encoding.DER)
            assert not [p for p in patients if p in shown], "a certificate names a patient"
    # (The session's devnet holds other tests' blocks too: ours are among them.)
    assert {"consent:Grant", "consent:Revoke"} <= signed_by_patients


def test_only_the_data_organisations_peer_and_people_read_a_cohort(
    pool, s3_server, demo_world, flowblock_devnet
):
    study = Study(pool, s3_server, demo_world, vitals(40), consenting=40, prefix="opening")
    job = study.ask("count", {"where": [["age", "<", 45]]})  # 25 patients
    job.wait(timeout=60)

    def receipts(patient) -> str:
        return (
            study.pool(study.patients[patient], "consent").evaluate("MyReceipts", 10, "").decode()
        )

    assert job.token_id in receipts(study.consenting[0])  # age 20: in the cohort
    assert job.token_id not in receipts(study.consenting[-1])  # age 59: not in it
    # alice asked for it, yet may not open its cohort; nor may the University's admin, nor
    # a researcher of the Hospital itself.
    colleague = CertificateAuthority.load(demo_world.data_dir, "Hospital").issue(
        "carol", "researcher"
    )
    for who in (demo_world.identity("alice"), demo_world.identity("admin", org="University"),
                colleague):  # fmt: skip
        with pytest.raises(EndorseError, match=r"this is for Hospital|this needs the role"):
            study.pool(who, "consent").evaluate("Cohort", job.token_id)
    # Asked of the University's peer, even the Hospital's auditor is refused: it holds no part.
    auditor = demo_world.identity("auditor", org="Hospital")
    contract = Gateway(flowblock_devnet.address, auditor, timeout=30)
    with contract:
        network = contract.get_network("flowblock").get_contract(CHAINCODE_NAME)
        with pytest.raises(EndorseError, match="member"):
            network.evaluate("consent:Cohort", job.token_id, target_organisations=["UniversityMSP"])
        opened = json.loads(network.evaluate("consent:Cohort", job.token_id))
    patients = [p for part in opened["parts"] for p in json.loads(part)["patients"]]
    assert len(patients) == 25
    with Client(Gateway(flowblock_devnet.address, auditor, timeout=30)) as client:
        verification = client.verify(job.token_id)
    (check,) = [c for c in verification.checks if c.name == "cohort commitment"]
    assert check.ok and "25 patient(s)" in check.detail, verification


def _writes(unpacked) -> Iterator:
    from fabric_protos.ledger.rwset import rwset_pb2
    from fabric_protos.ledger.rwset.kvrwset import kv_rwset_pb2

    results = rwset_pb2.TxReadWriteSet.FromString(unpacked.chaincode_action.results)
    for namespace in results.ns_rwset:
        yield from kv_rwset_pb2.KVRWSet.FromString(namespace.rwset).writes


def _last_receipt_tx(block_file: Path) -> str:
    last = ""
    for function, _, unpacked in transactions(block_file):
        if function == "consent:RecordUsage":
            last = unpacked.channel_header.tx_id
    return last


def test_an_empty_cohort_and_a_small_one_are_refused_alike(pool, s3_server, demo_world):
    study = Study(pool, s3_server, demo_world, vitals(30), consenting=29, prefix="oracle")
    consenting, refusing = study.consenting[3], study.frame["patient_id"].iloc[-1]
    filters = {
        "one consenting patient": [["patient_id", "==", consenting]],
        "one patient who did not consent": [["patient_id", "==", refusing]],
        "nobody at all": [["age", "<", 0]],
        "a few patients": [["age", "<", 24]],
    }
    failures = {}
    for what, where in filters.items():
        job = study.ask("count", {"where": where}).refresh()
        assert job.status == "FAILED", what
        failures[what] = job.token["failure"]
    assert len({json.dumps(f, sort_keys=True) for f in failures.values()}) == 1, failures
    assert failures["nobody at all"]["rule"] == "min_cohort"


def test_a_ledger_of_the_earlier_format_is_refused_in_one_sentence(devnet, asset_chaincode):
    ledger_dir = devnet.data_dir / "devnet" / "flowblock"
    assert (ledger_dir / "FORMAT").read_text().strip() == "2"
    devnet.stop()
    (ledger_dir / "FORMAT").unlink()  # as every ledger written before private data
    blocks = (ledger_dir / "blocks.bin").read_bytes()
    again = DevnetProcess(devnet.data_dir, {"asset": asset_chaincode.address})
    with pytest.raises(RuntimeError):
        again.start(timeout=30)
    said = [line for line in again.output if line.startswith("flowblock:")]
    assert len(said) == 1 and "written by an earlier FlowBlock" in said[0], again.output
    assert "Recreate the data directory" in said[0]
    assert "Traceback" not in "".join(again.output)
    assert (ledger_dir / "blocks.bin").read_bytes() == blocks  # nothing read into, or changed
