"""The executor as a service: it follows the ledger and never misses a token.

At start it takes up the tokens it had claimed before it stopped (RUNNING, claimed by
it, or completed with usage receipts still to record), every approved token waiting
for its organisation, and every read and write request still open; then it follows
the chaincode events from where it left off (a checkpoint of the last block and
transaction it handled, written after each), handing each approved token to a pool of
in-process workers. A token seen twice is harmless: the ledger lets it be claimed and
completed only once.
"""

from __future__ import annotations

import json
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from flowblock.executor.worker import RECEIPTS_DUE, Executor
from flowblock.ledger import EventStream, all_pages
from flowblock.vocabulary import Event

log = logging.getLogger(__name__)
#: The events that bring this executor work: an approved token, a read or write asked.
WORK = (Event.COMPUTATION_APPROVED, Event.READ_REQUESTED, Event.WRITE_REQUESTED)


class ExecutorService:
    """Workers for one organisation's executor, fed by the ledger's events."""

    def __init__(self, executor: Executor, checkpoint: Path, workers: int = 4) -> None:
        self.executor = executor
        self.checkpoint = checkpoint
        self.pool = ThreadPoolExecutor(workers, "executor")
        self._stream: EventStream | None = None
        self._follower: threading.Thread | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()

    def start(self) -> ExecutorService:
        self.executor.publish_certificate()
        # Taken up where they were left: tokens it had claimed, and completed tokens whose
        # usage receipts a stop interrupted (each once, though it may be both).
        due = [key.rsplit("/", 1)[1] for key in self.executor.store.list(f"{RECEIPTS_DUE}/")]
        for token_id in dict.fromkeys([*self._tokens("RUNNING", mine=True), *due]):
            self.pool.submit(self._process, token_id, True)
        for token_id in self._tokens("APPROVED"):
            self.pool.submit(self._process, token_id, False)
        for request in self._open_requests():
            event = Event.READ_REQUESTED if request["kind"] == "read" else Event.WRITE_REQUESTED
            self.pool.submit(self._access, event, request["access_id"])
        self._follower = threading.Thread(target=self._follow, name="executor-events", daemon=True)
        self._follower.start()
        return self

    def _tokens(self, status: str, mine: bool = False) -> list[str]:
        me = self.executor.identity.key
        tokens = all_pages(
            lambda bookmark: self.executor.ledger("ListTokens", status, 1000, bookmark), "tokens"
        )
        return [
            token["token_id"]
            for token in tokens
            if token["data_org"] == self.executor.organisation
            and (not mine or token["claimed_by"] == me)
        ]

    def _open_requests(self) -> list[dict]:
        """Reads and writes waiting for this organisation, or claimed by this executor
        before it stopped; others' claims are theirs."""
        me = self.executor.identity.key
        requests = all_pages(
            lambda bookmark: self.executor.ledger("access:ListOpen", 1000, bookmark), "requests"
        )
        return [r for r in requests if r["status"] == "APPROVED" or r["claimed_by"] == me]

    def _follow(self) -> None:
        block, after = self._load_checkpoint()
        network = self.executor.contract.network
        while not self._stopping.is_set():
            self._stream = network.chaincode_events(
                "flowblock", start_block=block, after_tx_id=after
            )
            try:
                for event in self._stream:
                    if event.name in WORK:
                        payload = json.loads(event.payload)
                        if payload["data_org"] != self.executor.organisation:
                            pass
                        elif event.name == Event.COMPUTATION_APPROVED:
                            self.pool.submit(self._process, payload["token_id"], False)
                        else:
                            self.pool.submit(self._access, event.name, payload["access_id"])
                    block, after = event.block_number, event.tx_id
                    self._save_checkpoint(block, after)
            except Exception:  # the stream broke (devnet restarting): follow again shortly
                if not self._stopping.wait(1.0):
                    log.warning("the executor's event stream broke; reconnecting")

    def _process(self, token_id: str, resume: bool) -> None:
        try:
            status = self.executor.process(token_id, resume=resume)
            log.info("token %s: %s", token_id[:12], status)
        except Exception:
            log.exception("token %s could not be processed; it stays for the next start", token_id)

    def _access(self, event: str, access_id: str) -> None:
        """Serve a read or write request."""
        from flowblock.executor.reads import process_read
        from flowblock.executor.writes import process_write

        serve = process_read if event == Event.READ_REQUESTED else process_write
        try:
            log.info("%s %s: %s", event, access_id[:12], serve(self.executor, access_id))
        except Exception:
            log.exception("%s %s could not be processed", event, access_id)

    def _load_checkpoint(self) -> tuple[int | None, str]:
        try:
            saved = json.loads(self.checkpoint.read_text())
            return saved["block"], saved["tx_id"]
        except (OSError, ValueError, KeyError):
            return 0, ""

    def _save_checkpoint(self, block: int, tx_id: str) -> None:
        with self._lock:
            self.checkpoint.parent.mkdir(parents=True, exist_ok=True)
            staging = self.checkpoint.with_suffix(".tmp")
            staging.write_text(json.dumps({"block": block, "tx_id": tx_id}))
            staging.replace(self.checkpoint)

    def stop(self) -> None:
        self._stopping.set()
        if self._stream is not None:
            self._stream.close()
        self.pool.shutdown(wait=True, cancel_futures=False)
