"""How the executor reads a cohort off the ledger's paged consent listing (no servers)."""

from __future__ import annotations

from flowblock.executor.worker import Executor


def test_one_patients_grants_split_across_pages_add_up():
    pages = {
        "": {"patients": [{"patient": "p1", "records": ["r1"]},
                          {"patient": "p2", "records": None}], "bookmark": "b1"},
        "b1": {"patients": [{"patient": "p1", "records": ["r2"]},
                            {"patient": "p3", "records": ["r9"]}], "bookmark": "b2"},
        "b2": {"patients": [{"patient": "p3", "records": None},
                            {"patient": "p2", "records": ["r5"]}], "bookmark": ""},
    }  # fmt: skip
    executor = Executor(contract=None, store=None, organisation="Hospital", algorithms={})
    executor.ledger = lambda function, *args, **kwargs: pages[args[-1]]
    cohort = executor.cohort({"dataset": "vitals", "requester": "alice@University",
                              "purpose": "research"})  # fmt: skip
    # Records add up; a grant on the whole dataset wins, on whichever page it comes.
    assert cohort == {"p1": ["r1", "r2"], "p2": None, "p3": None}
