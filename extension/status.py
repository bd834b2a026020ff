"""The live status line shown while a token waits: approval, queue, progress, done.

It is one display that is updated in place (a display id), so it works in JupyterLab,
the classic notebook, Voila and nbclient alike, without a widget comm.
"""

from __future__ import annotations

import html
import time

from IPython.display import DisplayHandle, display

from flowblock.vocabulary import Failure, FailureKind


def describe(token: dict) -> str:
    """Where a token is in its life, in words a researcher understands."""
    status = token["status"]
    if status == "PENDING":  # the ledger says whose decision it waits for
        return "waiting for " + token.get("awaiting", f"approval by {token['data_org']}")
    if status == "APPROVED":
        return f"queued at {token['data_org']}'s executor"
    if status == "RUNNING":
        message = token.get("progress_message") or ""
        return f"running, {token.get('progress', 0)}%" + (f" ({message})" if message else "")
    if status == "DONE":
        cohort = (token.get("result") or {}).get("cohort_size")
        return "done" + (f", cohort of {cohort}" if cohort is not None else "")
    failure = Failure.of(token.get("failure")) if status == "FAILED" else None
    if failure is not None and failure.kind == FailureKind.DISCLOSURE_REFUSED:
        return f"withheld by disclosure control (rule {failure.rule})"
    if failure is not None and failure.kind == FailureKind.BUDGET_EXHAUSTED:
        return f"refused for want of privacy budget: {failure.message}"
    reason = failure.message if failure is not None else token.get("reason") or ""
    return status.lower() + (f": {reason}" if reason else "")


class StatusLine:
    """One line that follows a token until its result is shown."""

    def __init__(self, token: dict) -> None:
        self.started = time.monotonic()
        self.title = f"{token['method']} on {token['dataset']} · token {token['token_id'][:12]}"
        self._shown = ""
        self._handle: DisplayHandle | None = None
        self.update(token)

    def update(self, token: dict) -> None:
        self.show(
            describe(token), token.get("progress", 0) if token["status"] == "RUNNING" else None
        )

    def show(self, state: str, progress: int | None = None) -> None:
        line = f"{self.title}: {state} ({time.monotonic() - self.started:.1f} s)"
        if state == self._shown:
            return
        self._shown = state
        bar = f" <progress value='{progress}' max='100'></progress>" if progress is not None else ""
        bundle = {
            "text/plain": line,
            "text/html": f"<div><code>{html.escape(line)}</code>{bar}</div>",
        }
        if self._handle is None:
            self._handle = display(bundle, raw=True, display_id=True)
        else:
            self._handle.update(bundle, raw=True)
