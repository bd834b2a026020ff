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
from dataclasses import dataclass, field
from typing import Any

from flowblock.errors import (
    AccessDenied,
    BudgetExhausted,
    DisclosureRefused,
    EndorseError,
    FlowBlockError,
    RequestRefused,
)
from flowblock.identity import Identity
from flowblock.ledger import Gateway
from flowblock.sealing import digest, open_sealed

CHAINCODE = "flowblock"
TERMINAL = ("DONE", "FAILED", "DENIED", "EXPIRED")


class ComputationFailed(FlowBlockError):
    """The data side could not or would not compute the token; the reason is its own."""

    def __init__(self, token_id: str, status: str, reason: str) -> None:
        self.token_id = token_id
        self.status = status
        self.reason = reason
        super().__init__(f"computation {token_id[:12]}… was {status.lower()}: {reason}")


def refusal(error: EndorseError) -> FlowBlockError:
    """The FlowBlock error for a chaincode refusal, in the chaincode's own words."""
    status, message = error.chaincode_status, error.chaincode_message
    sentence = message if message.endswith(("?", ".")) else message + "."
    if status == 403:
        return AccessDenied(sentence)
    if status == 402:
        return BudgetExhausted(sentence)
    if status is not None:
        return RequestRefused(sentence, status)
    return error


@dataclass
class Result:
    """A computation's result, opened by its requester, with what the ledger says of it."""

    token_id: str
    value: Any
    provenance: dict = field(repr=False)

    @property
    def cohort_size(self) -> int:
        return self.provenance["result"]["cohort_size"]


class Job:
    """A computation token, as its requester follows it."""

    def __init__(self, client: Client, token: dict, since_block: int | None = None) -> None:
        self.client = client
        self.token = token
        #: The block the request was committed in, when known: events are read from it.
        self.since_block = since_block

    @property
    def token_id(self) -> str:
        return self.token["token_id"]

    @property
    def status(self) -> str:
        return self.token["status"]

    def refresh(self) -> Job:
        self.token = self.client._evaluate("GetToken", self.token_id)
        return self

    def wait(self, timeout: float = 60.0) -> Result:
        """Wait for the result; raises ComputationFailed if it was refused or failed.

        It follows the ledger's events for this token rather than polling, so the result
        is fetched as soon as the block that completes it is committed.
        """
        if self.refresh().status in TERMINAL:
            return self.result()
        if self.since_block is None:  # a job found by id: where its events start is unknown
            deadline = time.monotonic() + timeout
            while self.refresh().status not in TERMINAL and time.monotonic() < deadline:
                time.sleep(0.2)
        else:
            network = self.client.gateway.get_network(self.client.channel)
            events = network.chaincode_events(CHAINCODE, start_block=self.since_block)
            timer = threading.Timer(timeout, events.close)
            timer.start()
            try:
                for event in events:
                    if self.token_id.encode() in event.payload and (
                        self.refresh().status in TERMINAL
                    ):
                        break
            finally:
                timer.cancel()
                events.close()
        if self.refresh().status not in TERMINAL:
            raise TimeoutError(
                f"computation {self.token_id[:12]}… is still {self.status} after {timeout:g} s."
            )
        return self.result()

    def result(self) -> Result:
        token = self.token
        if token["status"] != "DONE":
            reason = token.get("reason") or "no reason given"
            if reason.startswith("DisclosureRefused"):
                rule = reason.split("(", 1)[1].split(")", 1)[0] if "(" in reason else ""
                raise DisclosureRefused(rule, reason.split(": ", 1)[-1])
            raise ComputationFailed(self.token_id, token["status"], reason)
        sealed = token["result"]["encrypted"]
        plaintext = open_sealed(sealed, self.client.identity, self.token_id)
        if digest(plaintext) != token["result"]["result_hash"]:
            raise FlowBlockError("the result does not match the hash recorded on the ledger.")
        value = json.loads(plaintext)["value"]
        provenance = {
            **token,
            "result": {k: v for k, v in token["result"].items() if k != "encrypted"},
        }
        return Result(self.token_id, value, provenance)


class Records:
    """A patient's raw records, for those the patient let read them (``client.records``)."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def read(
        self, patient: str, dataset: str, purpose: str = "care", timeout: float = 60.0
    ) -> list[dict]:
        """The patient's rows in ``dataset``, if their read consent covers you; logged."""
        access = self.client._submit("access:RequestRead", dataset, patient, purpose)
        access_id = access["access_id"]
        deadline = time.monotonic() + timeout
        while access["status"] not in ("DONE", "FAILED"):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the read {access_id[:12]}… is still {access['status']}.")
            time.sleep(0.2)
            access = self.client._evaluate("access:GetAccess", access_id)
        if access["status"] == "FAILED":
            raise ComputationFailed(access_id, "FAILED", access["reason"])
        plaintext = open_sealed(access["result"]["encrypted"], self.client.identity, access_id)
        if digest(plaintext) != access["result"]["result_hash"]:
            raise FlowBlockError("the records do not match the hash recorded on the ledger.")
        return json.loads(plaintext)["rows"]


class Client:
    """One person's connection to FlowBlock."""

    def __init__(self, gateway: Gateway, channel: str = "flowblock") -> None:
        self.gateway = gateway
        self.channel = channel
        self.identity: Identity = gateway.identity
        self._contract = gateway.get_network(channel).get_contract(CHAINCODE)
        self.records = Records(self)

    @classmethod
    def connect(
        cls, wallet: str | os.PathLike[str], gateway: str, tls_ca: str | None = None
    ) -> Client:
        """Connect as the identity in ``wallet`` to the Fabric Gateway at ``gateway``."""
        return cls(Gateway.connect(gateway, wallet, tls_ca=tls_ca))

    def _call(self, submit: bool, function: str, *args: Any) -> Any:
        """A chaincode function's JSON result; its refusal as a FlowBlock error."""
        call = self._contract.submit if submit else self._contract.evaluate
        try:
            payload = call(function, *args)
        except EndorseError as error:
            raise refusal(error) from None
        return json.loads(payload) if payload else None

    def _evaluate(self, function: str, *args: Any) -> Any:
        return self._call(False, function, *args)

    def _submit(self, function: str, *args: Any) -> Any:
        return self._call(True, function, *args)

    def whoami(self) -> dict:
        return {
            "name": self.identity.name,
            "organisation": self.identity.organisation,
            "role": self.identity.role,
        }

    def methods(self) -> list[dict]:
        return self._evaluate("catalogue:ListAvailableMethods")

    def compute(
        self,
        method: str,
        dataset: str,
        params: dict | None = None,
        purpose: str = "research",
        inputs: list[str] | tuple[str, ...] = (),
        version: str = "",
    ) -> Job:
        """Ask for a computation; returns the job at once (``job.wait()`` for the result)."""
        try:
            submitted = self._contract.submit_async(
                "Request", method, version, dataset, json.dumps(params or {}), purpose,
                json.dumps(list(inputs)),
            )  # fmt: skip
        except EndorseError as error:
            raise refusal(error) from None
        status = submitted.status()
        if not status.successful:
            raise FlowBlockError(
                f"the request was not committed ({status.code_name}); please ask again."
            )
        return Job(self, json.loads(submitted.result), since_block=status.block_number)

    def job(self, token_id: str) -> Job:
        return Job(self, self._evaluate("GetToken", token_id))

    def close(self) -> None:
        self.gateway.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
