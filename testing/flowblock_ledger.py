"""Driving FlowBlock's chaincode the same way in-process and on a devnet.

A test written against :class:`Driver` runs unchanged on a :class:`LocalDriver` (the
contracts in-process, milliseconds) and a :class:`GatewayDriver` (a real devnet through
the Gateway client), so every rule is proven at both layers. Both raise
:class:`Refusal` with the chaincode's status and message.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

import pytest

from flowblock.chaincode.contracts import CHAINCODE_NAME, flowblock_chaincode
from flowblock.cohorts import TRANSIENT_FIELD, cohort_parts, commitment, part_hash
from flowblock.consent import grant_transient
from flowblock.errors import EndorseError
from flowblock.identity import CertificateAuthority, Identity
from flowblock.ledger import Gateway
from flowblock.testing.chaincode import ChaincodeRefused, LocalLedger
from flowblock.vocabulary import (
    ACCESS_FIELD,
    CONSENT_FIELD,
    ENROL_FIELD,
    RECORDS_FIELD,
    SECRET_FIELD,
)


class Refusal(Exception):
    """The chaincode refused: ``status`` (400, 403, 404, 409, 402) and its message."""

    def __init__(self, status: int | None, message: str) -> None:
        self.status = status
        self.message = message
        super().__init__(f"{status}: {message}")


class Driver(Protocol):
    """``options``: ``transient`` (name -> bytes) and ``endorsing_organisations`` (MSP ids)."""

    def submit(self, who: Identity, function: str, *args: Any, **options: Any) -> Any: ...
    def evaluate(self, who: Identity, function: str, *args: Any, **options: Any) -> Any: ...


def _decode(payload: bytes) -> Any:
    return json.loads(payload) if payload else None


class LocalDriver:
    """The FlowBlock chaincode in-process on a LocalLedger."""

    def __init__(self, directory: Path) -> None:
        self.ledger = LocalLedger(flowblock_chaincode(), directory, name=CHAINCODE_NAME)

    def _run(self, submit: bool, who: Identity, function: str, args: tuple, options) -> Any:
        # In-process one peer runs the call: the caller's own, or the first organisation
        # asked for; no endorsement policy is checked.
        chosen = options.pop("endorsing_organisations", None) or options.pop(
            "target_organisations", None
        )
        if chosen:
            options["peer_organisation"] = chosen[0]
        if options.get("transient"):  # as the Gateway client sends it: bytes
            options["transient"] = {
                name: value.encode() if isinstance(value, str) else value
                for name, value in options["transient"].items()
            }
        try:
            return _decode(self.ledger.invoke(who, function, *args, submit=submit, **options))
        except ChaincodeRefused as refused:
            raise Refusal(refused.status, refused.message) from None

    def submit(self, who: Identity, function: str, *args: Any, **options: Any) -> Any:
        return self._run(True, who, function, args, options)

    def evaluate(self, who: Identity, function: str, *args: Any, **options: Any) -> Any:
        return self._run(False, who, function, args, options)

    def close(self) -> None:
        self.ledger.close()


class GatewayDriver:
    """The FlowBlock chaincode on a running devnet, through the Gateway client."""

    def __init__(self, address: str, channel: str = "flowblock") -> None:
        self.address = address
        self.channel = channel
        self._gateways: dict[bytes, Gateway] = {}

    def _contract(self, who: Identity):
        pem = who.certificate_pem()
        if pem not in self._gateways:
            self._gateways[pem] = Gateway(self.address, who, timeout=30)
        return self._gateways[pem].get_network(self.channel).get_contract(CHAINCODE_NAME)

    def _run(self, submit: bool, who: Identity, function: str, args: tuple, options) -> Any:
        contract = self._contract(who)
        try:
            call = contract.submit if submit else contract.evaluate
            return _decode(call(function, *args, **options))
        except EndorseError as error:
            raise Refusal(error.chaincode_status, error.chaincode_message) from None

    def submit(self, who: Identity, function: str, *args: Any, **options: Any) -> Any:
        return self._run(True, who, function, args, options)

    def evaluate(self, who: Identity, function: str, *args: Any, **options: Any) -> Any:
        return self._run(False, who, function, args, options)

    def close(self) -> None:
        for gateway in self._gateways.values():
            gateway.close()


# -- building a small world on the ledger ---------------------------------------------

VITALS_SCHEMA = {
    "columns": {
        "patient_id": "string",
        "age": "integer",
        "sex": {"type": "category", "values": ["F", "M"]},
        "systolic": "integer",
        "diastolic": "integer",
        "heart_rate": "integer",
        "bmi": "number",
        "smoker": "boolean",
        "diagnosis": "category",
    }
}


def method_spec(name: str = "mean", version: str = "1.0", **overrides: Any) -> dict:
    """A catalogue entry for tests; the code hash is derived from the name and version."""
    return {
        "name": name,
        "version": version,
        "description": f"The {name} of a column.",
        "parameters": {
            "type": "object",
            "properties": {
                "column": {"type": "string", "minLength": 1},
                "epsilon": {"type": "number", "minimum": 0},
            },
            "required": ["column"],
            "additionalProperties": False,
        },
        "input_kind": "tabular",
        "output_kind": "value",
        "disclosure_class": "statistics",
        "code_hash": hashlib.sha256(f"{name}@{version}".encode()).hexdigest(),
        **overrides,
    }


def records_for(patients: Iterable[str], dataset: str = "vitals", start: int = 0) -> list[dict]:
    """One record per patient, each with a distinct object and hash."""
    return [
        {
            "record_id": f"{dataset}-{start + n:06d}",
            "patient": patient,
            "object_key": f"{dataset}/{start + n:06d}.json",
            "sha256": hashlib.sha256(f"{dataset}/{start + n}".encode()).hexdigest(),
        }
        for n, patient in enumerate(patients)
    ]


_names = itertools.count()


class World:
    """The demo people, and a dataset and method of a test's own, over any driver.

    Tests of the chaincode's rules build on it; ``setup`` registers a dataset with
    records, publishes a method, and records consents and rules as asked.
    """

    def __init__(self, driver, demo_world) -> None:
        self.driver = driver
        self.people = demo_world
        n = next(_names)
        self.dataset = f"vitals-{n}"
        self.method = f"mean{n}"
        self.hospital_admin = demo_world.identity("admin", org="Hospital")
        self.university_admin = demo_world.identity("admin", org="University")
        self.executor = demo_world.identity("executor", org="Hospital")
        self.other_executor = demo_world.identity("executor", org="University")
        self.steward = demo_world.identity("steward")
        self.auditor = demo_world.identity("auditor")
        self.alice = demo_world.identity("alice")
        self.bob = demo_world.identity("bob")
        self.patients = [demo_world.identity(f"patient{i}") for i in (1, 2, 3)]
        self.hospital_ca = CertificateAuthority.load(demo_world.data_dir, "Hospital")

    def submit(self, who, function, *args, **options):
        return self.driver.submit(who, function, *args, **options)

    def evaluate(self, who, function, *args, **options):
        return self.driver.evaluate(who, function, *args, **options)

    def refused(
        self, status: int, match: str, who, function, *args, submit: bool = True, **options
    ):
        """Assert the call is refused with ``status``, in one sentence containing ``match``."""
        call = self.submit if submit else self.evaluate
        with pytest.raises(Refusal) as caught:
            call(who, function, *args, **options)
        assert caught.value.status == status, caught.value
        assert match in caught.value.message, caught.value
        assert "\n" not in caught.value.message
        return caught.value

    def setup(self, *, consent: bool = True, rules: dict | None = None) -> World:
        self.set_up_collection()
        self.enrol(*self.patients)
        self.submit(
            self.steward, "records:RegisterDataset", self.dataset, "tabular",
            json.dumps(VITALS_SCHEMA),
        )  # fmt: skip
        names = [p.patient for p in self.patients]
        self.register_records(records_for(names, self.dataset))
        self.submit(self.hospital_admin, "catalogue:Publish", json.dumps(method_spec(self.method)))
        if consent:
            for patient in self.patients[:2]:
                self.grant(patient, "org:University", "C", "research")
        if rules is not None:
            self.submit(self.hospital_admin, "SetRules", json.dumps(rules))
        return self

    def register_records(self, records: list[dict]):
        """A steward's batch of records, as an import sends it: transient, to the
        Hospital's peers alone."""
        return self.private(
            self.steward, "records:RegisterRecords", self.dataset,
            transient={RECORDS_FIELD: json.dumps(records)},
        )  # fmt: skip

    def delete_record(self, record_id: str, reason: str = "entered in error"):
        spec = {"record_id": record_id, "reason": reason}
        return self.private(
            self.steward, "records:DeleteRecord", self.dataset,
            transient={RECORDS_FIELD: json.dumps(spec)},
        )  # fmt: skip

    def enrol(self, *patients) -> None:
        """Record which patient each certificate stands for, as the Hospital does when
        it issues them (a patient's certificate carries a pseudonym)."""
        batch = {patient.name: patient.patient for patient in patients}
        self.private(self.steward, "consent:Enrol", transient={ENROL_FIELD: json.dumps(batch)})

    def set_up_collection(self) -> None:
        """Give the Hospital's private collection its secret, as its executor does at
        start (once: it may be set up already)."""
        secret = b"a collection secret of 32 bytes!"
        try:
            self.private(self.executor, "consent:SetUpCollection", transient={SECRET_FIELD: secret})
        except Refusal as refusal:
            if refusal.status != 409:
                raise

    def grant(self, patient, to, rights, purpose, until="", record_id="", dataset=None):
        """A patient's grant, as ``client.consent.grant`` makes it."""
        fields = grant_transient(dataset or self.dataset, to, rights, purpose, until, record_id)
        granted = self.private(patient, "consent:Grant", transient=fields)
        return self.evaluate(patient, "consent:GetGrant", granted["grant_id"])

    def revoke(self, patient, to, rights, record_id="", dataset=None):
        spec = {"dataset": dataset or self.dataset, "to": to, "rights": rights,
                "record_id": record_id}  # fmt: skip
        revoked = self.consent(patient, "consent:Revoke", spec)["grants"]
        return [self.evaluate(patient, "consent:GetGrant", grant_id) for grant_id in revoked]

    def private(self, who, function: str, *args, **options):
        """A call that keeps what it writes in the caller's organisation's private
        collection: endorsed by that organisation's peers alone."""
        return self.submit(who, function, *args, endorsing_organisations=[who.msp_id], **options)

    def consent(self, patient, function: str, spec: dict):
        """A consent call: its fields transient, on the patient's own peers alone."""
        return self.private(patient, function, transient={CONSENT_FIELD: json.dumps(spec)})

    def access(self, who, function: str, spec: dict):
        """A read or write request, its fields transient, on the Hospital's peers alone."""
        return self.submit(
            who, function, transient={ACCESS_FIELD: json.dumps(spec)},
            endorsing_organisations=["HospitalMSP"],
        )  # fmt: skip

    def request(self, who=None, params=None, purpose="hypertension study", inputs="[]"):
        return self.submit(
            who or self.alice, "Request", self.method, "", self.dataset,
            json.dumps(params or {"column": "age"}), purpose, inputs,
        )  # fmt: skip

    def result(self, **overrides):
        """A completed result; its cohort commitment binds an opaque cohort of tests that
        never record one (``complete`` binds a real one)."""
        parts = [part_hash(b"an opaque cohort")]
        return json.dumps(
            {
                "encrypted": "ZW5jcnlwdGVk",
                "result_hash": "1" * 64,
                "cohort_commitment": commitment(parts),
                "cohort_parts": parts,
                "cohort_size": None if overrides.get("epsilon") else 2,  # none under DP
                "code_hash": hashlib.sha256(f"{self.method}@1.0".encode()).hexdigest(),
                "policy_hash": "3" * 64,
                **overrides,
            }
        )

    def complete(self, token_id: str, patients: list[str], **overrides) -> list[bytes]:
        """Complete a running token with ``patients`` as its cohort; the cohort's parts,
        for ``record_usage``."""
        parts = cohort_parts(token_id, "5" * 64, patients)
        hashes = [part_hash(part) for part in parts]
        spec = {"cohort_parts": hashes, "cohort_commitment": commitment(hashes), **overrides}
        self.submit(self.executor, "Complete", token_id, self.result(**spec))
        return parts

    def record_usage(self, token_id: str, part: bytes, who=None):
        """Record one part of a cohort as the executor does: transient, its own peer only."""
        return self.submit(
            who or self.executor, "consent:RecordUsage", token_id,
            transient={TRANSIENT_FIELD: part}, endorsing_organisations=["HospitalMSP"],
        )  # fmt: skip

    def approved(self, **request):
        token = self.request(**request)
        if token["status"] == "PENDING":
            token = self.submit(self.hospital_admin, "Approve", token["token_id"])
        return token

    def running(self, **request):
        return self.submit(self.executor, "Claim", self.approved(**request)["token_id"])

    def token(self, token_id, who=None):
        return self.evaluate(who or self.alice, "GetToken", token_id)
