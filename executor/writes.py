"""Serving write requests: rows a patient's writer adds or corrects, stored and registered.

The rows arrive sealed to this executor (nobody else on the ledger can read them). Each
row is checked against the dataset's schema; a row naming an existing ``record_id``
corrects that record (the chaincode refuses one that is not the patient's), any other
is a new record. The rows are stored as one Parquet part of their own, whose key sorts
after every earlier part, so the latest version of a record is the one computed on.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pandas as pd

from flowblock.errors import EndorseError, FlowBlockError, InvalidArgument
from flowblock.executor.algorithms.base import plain_records
from flowblock.executor.ingest import PATIENT_COLUMN, RECORD_COLUMN, part_bytes, row_hashes
from flowblock.executor.reads import serve
from flowblock.executor.worker import WRITES, Executor
from flowblock.sealing import open_sealed, write_context
from flowblock.vocabulary import ACCESS_FIELD, MAX_WRITE_RECORDS


def process_write(executor: Executor, access_id: str) -> str:
    """Claim a write request, store its rows, register them; DONE or FAILED."""
    status = serve(executor, "Write", access_id, lambda access: _store(executor, access))
    if status == "DONE":  # by this run, or by one a crash stopped before this step
        register_part(executor, executor.access(access_id))
    return status


def _store(executor: Executor, access: dict) -> None:
    context = write_context(access["dataset"], access["patient"])
    try:
        payload = json.loads(open_sealed(access["sealed"], executor.identity, context))
    except ValueError:
        payload = None
    if not isinstance(payload, dict):
        raise FlowBlockError("the sealed rows are not a FlowBlock write.")
    if payload.get("writer") != access["reader"] or payload.get("dataset") != access["dataset"]:
        raise FlowBlockError("the sealed rows were not written by this request's writer.")
    meta = executor.ledger("records:GetDataset", access["dataset"])
    patient = access["patient"].removesuffix(f"@{executor.organisation}")
    frame = rows_frame(
        payload.get("rows"), meta["schema"]["columns"], patient, access,
        _current_records(executor, access["dataset"], patient, payload.get("rows")),
    )  # fmt: skip
    moment = access["requested_at"].replace("-", "").replace(":", "").replace(".", "")
    object_key = f"{access['dataset']}/{WRITES}/{moment}-{access['access_id'][:16]}.parquet"
    sha256 = executor.store.put(object_key, part_bytes(frame))
    records = [
        {"record_id": record_id, "patient": patient, "object_key": object_key, "sha256": row_hash}
        for record_id, row_hash in zip(frame[RECORD_COLUMN], row_hashes(frame), strict=True)
    ]
    stored = {"object_key": object_key, "sha256": sha256, "records": records}
    try:
        executor.private(
            "access:CompleteWrite",
            access["access_id"],
            transient={ACCESS_FIELD: json.dumps(stored)},
        )
    except EndorseError:
        # Refused: unless another run of this request completed it (with the same part),
        # these rows are nobody's record and do not stay in the bucket.
        if executor.access(access["access_id"])["status"] != "DONE":
            executor.store.delete(object_key)
        raise


def register_part(executor: Executor, access: dict) -> None:
    """Register a completed write's part, in public (its hash names nobody), after the
    records it holds were registered privately: the data side reads only registered
    parts, so until now its rows were read by nobody. Again is harmless."""
    part = access["result"]["part"]
    executor.ledger(
        "records:RegisterPartition", access["dataset"], part["object_key"], part["sha256"],
        part["rows"], submit=True,
    )  # fmt: skip


def _current_records(executor: Executor, dataset: str, patient: str, rows: Any) -> dict:
    """The patient's records the rows correct, by record id, as they stand: the dataset
    is read only when some row names a record."""
    named = isinstance(rows, list) and any(
        isinstance(row, dict) and row.get(RECORD_COLUMN) for row in rows
    )
    if not named:
        return {}
    mine = executor.datasets.cohort_rows(dataset, {patient: None}).frame
    return {str(record[RECORD_COLUMN]): record for record in plain_records(mine)}


def rows_frame(
    rows: Any, columns: dict, patient: str, access: dict, current: dict | None = None
) -> pd.DataFrame:
    """The written rows as a part of the dataset: every column checked against the schema.

    A row correcting one of the patient's records (in ``current``, by record id, as plain
    values) changes the columns it names; the others keep the values the record has.
    """
    current = current or {}
    if not isinstance(rows, list) or not rows or not all(isinstance(r, dict) for r in rows):
        raise InvalidArgument("rows", "a non-empty list of records, each mapping columns to values")
    if len(rows) > MAX_WRITE_RECORDS:
        raise InvalidArgument("rows", f"at most {MAX_WRITE_RECORDS:,} records in one write")
    given = [c for c in columns if c not in (PATIENT_COLUMN, RECORD_COLUMN)]
    cleaned = []
    for index, row in enumerate(rows):
        unknown = set(row) - set(given) - {RECORD_COLUMN}
        if unknown:
            raise InvalidArgument(f"rows[{index}]", f"only the columns {', '.join(given)}",
                                  sorted(unknown)[0])  # fmt: skip
        new_id = f"{access['dataset']}-w{access['access_id'][:10]}-{index:03d}"
        record_id = str(row.get(RECORD_COLUMN) or new_id)
        kept = current.get(record_id, {})
        values = {
            c: _checked(row[c], columns[c], f"rows[{index}].{c}") if c in row else kept.get(c)
            for c in given
        }
        cleaned.append({RECORD_COLUMN: record_id, PATIENT_COLUMN: patient, **values})
    if access["record_id"] and any(r[RECORD_COLUMN] != access["record_id"] for r in cleaned):
        raise InvalidArgument("rows", f"only record {access['record_id']!r}, as the consent says")
    frame = pd.DataFrame(cleaned, columns=list(columns))
    if frame[RECORD_COLUMN].duplicated().any():
        raise InvalidArgument("rows", "one row per record")
    return frame


#: Beyond this a value would not fit the column's 64-bit storage.
LARGEST = 9e15


def _checked(value: Any, spec: Any, where: str) -> Any:
    """A value of the column's type (numbers as the column stores them), or one sentence."""
    kind, values = (
        (spec.get("type"), spec.get("values", [])) if isinstance(spec, dict) else (spec, [])
    )
    if value is None:
        return None
    if kind == "boolean" and isinstance(value, bool):
        return value
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    if is_number and not -LARGEST < value < LARGEST:
        raise InvalidArgument(where, f"a number between -{LARGEST:.0e} and {LARGEST:.0e}", value)
    if kind == "integer" and is_number and float(value).is_integer():
        return int(value)
    if kind == "number" and is_number and math.isfinite(value):
        return float(value)
    if kind == "category" and str(value) in values:
        return str(value)
    if kind == "string" and isinstance(value, str):
        return value
    expected = {
        "integer": "a whole number", "number": "a number", "boolean": "true or false",
        "string": "text", "category": f"one of {', '.join(values)}",
    }.get(kind, f"a {kind}")  # fmt: skip
    raise InvalidArgument(where, expected, value)
