"""``flowblock.Client``: what researchers, patients and admins call, from any front end.

The magics, the dashboards and scripts all use this one class; it speaks to the ledger
only (never to S3 or the executor), and turns the chaincode's refusals into FlowBlock's
errors, each one sentence.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from traitlets import Unicode
from traitlets.config import Configurable

from flowblock.canonical import nested_deeper_than, too_deep
from flowblock.config import config_from_environment
from flowblock.consent import Consent
from flowblock.errors import (
    AccessDenied,
    BudgetExhausted,
    ComputationFailed,
    ConfigError,
    ConsentDenied,
    DisclosureRefused,
    EndorseError,
    FlowBlockError,
    InvalidArgument,
    RequestRefused,
)
from flowblock.identity import Identity, msp_id
from flowblock.ledger import Gateway, all_pages
from flowblock.sealing import digest, open_sealed
from flowblock.vocabulary import (
    ACCESS_FIELD,
    MAX_WRITE_RECORDS,
    REQUEST_KEY_FIELD,
    ChaincodeStatus,
    Failure,
    FailureKind,
)

if TYPE_CHECKING:
    from flowblock.verification import Verification

CHAINCODE = "flowblock"
TERMINAL = ("DONE", "FAILED", "DENIED", "EXPIRED")
#: A token's statuses in the order its life passes through them (for same-second changes).
_STAGE = {"PENDING": 0, "APPROVED": 1, "RUNNING": 2, "DONE": 3, "FAILED": 3, "DENIED": 3,
          "EXPIRED": 3}  # fmt: skip


class ClientSettings(Configurable):
    """Where a notebook's client connects: what a spawner puts in its environment
    (``FLOWBLOCK_GATEWAY``, ``FLOWBLOCK_WALLET``, ``FLOWBLOCK_TLS_CA``; flowblock.config)."""

    gateway = Unicode("", help="host:port of a Fabric Gateway (a peer).").tag(config=True)
    wallet = Unicode("", help="Path of your wallet (an MSP folder).").tag(config=True)
    tls_ca = Unicode("", help="PEM file of the CA of the gateway's TLS; empty: no TLS.").tag(
        config=True
    )


def refusal(error: EndorseError) -> FlowBlockError:
    """The FlowBlock error for a chaincode refusal, chosen by its status (the words are the
    chaincode's own, for people)."""
    status, message = error.chaincode_status, error.chaincode_message
    if status == ChaincodeStatus.FORBIDDEN:
        return AccessDenied(_sentence(message))
    if status == ChaincodeStatus.BUDGET_EXHAUSTED:
        return BudgetExhausted(_sentence(message))
    if status is not None:
        return RequestRefused(_sentence(message), status)
    return error


def failed(object_id: str, ended: dict) -> FlowBlockError:
    """The FlowBlock error for a token or a read or write request that ended without a
    result, chosen by the kind of its failure (flowblock.vocabulary), never by its words.

    A token denied or expired, or one failed before failures were typed, is a
    ComputationFailed with the reason the ledger keeps.
    """
    failure = Failure.of(ended.get("failure")) if ended["status"] == "FAILED" else None
    if failure is None:
        reason = ended.get("reason") or "no reason given"
        return ComputationFailed(object_id, ended["status"], reason)
    if failure.kind == FailureKind.DISCLOSURE_REFUSED:
        return DisclosureRefused(failure.rule, failure.message)
    if failure.kind == FailureKind.BUDGET_EXHAUSTED:
        return BudgetExhausted(_sentence(failure.message))
    if failure.kind == FailureKind.CONSENT_REVOKED:
        return ConsentDenied(_sentence(failure.message))
    return ComputationFailed(object_id, ended["status"], failure.message)


def _sentence(message: str) -> str:
    return message if message.endswith(("?", ".")) else message + "."


@dataclass
class Result:
    """A computation's result, opened by its requester, with what the ledger says of it."""

    token_id: str
    value: Any
    provenance: dict = field(repr=False)

    @property
    def cohort_size(self) -> int | None:
        """The cohort size as released: rounded like every count, none under DP."""
        return self.provenance["result"]["cohort_size"]


class Job:
    """A computation token, as its requester follows it."""

    def __init__(self, client: Client, token: dict, since_block: int | None = None) -> None:
        self.client = client
        self.token = token
        #: The block the request was committed in, when known: events are read from it.
        self.since_block = since_block
        self._stop = threading.Event()
        self._events: Any = None

    def __repr__(self) -> str:
        token = self.token
        cohort = (token.get("result") or {}).get("cohort_size")
        shown = f"{token['status']}" + (f", cohort {cohort}" if cohort is not None else "")
        return (
            f"<Job {token['method']} on {token['dataset']}, token {self.token_id[:12]}…: {shown}>"
        )

    @property
    def token_id(self) -> str:
        return self.token["token_id"]

    @property
    def status(self) -> str:
        return self.token["status"]

    def refresh(self) -> Job:
        self.token = self.client._evaluate("GetToken", self.token_id)
        return self

    def wait(
        self, timeout: float = 60.0, on_update: Callable[[dict], object] | None = None
    ) -> Result:
        """Wait for the result; raises what :func:`failed` says if it was refused or failed
        (ComputationFailed, DisclosureRefused, BudgetExhausted).

        It follows the ledger's events for this token rather than polling, so the result
        is fetched as soon as the block that completes it is committed. ``on_update`` is
        called with the token each time it changes (a front end's live status).
        """

        def changed() -> str:
            self.refresh()
            if on_update is not None:
                on_update(self.token)
            return self.status

        try:
            return self._follow(timeout, changed)
        finally:
            self._stop.clear()  # a stop asked for ended this wait; the next one may go on

    def _follow(self, timeout: float, changed: Callable[[], str]) -> Result:
        if changed() in TERMINAL:
            return self.result()
        if self.since_block is None:  # a job found by id: where its events start is unknown
            deadline = time.monotonic() + timeout
            while changed() not in TERMINAL and time.monotonic() < deadline:
                if self._stop.wait(0.2):
                    break
        else:
            network = self.client.gateway.get_network(self.client.channel)
            events = self._events = network.chaincode_events(
                CHAINCODE, start_block=self.since_block
            )
            if self._stop.is_set():
                events.close()
            timer = threading.Timer(timeout, events.close)
            timer.start()
            try:
                for event in events:
                    if self.token_id.encode() in event.payload and changed() in TERMINAL:
                        break
            finally:
                timer.cancel()
                events.close()
        if self.refresh().status not in TERMINAL:
            raise TimeoutError(
                f"computation {self.token_id[:12]}… is still {self.status} after {timeout:g} s."
            )
        return self.result()

    def stop_waiting(self) -> None:
        """End a ``wait`` running in another thread (it raises TimeoutError); the token goes
        on. Front ends wait in a thread and call this on Ctrl-C, so that the interrupt never
        lands inside a gRPC call."""
        self._stop.set()
        if self._events is not None:
            self._events.close()

    def result(self) -> Result:
        """The decrypted result, once the token carrying it is endorsed by the data
        organisation's peer and your own, its hash matches and it names this token."""
        token = self.token
        if token["status"] == "DONE":
            from flowblock.verification import endorsed_token  # it builds on this module

            token, _, problems = endorsed_token(self.client, self.token_id)
            if problems:
                raise FlowBlockError(
                    f"the result of token {self.token_id[:12]} is not shown: {problems[0]}."
                )
        if token["status"] != "DONE":
            raise failed(self.token_id, token)
        sealed = token["result"]["encrypted"]
        plaintext = open_sealed(sealed, self.client.identity, self.token_id)
        if digest(plaintext) != token["result"]["result_hash"]:
            raise FlowBlockError("the result does not match the hash recorded on the ledger.")
        released = json.loads(plaintext)
        if not isinstance(released, dict):
            released = {}
        named = (released.get("token_id"), released.get("method"), released.get("version"))
        if named != (self.token_id, token["method"], token["version"]) or "value" not in released:
            raise FlowBlockError(f"the result sealed to token {self.token_id[:12]} is not its own.")
        value = released["value"]
        provenance = {
            **token,
            "result": {k: v for k, v in token["result"].items() if k != "encrypted"},
        }
        return Result(self.token_id, value, provenance)


class Records:
    """A patient's raw records, for those the patient let read or write them."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def read(
        self, patient: str, dataset: str, purpose: str = "care", timeout: float = 60.0
    ) -> list[dict]:
        """The patient's rows in ``dataset``, if their read consent covers you; logged."""
        organisation = self.client._evaluate("records:GetDataset", dataset)["organisation"]
        spec = {"dataset": dataset, "patient": patient, "purpose": purpose}
        access = self._settled(self._request("access:RequestRead", organisation, spec), timeout)
        access_id = access["access_id"]
        plaintext = open_sealed(access["result"]["encrypted"], self.client.identity, access_id)
        if digest(plaintext) != access["result"]["result_hash"]:
            raise FlowBlockError("the records do not match the hash recorded on the ledger.")
        return json.loads(plaintext)["rows"]

    def write(
        self,
        patient: str,
        dataset: str,
        rows: list[dict],
        purpose: str = "care",
        timeout: float = 60.0,
    ) -> dict:
        """Add records for the patient, or correct them (rows naming their ``record_id``).

        Needs the patient's write consent. The rows are sealed to the data organisation's
        executor, so the ledger every organisation keeps never holds them in the clear.
        Returns what was registered: counts and the record ids.
        """
        from cryptography import x509

        from flowblock.canonical import canonical_json
        from flowblock.sealing import seal, write_context

        if not isinstance(rows, list) or not 1 <= len(rows) <= MAX_WRITE_RECORDS:
            raise InvalidArgument("rows", f"a list of 1 to {MAX_WRITE_RECORDS:,} records")
        meta = self.client._evaluate("records:GetDataset", dataset)
        organisation = meta["organisation"]
        patient_key = patient if "@" in patient else f"{patient}@{organisation}"
        executor = self.client._evaluate("access:GetExecutorCertificate", organisation)
        certificate = x509.load_pem_x509_certificate(executor["certificate"].encode())
        payload = canonical_json(
            {"writer": self.client.identity.key, "dataset": dataset, "patient": patient_key,
             "rows": rows}
        )  # fmt: skip
        sealed = seal(payload, certificate.public_key(), write_context(dataset, patient_key))
        spec = {"dataset": dataset, "patient": patient_key, "purpose": purpose, "sealed": sealed}
        access = self._request("access:RequestWrite", organisation, spec)
        return self._settled(access, timeout)["result"]

    def _request(self, function: str, organisation: str, spec: dict) -> dict:
        """A read or write request, made on the data organisation's peers alone: it names
        the patient, so it is kept in that organisation's private collection."""
        return self.client._submit(
            function, transient={ACCESS_FIELD: json.dumps(spec)},
            endorsing_organisations=[msp_id(organisation)],
        )  # fmt: skip

    def _settled(self, access: dict, timeout: float) -> dict:
        """A read or write request once the executor has served or refused it."""
        access_id = access["access_id"]
        deadline = time.monotonic() + timeout
        while access["status"] not in ("DONE", "FAILED"):
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"the {access['kind']} {access_id[:12]}… is still {access['status']}."
                )
            time.sleep(0.2)
            access = self.client._evaluate(
                "access:GetAccess", access["data_org"], access_id,
                target_organisations=[msp_id(access["data_org"])],
            )  # fmt: skip
        if access["status"] == "FAILED":
            raise failed(access_id, access)
        return access


#: How many times a request that lost a commit race is made again before giving up.
REQUEST_ATTEMPTS = 4


class Client:
    """One person's connection to FlowBlock."""

    def __init__(self, gateway: Gateway, channel: str = "flowblock") -> None:
        self.gateway = gateway
        self.channel = channel
        self.identity: Identity = gateway.identity
        self._contract = gateway.get_network(channel).get_contract(CHAINCODE)
        self.records = Records(self)
        self.consent = Consent(self)

    @classmethod
    def connect(
        cls, wallet: str | os.PathLike[str], gateway: str, tls_ca: str | None = None
    ) -> Client:
        """Connect as the identity in ``wallet`` to the Fabric Gateway at ``gateway``."""
        return cls(Gateway.connect(gateway, wallet, tls_ca=tls_ca))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Client:
        """Connect as a spawned notebook server is told to: ``FLOWBLOCK_GATEWAY``,
        ``FLOWBLOCK_WALLET`` and, with TLS, ``FLOWBLOCK_TLS_CA``."""
        settings = ClientSettings(config=config_from_environment(environ))
        given = {"FLOWBLOCK_GATEWAY": settings.gateway, "FLOWBLOCK_WALLET": settings.wallet}
        missing = [variable for variable, value in given.items() if not value]
        if missing:
            raise ConfigError(
                f"{' and '.join(missing)} must be set to connect to FlowBlock "
                "(the address of a Fabric Gateway and the path of your wallet)."
            )
        return cls.connect(settings.wallet, settings.gateway, tls_ca=settings.tls_ca or None)

    def _call(self, submit: bool, function: str, *args: Any, **options: Any) -> Any:
        """A chaincode function's JSON result; its refusal as a FlowBlock error.
        ``options``: the Contract's (transient data, which organisations' peers)."""
        call = self._contract.submit if submit else self._contract.evaluate
        try:
            payload = call(function, *args, **options)
        except EndorseError as error:
            raise refusal(error) from None
        return json.loads(payload) if payload else None

    def _evaluate(self, function: str, *args: Any, **options: Any) -> Any:
        return self._call(False, function, *args, **options)

    def _submit(self, function: str, *args: Any, **options: Any) -> Any:
        return self._call(True, function, *args, **options)

    def whoami(self) -> dict:
        return {
            "name": self.identity.name,
            "organisation": self.identity.organisation,
            "role": self.identity.role,
        }

    def methods(self) -> list[dict]:
        return self._evaluate("catalogue:ListAvailableMethods")

    def datasets(self) -> list[dict]:
        """The datasets registered on the ledger: name, kind, organisation, column schema."""
        return self._evaluate("records:ListDatasets")

    def compute(
        self,
        method: str,
        dataset: str,
        params: dict | None = None,
        purpose: str = "research",
        inputs: list[str] | tuple[str, ...] = (),
        version: str = "",
        epsilon: float | None = None,
        request_key: str | None = None,
    ) -> Job:
        """Ask for a computation; returns the job at once (``job.wait()`` for the result).

        ``epsilon`` asks for a differentially private result spending that much of your
        budget on the dataset; the chaincode reads it as the ``epsilon`` parameter.
        ``request_key`` (any text of yours, up to 200 bytes) makes asking again safe: a
        second request with the same key returns the first one's job, so a notebook run
        again after a crash asks only once.
        """
        if epsilon is not None:
            params = {**(params or {}), "epsilon": epsilon}
        params, inputs = params or {}, list(inputs)
        for argument, value in (("params", params), ("inputs", inputs)):
            if nested_deeper_than(value):  # json.dumps would recurse past Python's limit
                raise too_deep(argument)
        for attempt in range(REQUEST_ATTEMPTS):
            try:
                submitted = self._contract.submit_async(
                    "Request", method, version, dataset, json.dumps(params), purpose,
                    json.dumps(inputs),
                    transient={REQUEST_KEY_FIELD: request_key} if request_key else None,
                )  # fmt: skip
            except EndorseError as error:
                raise refusal(error) from None
            status = submitted.status()
            if status.successful:
                return Job(self, json.loads(submitted.result), since_block=status.block_number)
            # Lost a race for what it read (a budget being charged): it did not commit,
            # so asking again on the new state makes no duplicate.
            if status.code_name not in ("MVCC_READ_CONFLICT", "PHANTOM_READ_CONFLICT"):
                break
            time.sleep(0.05 * 2**attempt)
        raise FlowBlockError(
            f"the request was not committed ({status.code_name}); please ask again."
        )

    def job(self, token_id: str) -> Job:
        return Job(self, self._evaluate("GetToken", token_id))

    def jobs(self, status: str = "") -> list[Job]:
        """The tokens you may see (a researcher: your own), oldest first, of one status."""
        tokens = all_pages(lambda bookmark: self._evaluate("ListTokens", status, 500, bookmark),
                           "tokens")  # fmt: skip
        tokens.sort(key=lambda token: (token["created_at"], token["token_id"]))
        return [Job(self, token) for token in tokens]

    def history(self, token_id: str) -> list[dict]:
        """A token's audit trail: every change, oldest first, with its transaction and time."""
        changes = self._evaluate("TokenHistory", token_id)
        return sorted(
            changes, key=lambda change: (change["time"], _STAGE[change["token"]["status"]])
        )

    def receipts(self) -> list[dict]:
        """A patient's receipts: every computation that used your data (which dataset,
        method, who asked, for what, when), read from your organisation's private data."""
        return all_pages(
            lambda bookmark: self._evaluate("consent:MyReceipts", 100, bookmark), "receipts"
        )

    def cohort(self, token_id: str) -> dict:
        """The private opening of a token's cohort commitment, for the data organisation's
        auditor: its parts, as recorded (``verify`` checks them against the ledger)."""
        return self._evaluate("consent:Cohort", token_id)

    def budget(self, dataset: str) -> dict:
        """Your differential-privacy budget on ``dataset``: ε granted, spent and left."""
        return self._evaluate("budget:Get", dataset, "")

    def verify(self, token_id: str) -> Verification:
        """Check a token's signatures, its result's hashes and its provenance, each alone
        (the checks are flowblock.verification's)."""
        from flowblock.verification import verify

        return verify(self, token_id)

    def close(self) -> None:
        self.gateway.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
