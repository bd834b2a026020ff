"""The executor: the only place a computation touches data, and only as the ledger allows.

For each approved token of its organisation it: claims the token (once; a second claim
fails on the ledger); checks the installed algorithm is the code the catalogue vouches
for; works out the cohort from consent as it stands now; reads the dataset's parts
from S3, refusing any whose bytes no longer match their hash on the ledger (and naming
the record that changed); runs the algorithm on the cohort's rows in a sandboxed child
process with CPU and memory limits; applies the
disclosure policy; asks the ledger again who may compute, re-running without anyone
who revoked meanwhile; seals the result to the requester; completes the token with its
provenance; and records which patients it used. Any refusal fails the token, saying
why, and reveals nothing about the data.

How a cohort's rows are read (verified, current, undeleted, consented) is
:mod:`flowblock.executor.datasets`'s; this module runs the token around them.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable
from typing import Any

import pandas as pd
from cryptography import x509

from flowblock.canonical import canonical_json
from flowblock.cohorts import TRANSIENT_FIELD, cohort_parts, commitment, new_salt, part_hash
from flowblock.errors import (
    CommitError,
    DisclosureRefused,
    EndorseError,
    FlowBlockError,
    InvalidArgument,
)
from flowblock.executor.algorithms import Algorithm, load_algorithms
from flowblock.executor.algorithms.filters import (
    check_group_by,
    check_result_labels,
    check_where,
)
from flowblock.executor.datasets import Datasets, lean
from flowblock.executor.disclosure import DisclosurePolicy
from flowblock.executor.sandbox import Limits, run_sandboxed
from flowblock.executor.storage.objects import ObjectStore, sha256_hex
from flowblock.identity import Identity
from flowblock.identity.certificates import msp_id
from flowblock.ledger import Contract
from flowblock.ledger.collections import set_up_private_collection
from flowblock.schema import validate
from flowblock.sealing import digest, seal
from flowblock.vocabulary import ChaincodeStatus, Failure, FailureKind

log = logging.getLogger(__name__)
#: Where tokens' outputs and trained models are kept in the organisation's bucket, and
#: where rows written under write consent are (``<dataset>/writes/…``).
OUTPUTS, MODELS, WRITES = "outputs", "models", "writes"
#: Tokens whose usage receipts may not all be on the ledger yet: one empty object each,
#: written before the token is completed and removed once every receipt is recorded.
RECEIPTS_DUE = "receipts-due"

#: Commit codes of a transaction that lost a race, and the pauses before endorsing again.
CONFLICTS = ("MVCC_READ_CONFLICT", "PHANTOM_READ_CONFLICT")
CONFLICT_RETRY_DELAYS = (0.05, 0.1, 0.2, 0.4, 0.8)
#: How many times a computation is re-run when patients revoke while it runs.
MAX_RERUNS = 2


def output_key(token_id: str, output_hash: str) -> str:
    """Where a token's output is kept: named by its hash, so that a second run of the same
    token (a task delivered again while the first still runs) never overwrites the output
    whose hash the ledger recorded (DP noise and training differ from run to run)."""
    return f"{OUTPUTS}/{token_id}/{output_hash}.json"


class Executor:
    """One organisation's data side, over its ledger contract and its S3 bucket."""

    def __init__(
        self,
        contract: Contract,
        store: ObjectStore,
        organisation: str,
        policy: DisclosurePolicy | None = None,
        algorithms: dict[tuple[str, str], type[Algorithm]] | None = None,
        limits: Limits | None = None,
    ) -> None:
        self.contract = contract
        self.store = store
        self.organisation = organisation
        self.policy = policy or DisclosurePolicy()
        self.algorithms = algorithms if algorithms is not None else load_algorithms()
        self.limits = limits or Limits()
        #: Every row a token, read or write uses comes from here (parts cached between them).
        self.datasets = Datasets(contract, store, organisation)

    def ledger(self, function: str, *args: Any, submit: bool = False, **options: Any) -> Any:
        """Evaluate (or ``submit``) a FlowBlock chaincode function; its JSON result.
        ``options``: the Contract's (``transient``, ``endorsing_organisations``).

        A submit that lost a race at commit (another transaction changed what it read:
        two results charging one budget, say) is endorsed again on the new state, a few
        times, before it counts as failed."""
        if not submit:
            payload = self.contract.evaluate(function, *args, **options)
            return json.loads(payload) if payload else None
        delays = iter(CONFLICT_RETRY_DELAYS)
        while True:
            try:
                payload = self.contract.submit(function, *args, **options)
                return json.loads(payload) if payload else None
            except CommitError as error:
                delay = next(delays, None)
                if error.code not in CONFLICTS or delay is None:
                    raise
                time.sleep(delay * (1 + random.random()))  # noqa: S311 - jitter, apart from its rival

    # -- one token ---------------------------------------------------------------------

    def process(self, token_id: str, *, resume: bool = False) -> str:
        """Run one approved token to DONE or FAILED; returns the final status.

        With ``resume`` (after a restart, or a task delivered again because its worker
        died), a token this executor had claimed is taken up where it was left: a
        killed worker leaves its token RUNNING, and only its claimant can finish it.
        """
        if resume:
            token = self.ledger("GetToken", token_id)
            mine = token["claimed_by"] == self.identity.key
            if token["status"] == "RUNNING" and mine:
                return self._run(token)
            if mine:
                self.record_receipts_due(token)  # stopped after completing, before these?
            if token["status"] != "APPROVED":
                return token["status"]
        try:
            token = self.ledger("Claim", token_id, submit=True)
        except (EndorseError, CommitError) as error:
            # Claimed by another executor first: refused by the chaincode (409) if theirs was
            # already committed, invalidated by MVCC if both claims were in flight.
            status = getattr(error, "chaincode_status", None)
            lost = isinstance(error, CommitError) or status == ChaincodeStatus.CONFLICT
            if not lost and status == ChaincodeStatus.BUDGET_EXHAUSTED:
                # The ε budget ran out since approval: refused before any data is read.
                failure = Failure.refused(status, error.chaincode_message)
                self.ledger("Fail", token_id, failure.to_json(), submit=True)
                return "FAILED"
            if not lost:
                raise
            token = self.ledger("GetToken", token_id)
            if token["status"] == "RUNNING" and token["claimed_by"] == self.identity.key:
                return self._run(token)  # our own claim had committed after all
            return token["status"]
        return self._run(token)

    def publish_certificate(self) -> None:
        """Let writers seal rows to this executor: its certificate, on the ledger; and give
        the organisation's private collection its secret, the first time."""
        self.ledger("access:PublishExecutorCertificate", submit=True)
        set_up_private_collection(self.contract)

    @property
    def identity(self) -> Identity:
        """The executor's own identity: it signs, and rows sealed to it open with it."""
        return self.contract.network.gateway.identity

    def _run(self, token: dict) -> str:
        token_id = token["token_id"]
        try:
            self._complete(token)
            return "DONE"
        except EndorseError as refusal:  # the chaincode said no: its words, once
            failure = Failure.refused(refusal.chaincode_status, refusal.chaincode_message)
        except DisclosureRefused as refusal:
            failure = Failure(FailureKind.DISCLOSURE_REFUSED, str(refusal), rule=refusal.rule)
        except FlowBlockError as refusal:
            failure = Failure(FailureKind.COMPUTATION_FAILED, str(refusal))
        except Exception:
            log.exception("token %s failed in the executor", token_id)
            failure = Failure(
                FailureKind.COMPUTATION_FAILED,
                "the computation failed on the data side; the data organisation has the details.",
            )
        status = self.fail_unless_ended(
            "Fail", lambda: self.ledger("GetToken", token_id)["status"], token_id, failure
        )
        if status == "FAILED":  # nothing of it was released: no receipts are due
            self.store.delete(f"{RECEIPTS_DUE}/{token_id}")
        return status

    def fail_unless_ended(
        self, fail: str, status_of: Callable[[], str], object_id: str, failure: Failure,
        *, private: bool = False,
    ) -> str:  # fmt: skip
        """Fail a token or request (``fail``) with a typed failure, unless another run of it
        (its task delivered again while this one ran) ended it first; the status the ledger
        keeps, from ``status_of``. A ``private`` one is failed as :meth:`private` submits."""
        try:
            if private:
                self.private(fail, object_id, failure.to_json())
            else:
                self.ledger(fail, object_id, failure.to_json(), submit=True)
        except (EndorseError, CommitError):
            status = status_of()
            if status in ("DONE", "FAILED"):
                return status
            raise
        return "FAILED"

    def private(self, function: str, *args: Any, transient: dict | None = None) -> Any:
        """Submit a function that keeps what it writes in this organisation's private
        collection: endorsed by this organisation's peers alone (the collection's policy),
        the only ones that hold it."""
        return self.ledger(
            function, *args, submit=True, transient=transient,
            endorsing_organisations=[msp_id(self.organisation)],
        )  # fmt: skip

    def access(self, access_id: str) -> dict:
        """A read or write request this organisation holds."""
        return self.ledger("access:GetAccess", self.organisation, access_id)

    def _complete(self, token: dict) -> None:
        algorithm = self._algorithm(token)
        self.policy.admit(token, algorithm)  # before any data is read
        if algorithm.input_kind == "tokens":
            result, patients = self._compute_from_inputs(token, algorithm)
        else:
            result, patients = self._compute(token, algorithm)
        # The whole output stays data-side, for later tokens of a flow; what is released
        # is the result, or for a labelling step only that its labels were kept.
        salt = new_salt()  # kept with the output: the receipts are recorded from it
        output = canonical_json({"value": result, "patients": patients, "salt": salt})
        output_hash = sha256_hex(output)
        self.store.put(output_key(token["token_id"], output_hash), output)
        released = {"kept_data_side": True} if algorithm.disclosure_class == "labels" else result
        plaintext = canonical_json(
            {"token_id": token["token_id"], "method": token["method"],
             "version": token["version"], "value": released}
        )  # fmt: skip
        reader = x509.load_pem_x509_certificate(token["requester_certificate"].encode())
        self.store.put(f"{RECEIPTS_DUE}/{token['token_id']}", b"")
        hashes = [part_hash(part) for part in cohort_parts(token["token_id"], salt, patients)]
        self.ledger(
            "Complete",
            token["token_id"],
            json.dumps(
                {
                    "encrypted": seal(plaintext, reader.public_key(), token["token_id"]),
                    "result_hash": digest(plaintext),
                    "cohort_commitment": commitment(hashes),
                    "cohort_parts": hashes,
                    "cohort_size": self.policy.published_cohort_size(token, patients),
                    "code_hash": algorithm.code_hash(),
                    "policy_hash": self.policy.hash,
                    "output_hash": output_hash,
                    "epsilon": token["epsilon"],
                }
            ),
            submit=True,
        )
        self._record_receipts(token["token_id"], patients, salt)

    def record_receipts_due(self, token: dict) -> None:
        """Finish recording a completed token's usage receipts, if a stop interrupted it.

        The patients are those of the output whose hash the ledger recorded at completion
        (recording a receipt twice writes the same entry), so every patient whose data a
        released result used gets a receipt, however the executor stopped.
        """
        token_id = token["token_id"]
        if not self.store.exists(f"{RECEIPTS_DUE}/{token_id}"):
            return
        if token["status"] == "DONE":
            output = self.load_output(token_id)
            self._record_receipts(token_id, output["patients"], output["salt"])
        elif token["status"] != "RUNNING":
            self.store.delete(f"{RECEIPTS_DUE}/{token_id}")  # nothing of it was released

    def _record_receipts(self, token_id: str, patients: list[str], salt: str) -> None:
        """Record the cohort, part by part, in this organisation's private collection: each
        part travels as transient data to this organisation's peer alone, which alone
        endorses (the collection's policy), so no other organisation ever holds it."""
        for part in cohort_parts(token_id, salt, patients):
            self.private("consent:RecordUsage", token_id, transient={TRANSIENT_FIELD: part})
        self.store.delete(f"{RECEIPTS_DUE}/{token_id}")

    def _compute(self, token: dict, algorithm: type[Algorithm]) -> tuple[Any, list[str]]:
        """Run an algorithm on the consenting cohort's rows; the result and its patients.

        For an images dataset the rows are its manifest, and each row of the cohort gets
        its image (checked against its hash); a model an earlier token trained is given
        to the algorithm as its input, and a model this one trains is kept data-side.
        """
        meta = self.ledger("records:GetDataset", token["dataset"])
        params = token["params"]
        where = check_where(params.get("where", []), meta["schema"])
        check_group_by(params.get("group_by", []), meta["schema"])
        check_result_labels(algorithm.group_columns(params), params, meta["schema"])
        images = algorithm.input_kind == "images"
        inputs = [{"model": self.load_model(t)} for t in token["inputs"]] if images else []
        cohort = self.datasets.cohort(token)
        for _ in range(MAX_RERUNS + 1):
            # Read again on a rerun: a cached part is not fetched again, and a record
            # deleted meanwhile is left out too.
            rows = self.datasets.cohort_rows(
                token["dataset"], cohort, where=where, with_patient_hashes=not images
            )
            # Too small is refused here, before anything runs, in one sentence whatever
            # the size (none included): no failure or timing tells empty from small.
            self.policy.require_cohort(token, len(rows.patients))
            given = (
                rows.frame.assign(image=self.datasets.images_of(rows.frame))
                if images
                else lean(rows.frame, meta["schema"])
            )
            artifacts: list[bytes] = []
            result = run_sandboxed(
                algorithm, given, params, self.limits, self._progress_reporter(token["token_id"]),
                inputs, artifacts,
            )  # fmt: skip
            protected = self.policy.protect(token, algorithm, result, rows.frame, rows.patients)
            latest = self.datasets.cohort(token)  # consent is checked again just before release
            if latest == cohort:
                result = self.policy.record(token, protected, self.store)  # differencing
                if artifacts:
                    result = {**result, "model": self._keep_model(token["token_id"], artifacts[0])}
                return result, rows.patients
            cohort = latest
        raise FlowBlockError("consent kept changing while the computation ran; try again.")

    def _keep_model(self, token_id: str, data: bytes) -> dict:
        """Store a trained model for later tokens, named by its hash (as outputs are)."""
        object_key = f"{MODELS}/{token_id}/{sha256_hex(data)}.keras"
        return {"object_key": object_key, "sha256": self.store.put(object_key, data)}

    def load_model(self, token_id: str) -> bytes:
        """The model an earlier token trained, if its bytes still match their hash."""
        value = self.load_output(token_id)["value"]
        model = value.get("model") if isinstance(value, dict) else None
        if not isinstance(model, dict):
            raise FlowBlockError(f"input token {token_id[:12]}… did not train a model.")
        return self.store.get_verified(model["object_key"], model["sha256"])

    def _compute_from_inputs(
        self, token: dict, algorithm: type[Algorithm]
    ) -> tuple[Any, list[str]]:
        """Run a flow step on the outputs of earlier tokens, kept data-side."""
        outputs = [self.load_output(token_id) for token_id in token["inputs"]]
        if not outputs:
            raise FlowBlockError(f"{token['method']} needs at least one input token.")
        patients = sorted({p for output in outputs for p in output["patients"]})
        if sum(len(output["patients"]) for output in outputs) != len(patients):
            # The same patient counted through several inputs weighs more than once: a
            # rounded total over k copies is exact to 1/k, and copies of cohorts that
            # differ by one patient tell that patient's label.
            raise DisclosureRefused(
                "overlapping_inputs",
                f"the inputs of {token['method']} share patients; a flow step takes "
                "inputs over cohorts that do not overlap.",
            )
        result = run_sandboxed(
            algorithm, pd.DataFrame(), token["params"], self.limits,
            self._progress_reporter(token["token_id"]), [o["value"] for o in outputs],
        )  # fmt: skip
        protected = self.policy.protect(token, algorithm, result, None, patients)
        return self.policy.record(token, protected, self.store), patients

    def load_output(self, token_id: str) -> dict:
        """An earlier token's output, if it still matches the hash its token recorded."""
        earlier = self.ledger("GetToken", token_id)
        expected = (earlier.get("result") or {}).get("output_hash")
        if not expected:
            raise FlowBlockError(f"token {token_id[:12]}… kept no output for a flow.")
        data = self.store.get_verified(output_key(token_id, expected), expected)
        return json.loads(data)

    def _progress_reporter(self, token_id: str):
        """Post an algorithm's progress to the ledger, at most every tenth of the way."""
        reported = [0]

        def report(fraction: float) -> None:
            percent = max(0, min(100, int(fraction * 100)))
            if percent >= reported[0] + 10 and percent < 100:
                reported[0] = percent
                try:
                    self.ledger("ReportProgress", token_id, percent, "running", submit=True)
                except FlowBlockError:  # progress is a courtesy; the result is what counts
                    log.warning("could not post the progress of %s", token_id)

        return report

    def _algorithm(self, token: dict) -> type[Algorithm]:
        algorithm = self.algorithms.get((token["method"], token["version"]))
        if algorithm is None:
            raise FlowBlockError(
                f"{token['method']}@{token['version']} is not installed on the data side."
            )
        if algorithm.code_hash() != token["code_hash"]:
            raise FlowBlockError(
                f"the installed code of {token['method']}@{token['version']} is not the code "
                "the catalogue published."
            )
        try:
            validate(token["params"], algorithm.parameters)
        except InvalidArgument as error:
            raise FlowBlockError(str(error)) from None
        return algorithm
