"""The executor as a service: it follows the ledger and never misses a token.

At start it takes up the tokens it had claimed before it stopped (RUNNING, claimed by
it, or completed with usage receipts still to record), every approved token waiting
for its organisation, and every read and write request still open; then it follows
the chaincode events from where it left off (a checkpoint of the last block and
transaction it handled, written after each), handing each approved token to a pool of
in-process workers. A token seen twice is harmless: the ledger lets it be claimed and
completed only once, and a token already in this service's hands is not queued again.

The ledger, not this process, is the queue: a token whose run ended without ending it
(its claim lost to a conflicting transaction, the gateway not answering, a peer that had
not yet seen it) is tried again after a while, and every ``sweep_every`` seconds the
service looks again for work the events did not bring. A stop leaves the queued tokens
where they are, APPROVED on the ledger, and gives the running ones ``stop_grace``
seconds; one still running then is left as a kill -9 would leave it, RUNNING and
claimed by this executor, for the next start to take up.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path

from flowblock.executor.worker import RECEIPTS_DUE, Executor
from flowblock.ledger import EventStream, all_pages
from flowblock.vocabulary import Event

log = logging.getLogger(__name__)
#: The events that bring this executor work: an approved token, a read or write asked.
WORK = (Event.COMPUTATION_APPROVED, Event.READ_REQUESTED, Event.WRITE_REQUESTED)
#: Seconds before each new try of a token or request whose run did not end it; after
#: the last, the periodic sweep finds it.
RETRY_DELAYS = (2.0, 10.0, 30.0, 60.0)
#: Statuses after which a token is no longer this executor's to run.
TOKEN_LEFT_AS_IS = ("RUNNING", "DONE", "FAILED", "DENIED", "EXPIRED")


class WorkerPool:
    """``workers`` threads taking jobs in order, that a stop need not wait for.

    Unlike :class:`concurrent.futures.ThreadPoolExecutor`, whose threads the interpreter
    joins at exit, these are daemon threads: a job that outlives :meth:`stop`'s grace
    (a long computation, a call that hangs) does not keep the process from exiting.
    """

    def __init__(self, workers: int, name: str) -> None:
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._busy = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{n}", daemon=True)
            for n in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, job: Callable[[], None]) -> None:
        self._jobs.put(job)

    @property
    def busy(self) -> int:
        """How many jobs are running now."""
        with self._lock:
            return self._busy

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None and not self._stopping.is_set():
            with self._lock:
                self._busy += 1
            try:
                job()
            except Exception:  # a job reports its own failures; this thread goes on
                log.exception("an executor job failed")
            finally:
                with self._lock:
                    self._busy -= 1

    def stop(self, grace: float) -> list[str]:
        """Drop the jobs not started; wait up to ``grace`` seconds for those running.
        The names of the threads still running a job then."""
        self._stopping.set()
        for _ in self._threads:
            self._jobs.put(None)
        deadline = time.monotonic() + grace
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return [thread.name for thread in self._threads if thread.is_alive()]


class ExecutorService:
    """Workers for one organisation's executor, fed by the ledger's events."""

    def __init__(
        self,
        executor: Executor,
        checkpoint: Path,
        workers: int = 4,
        *,
        sweep_every: float = 120.0,
        stop_grace: float = 20.0,
        retry_delays: tuple[float, ...] = RETRY_DELAYS,
    ) -> None:
        self.executor = executor
        self.checkpoint = checkpoint
        self.sweep_every = sweep_every
        self.stop_grace = stop_grace
        self.retry_delays = retry_delays
        self.pool = WorkerPool(workers, "executor")
        self._stream: EventStream | None = None
        self._follower: threading.Thread | None = None
        self._sweeper: threading.Thread | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        #: Tokens and requests queued or running here: ("token" | event, id).
        self._in_hand: set[tuple[str, str]] = set()
        #: Work to try again: (when, kind, id, tries so far).
        self._retries: list[tuple[float, str, str, int]] = []

    def start(self) -> ExecutorService:
        self.executor.publish_certificate()
        self.take_up()
        self._follower = threading.Thread(target=self._follow, name="executor-events", daemon=True)
        self._follower.start()
        self._sweeper = threading.Thread(target=self._sweep, name="executor-sweep", daemon=True)
        self._sweeper.start()
        return self

    def take_up(self) -> None:
        """Queue what the ledger says waits for this executor: the tokens it had claimed,
        completed tokens whose usage receipts a stop interrupted (each once, though it may
        be both), the approved tokens of its organisation, and open reads and writes.
        What is in hand already stays as it is."""
        due = [key.rsplit("/", 1)[1] for key in self.executor.store.list(f"{RECEIPTS_DUE}/")]
        for token_id in dict.fromkeys([*self._tokens("RUNNING", mine=True), *due]):
            self._hand_token(token_id, resume=True)
        for token_id in self._tokens("APPROVED"):
            self._hand_token(token_id, resume=False)
        for request in self._open_requests():
            event = Event.READ_REQUESTED if request["kind"] == "read" else Event.WRITE_REQUESTED
            self._hand_access(event, request["access_id"])

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

    # -- handing work to the pool ---------------------------------------------------------

    def _hand_token(self, token_id: str, resume: bool, tries: int = 0) -> None:
        if self._take(("token", token_id)):
            self.pool.submit(lambda: self._process(token_id, resume, tries))

    def _hand_access(self, event: str, access_id: str, tries: int = 0) -> None:
        if self._take((str(event), access_id)):
            self.pool.submit(lambda: self._access(event, access_id, tries))

    def _take(self, work: tuple[str, str]) -> bool:
        """Whether ``work`` was not in hand (it is now)."""
        with self._lock:
            if self._stopping.is_set() or work in self._in_hand:
                return False
            self._in_hand.add(work)
            return True

    def _release(self, work: tuple[str, str], tries: int, again: bool) -> None:
        """``work`` is out of hand; to be tried again later if ``again``."""
        with self._lock:
            self._in_hand.discard(work)
            if again and tries < len(self.retry_delays):
                when = time.monotonic() + self.retry_delays[tries]
                self._retries.append((when, *work, tries + 1))
        if again and tries >= len(self.retry_delays):
            log.warning("%s %s is still not done after %d tries; the next sweep takes it up",
                        work[0], work[1][:12], tries + 1)  # fmt: skip

    def _process(self, token_id: str, resume: bool, tries: int) -> None:
        status = None
        try:
            status = self.executor.process(token_id, resume=resume)
            log.info("token %s: %s", token_id[:12], status)
        except Exception:
            log.exception("token %s could not be processed; it will be tried again", token_id)
        finally:
            # Still APPROVED: the claim did not commit (a conflicting transaction, a commit
            # status never known) and nobody else has it; None: the run broke off. Either
            # way the token is still this executor's to run.
            self._release(("token", token_id), tries, again=status not in TOKEN_LEFT_AS_IS)

    def _access(self, event: str, access_id: str, tries: int) -> None:
        """Serve a read or write request; tried again if serving it failed."""
        from flowblock.executor.reads import process_read
        from flowblock.executor.writes import process_write

        serve = process_read if event == Event.READ_REQUESTED else process_write
        served = False
        try:
            log.info("%s %s: %s", event, access_id[:12], serve(self.executor, access_id))
            served = True
        except Exception:
            log.exception("%s %s could not be processed", event, access_id)
        finally:
            self._release((str(event), access_id), tries, again=not served)

    # -- the ledger's events, and the sweep for what they did not bring ----------------------

    def _follow(self) -> None:
        block, after = self._load_checkpoint()
        network = self.executor.contract.network
        while not self._stopping.is_set():
            self._stream = network.chaincode_events(
                "flowblock", start_block=block, after_tx_id=after
            )
            if self._stopping.is_set():  # stopped while it was being opened
                self._stream.close()
                return
            try:
                for event in self._stream:
                    if event.name in WORK:
                        payload = json.loads(event.payload)
                        if payload["data_org"] != self.executor.organisation:
                            pass
                        elif event.name == Event.COMPUTATION_APPROVED:
                            self._hand_token(payload["token_id"], resume=False)
                        else:
                            self._hand_access(event.name, payload["access_id"])
                    block, after = event.block_number, event.tx_id
                    self._save_checkpoint(block, after)
            except Exception:  # the stream broke (devnet restarting): follow again shortly
                if not self._stopping.wait(1.0):
                    log.warning("the executor's event stream broke; reconnecting")

    def _sweep(self) -> None:
        """Every second: hand back the retries that are due; every ``sweep_every``
        seconds: take up whatever waits on the ledger and is not in hand."""
        next_sweep = time.monotonic() + self.sweep_every
        while not self._stopping.wait(1.0):
            now = time.monotonic()
            with self._lock:
                due = [retry for retry in self._retries if retry[0] <= now]
                self._retries = [retry for retry in self._retries if retry[0] > now]
            for _, kind, work_id, tries in due:
                if kind == "token":  # resume: whether it was claimed or not, it goes on
                    self._hand_token(work_id, resume=True, tries=tries)
                else:
                    self._hand_access(kind, work_id, tries=tries)
            if now >= next_sweep:
                next_sweep = now + self.sweep_every
                try:
                    self.take_up()
                except Exception as error:  # the ledger not answering: next time
                    log.warning("the executor's sweep of the ledger failed: %s", error)

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

    def stop(self, grace: float | None = None) -> None:
        """Take no more work; what was queued stays on the ledger for the next start, and
        what runs gets ``grace`` seconds (``stop_grace`` by default) to end."""
        grace = self.stop_grace if grace is None else grace
        with self._lock:
            self._stopping.set()
        if self._stream is not None:
            self._stream.close()
        left = self.pool.stop(grace)
        if left:
            log.warning("%d computation(s) still running after %g s are left to the next "
                        "start (%s)", len(left), grace, ", ".join(left))  # fmt: skip
