"""Reads and writes under consent, as a test plays both sides of them.

A reader's or writer's request waits until the data side serves it; a test makes the
request in a thread, sees it appear in the patient's access log, runs the executor on
it, and gets back the log entry and what the request returned (or raised).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

from flowblock.ledger import Contract


def served(
    patient_access: Contract, request: Callable[[], Any], serve: Callable[[dict], Any]
) -> tuple[dict, Any]:
    """Run ``request`` while ``serve`` (given its log entry) serves it on the data side.

    ``patient_access`` is the ``access`` contract as the patient whose records it
    concerns. Re-raises what the request raised.
    """
    returned: list = []
    errors: list[BaseException] = []

    def ask() -> None:
        try:
            returned.append(request())
        except BaseException as error:  # re-raised in the test's own thread
            errors.append(error)

    def log() -> list[dict]:
        return json.loads(patient_access.evaluate("MyAccessLog", 1000, ""))["reads"]

    known = {entry["access_id"] for entry in log()}
    asking = threading.Thread(target=ask)
    asking.start()
    entry = None
    for _ in range(100):
        new = [e for e in log() if e["access_id"] not in known]
        if new:
            (entry,) = new
            break
        threading.Event().wait(0.1)
    assert entry is not None, errors or "the request never reached the ledger"
    serve(entry)
    asking.join(timeout=30)
    assert not asking.is_alive(), "the request was not served"
    if errors:
        raise errors[0]
    return entry, returned[0]
