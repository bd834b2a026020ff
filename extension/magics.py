"""``%flowblock`` and ``%%flowblock``: a thin front end over ``flowblock.Client``.

Each subcommand parses its arguments, calls the Client and returns an object that
displays richly and can be bound (``x = %flowblock compute …``). Whatever FlowBlock
refuses becomes one line, a ``UsageError``; nothing of our internals is shown.
"""

from __future__ import annotations

import argparse
import difflib
import queue
import threading
from collections.abc import Callable
from typing import Any

import pandas as pd
from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class

from flowblock.client import Client, Job
from flowblock.errors import (
    BudgetExhausted,
    ComputationFailed,
    ConfigError,
    ConsentDenied,
    DisclosureRefused,
    FlowBlockError,
    RequestRefused,
)
from flowblock.extension.arguments import HelpShown, cell_params, parse
from flowblock.extension.results import rich
from flowblock.extension.status import StatusLine, describe
from flowblock.verification import Verification
from flowblock.vocabulary import ChaincodeStatus


@magics_class
class FlowBlockMagics(Magics):
    """The researcher's commands; ``client`` may be given, else it comes from the environment."""

    def __init__(self, shell: Any = None, client: Client | None = None) -> None:
        super().__init__(shell)
        self._client = client
        self._catalogue: dict[str, dict] = {}

    @property
    def client(self) -> Client:
        if self._client is None:
            try:
                self._client = Client.from_env()
            except ConfigError as error:
                raise UsageError(str(error)) from None
            except FlowBlockError as error:
                raise UsageError(f"cannot connect to FlowBlock: {error}") from None
        return self._client

    @client.setter
    def client(self, client: Client | None) -> None:
        self._client = client
        self._catalogue = {}

    @line_cell_magic
    def flowblock(self, line: str, cell: str | None = None) -> Any:
        """Compute on data you cannot see: ``%flowblock help`` lists the commands."""
        try:
            command, args = parse(line)
        except HelpShown:
            return None
        if cell is not None and command != "compute":
            raise UsageError(f"%%flowblock takes a cell only for compute, not {command}.")
        run = getattr(self, f"_{command}")
        try:
            if command == "compute":  # waits in its own way: Ctrl-C stops only the wait
                return run(args, cell)
            return _off_the_kernel_thread(lambda: run(args, cell), f"%flowblock {command}")
        except UsageError:
            raise
        except FlowBlockError as error:
            raise UsageError(self._explain(error, args, cell)) from None

    # -- the commands --------------------------------------------------------------------

    def _whoami(self, args: argparse.Namespace, cell: str | None) -> dict:
        return self.client.whoami()

    def _methods(self, args: argparse.Namespace, cell: str | None) -> Any:
        if args.name:
            return MethodHelp(self._method(args.name), self._example_dataset(args.name))
        rows = [
            {
                "name": m["name"],
                "version": m["version"],
                "parameters": ", ".join(
                    p + ("*" if p in m["parameters"].get("required", []) else "")
                    for p in m["parameters"].get("properties", {})
                ),
                "output": m["output_kind"],
                "disclosure": m["disclosure_class"],
                "description": m["description"],
            }
            for m in self._methods_list()
        ]
        if not rows:
            raise UsageError("the catalogue has no enabled methods yet.")
        return pd.DataFrame(rows).set_index("name")

    def _compute(self, args: argparse.Namespace, cell: str | None) -> Any:
        params = cell_params(cell) if cell is not None else {}
        params.update(dict(args.param))
        inputs = _off_the_kernel_thread(
            lambda: [self._resolve(token) for token in args.input], "%flowblock compute"
        )
        job = self._ask(
            args.method, args.dataset, params, purpose=args.purpose, inputs=inputs,
            version=args.version, epsilon=args.dp_epsilon,
        )  # fmt: skip
        self._last = job.token_id
        if args.no_wait:
            return job
        return self._wait(job, args.timeout)

    def _ask(self, *args: Any, **options: Any) -> Job:
        """``client.compute`` in a thread of its own, so that Ctrl-C never lands in gRPC."""
        return _off_the_kernel_thread(
            lambda: self.client.compute(*args, **options),
            "interrupted while the request was on its way: it may still be committed; "
            "see %flowblock tokens.",
        )

    def _status(self, args: argparse.Namespace, cell: str | None) -> Job:
        if args.token:
            return self.client.job(self._resolve(args.token))
        last = getattr(self, "_last", None)
        if last:
            return self.client.job(last)
        jobs = self.client.jobs()
        if not jobs:
            raise UsageError("%flowblock status: you have no tokens yet; ask with compute.")
        return jobs[-1]

    def _tokens(self, args: argparse.Namespace, cell: str | None) -> pd.DataFrame:
        rows = [
            {
                "token": job.token_id[:12],
                "method": job.token["method"],
                "dataset": job.token["dataset"],
                "status": job.status,
                "purpose": job.token["purpose"],
                "created": job.token["created_at"],
                "cohort": (job.token.get("result") or {}).get("cohort_size"),
            }
            for job in reversed(self.client.jobs(args.status))
        ]
        columns = ["token", "method", "dataset", "status", "purpose", "created", "cohort"]
        return pd.DataFrame(rows, columns=columns).astype({"cohort": "Int64"})

    def _result(self, args: argparse.Namespace, cell: str | None) -> Any:
        job = self.client.job(self._resolve(args.token))
        if job.status not in ("DONE", "FAILED", "DENIED", "EXPIRED"):
            raise UsageError(
                f"%flowblock result: token {job.token_id[:12]} is {job.status} "
                f"({describe(job.token)}); wait with %flowblock status {job.token_id[:12]}."
            )
        return rich(job.result(), self._output_kind(job.token["method"]))

    def _audit(self, args: argparse.Namespace, cell: str | None) -> pd.DataFrame:
        token_id = self._resolve(args.token)
        rows = []
        for change in self.client.history(token_id):
            token = change["token"]
            result = token.get("result") or {}
            rows.append(
                {
                    "time": change["time"],
                    "status": token["status"],
                    "by": _actor(token, rows[-1]["status"] if rows else None),
                    "transaction": change["tx_id"][:12],
                    "code_hash": (result.get("code_hash") or token["code_hash"])[:12],
                    "cohort": result.get("cohort_size"),
                    "policy_hash": (result.get("policy_hash") or "")[:12] or None,
                    "epsilon": token["epsilon"],
                }
            )
        return pd.DataFrame(rows).astype({"cohort": "Int64"})

    def _verify(self, args: argparse.Namespace, cell: str | None) -> Verification:
        return self.client.verify(self._resolve(args.token))

    def _budget(self, args: argparse.Namespace, cell: str | None) -> pd.DataFrame:
        datasets = [args.dataset] if args.dataset else [d["name"] for d in self.client.datasets()]
        rows = [self.client.budget(dataset) for dataset in datasets]
        columns = ["dataset", "granted", "spent", "left"]
        return pd.DataFrame(rows, columns=columns).set_index("dataset")

    # -- helpers ---------------------------------------------------------------------

    def _wait(self, job: Job, timeout: float) -> Any:
        """Follow the token with a live status line; its result object once it is done.

        The ledger is followed in a thread: an interrupt then stops only this loop, never a
        gRPC call halfway (which can leave the connection unusable).
        """
        line: StatusLine | None = None
        short = job.token_id[:12]
        updates: queue.Queue[dict | None] = queue.Queue()
        outcome: dict[str, Any] = {}

        def follow() -> None:
            try:
                outcome["result"] = job.wait(timeout=timeout, on_update=updates.put)
            except BaseException as error:  # handed to the kernel's thread, below
                outcome["error"] = error
            finally:
                updates.put(None)

        follower = threading.Thread(target=follow, name=f"flowblock-{short}", daemon=True)
        try:
            line = StatusLine(job.token)
            follower.start()
            while (token := updates.get()) is not None:
                line.update(token)
        except KeyboardInterrupt:
            job.stop_waiting()
            if line is not None:
                line.show("stopped waiting; the token goes on")
            raise UsageError(
                f"stopped waiting for token {short}, which goes on ({job.status}); "
                f"see %flowblock status {short}, then %flowblock result {short}."
            ) from None
        follower.join()
        try:
            if "error" in outcome:
                raise outcome.pop("error")
            result = outcome["result"]
        except TimeoutError:
            raise UsageError(
                f"token {short} is still {job.status} after {timeout:g} s "
                f"({describe(job.token)}); see %flowblock status {short}."
            ) from None
        except (ComputationFailed, DisclosureRefused, BudgetExhausted, ConsentDenied):
            line.update(job.token)
            raise
        line.update(job.token)
        return rich(result, self._output_kind(job.token["method"]))

    def _methods_list(self) -> list[dict]:
        methods = self.client.methods()
        self._catalogue = {m["name"]: m for m in methods}
        return methods

    def _method(self, name: str) -> dict:
        if name not in self._catalogue:
            self._methods_list()
        if name not in self._catalogue:
            raise UsageError(
                f"there is no method {name!r} in the catalogue{_suggest(name, self._catalogue)}"
            )
        return self._catalogue[name]

    def _output_kind(self, method: str) -> str:
        try:
            return _off_the_kernel_thread(
                lambda: self._method(method)["output_kind"], "%flowblock compute"
            )
        except (UsageError, FlowBlockError):  # disabled since, or unreachable: judge by shape
            return ""

    def _example_dataset(self, method: str) -> str:
        kind = self._catalogue[method]["input_kind"]
        names = [d["name"] for d in self.client.datasets() if d["kind"] == kind]
        return names[0] if names else "DATASET"

    def _resolve(self, token: str) -> str:
        """A token id from its first characters, as git takes a commit's."""
        if len(token) == 64:
            return token
        if len(token) < 4:
            raise UsageError(f"a token must be given by at least 4 characters, got {token!r}.")
        found = [job.token_id for job in self.client.jobs() if job.token_id.startswith(token)]
        if not found:
            raise UsageError(f"you have no token starting with {token!r}; see %flowblock tokens.")
        if len(found) > 1:
            raise UsageError(f"{len(found)} of your tokens start with {token!r}; give more of it.")
        return found[0]

    def _explain(self, error: FlowBlockError, args: argparse.Namespace, cell: str | None) -> str:
        """One sentence for a refusal: the argument it concerns, the rule that fired."""
        if isinstance(error, DisclosureRefused):
            return (
                f"the data side's disclosure control withheld the result (rule {error.rule}): "
                f"{error}"
            )
        if isinstance(error, ComputationFailed):
            failed = f"token {error.token_id[:12]} {error.status.lower()}: {error.reason}"
            if error.status != "DENIED":
                return failed
            try:
                token = self.client.job(error.token_id).token
            except FlowBlockError:  # the ledger went away meanwhile: say what we know
                return failed
            return (
                f"{token['method']} on {token['dataset']} was denied by {token['decided_by']}: "
                f"{error.reason}"
            )
        message = str(error)
        if isinstance(error, RequestRefused) and error.status == ChaincodeStatus.NOT_FOUND:
            message = self._not_found(message, args)
        if message.startswith("params."):  # the chaincode's name for what the user typed
            message = ("parameter " if cell is not None else "--param ") + message[7:]
        elif message.startswith("params "):
            message = "the parameters " + message[7:]
        return message

    def _not_found(self, message: str, args: argparse.Namespace) -> str:
        """A "not found" refusal, with the dataset meant when the one named is not on the
        ledger's list: decided from the lists, not from the refusal's words. The ledger
        looks for the method first, so a method not in the catalogue is what it missed."""
        name, method = getattr(args, "dataset", None), getattr(args, "method", None)
        if not name:
            return message
        try:
            if method and method not in {m["name"] for m in self._methods_list()}:
                return message
            known = {d["name"]: d for d in self.client.datasets()}
        except FlowBlockError:
            return message
        if not known or name in known:  # something else was not found
            return message
        return message.rstrip(".") + _suggest(name, known)


def _off_the_kernel_thread(work: Callable[[], Any], interrupted: str) -> Any:
    """Run ``work`` in a thread of its own, so that Ctrl-C never lands inside gRPC: the
    kernel's thread only waits, and an interrupt there is one line, ``interrupted``."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = work()
        except BaseException as error:  # handed to the kernel's thread, below
            outcome["error"] = error

    worker = threading.Thread(target=run, name="flowblock-call", daemon=True)
    worker.start()
    try:
        worker.join()
    except KeyboardInterrupt:
        if not interrupted.startswith("interrupted"):
            interrupted = f"{interrupted}: interrupted."
        raise UsageError(interrupted) from None
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


def _suggest(word: str, known: dict) -> str:
    close = difflib.get_close_matches(word, list(known), n=1)
    return f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(sorted(known))}."


def _actor(token: dict, before: str | None) -> str:
    """Who made a change of a token, from what changed."""
    status = token["status"]
    if before is None:
        return token["requester"] + (" (approved by rules)" if status == "APPROVED" else "")
    if status in ("APPROVED", "DENIED"):
        return token["decided_by"]
    return token.get("claimed_by") or token["decided_by"] or token["requester"]


class MethodHelp:
    """One method of the catalogue: what it does, its parameters, a call to copy."""

    def __init__(self, method: dict, dataset: str) -> None:
        self.method = method
        self.dataset = dataset

    @property
    def example(self) -> str:
        method = self.method
        schema = method["parameters"]
        properties = schema.get("properties", {})
        words = [f"%flowblock compute {method['name']}", f"--dataset {self.dataset}"]
        if method["input_kind"] == "tokens":
            words.append("--input TOKEN")
        for name in schema.get("required", []):
            kind = properties.get(name, {})
            example = (kind.get("enum") or [f"<{kind.get('type', 'value')}>"])[0]
            words.append(f"--param {name}={example}")
        return " ".join(words)

    def __str__(self) -> str:
        method = self.method
        schema = method["parameters"]
        required = set(schema.get("required", []))
        lines = [
            f"{method['name']} {method['version']}: {method['description']}",
            f"input {method['input_kind']} · output {method['output_kind']} · "
            f"disclosure {method['disclosure_class']} · code {method['code_hash'][:12]}",
            "parameters:",
        ]
        for name, spec in schema.get("properties", {}).items():
            facts = [spec.get("type", "any")] + (["required"] if name in required else [])
            if "enum" in spec:
                facts.append("one of " + ", ".join(map(str, spec["enum"])))
            lines.append(f"  {name} ({', '.join(facts)}) {spec.get('description', '')}".rstrip())
        return "\n".join([*lines, "example:", "  " + self.example])

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(str(self))
