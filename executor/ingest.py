"""Importing a steward's tables: Parquet parts in S3, every record's hash on the ledger.

A table becomes parts of ``PART_ROWS`` rows stored as Parquet objects (one object per
record would make a million-record dataset a million requests). Each row is a record:
its SHA-256 (of the row as canonical JSON) is registered on the ledger with its
patient and its part, and each part's own hash is registered too, so the data side
verifies a whole part with one comparison and can still name a single changed record.
An import is resumable: running it again writes the same bytes to the same keys and
the ledger reports every record unchanged, so a crash loses nothing and nothing is
registered twice.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from flowblock.canonical import canonical_json
from flowblock.errors import EndorseError, InvalidArgument
from flowblock.executor.storage.objects import ObjectStore, sha256_hex
from flowblock.ledger import Contract
from flowblock.vocabulary import ChaincodeStatus

PART_ROWS = 5_000
REGISTER_BATCH = 500
PATIENT_COLUMN, RECORD_COLUMN = "patient_id", "record_id"
#: A string column with at most this many distinct values is a category.
CATEGORY_LIMIT = 20

Progress = Callable[[int, int], None]


@dataclass
class ImportReport:
    dataset: str
    rows: int = 0
    parts: int = 0
    registered: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0  # records deleted on the ledger, which stay deleted
    part_keys: list[str] = field(default_factory=list)


def read_table(path: str | Path) -> pd.DataFrame:
    """A CSV or Parquet file as a table; its format is told by its suffix."""
    path = Path(path)
    if path.suffix.lower() == ".csv":
        return read_csv(path)
    if path.suffix.lower() in (".parquet", ".pq"):
        try:
            return pd.read_parquet(path)
        except FileNotFoundError:
            raise InvalidArgument("the file to import", "an existing file", str(path)) from None
        except Exception as error:  # pyarrow's many ways of saying "not Parquet"
            raise InvalidArgument(
                "the file to import", "a readable Parquet file", path.name
            ) from error
    raise InvalidArgument("the file to import", "a .csv or .parquet file", path.name)


def read_csv(path: Path, **options: Any) -> pd.DataFrame:
    """A CSV file as a table, or one sentence saying why it cannot be read."""
    try:
        return pd.read_csv(path, **options)
    except FileNotFoundError:
        raise InvalidArgument(f"the file {path.name!r}", "an existing file", str(path)) from None
    except pd.errors.EmptyDataError:
        raise InvalidArgument(f"the file {path.name!r}", "a CSV with a header row") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as error:
        raise InvalidArgument(
            f"the file {path.name!r}", "a well-formed CSV in UTF-8", str(error).splitlines()[0]
        ) from None


def require_filled(frame: pd.DataFrame, column: str, argument: str) -> None:
    """InvalidArgument naming the first row whose ``column`` is empty, if one is."""
    empty = (frame[column].isna() | (frame[column].astype(str).str.strip() == "")).to_numpy()
    if empty.any():
        row = int(empty.nonzero()[0][0]) + 1
        raise InvalidArgument(argument, f"filled in on every row (row {row} is empty)")


def with_text_ids(frame: pd.DataFrame) -> pd.DataFrame:
    """The table with its patient and record ids as text, as the ledger names them.

    A CSV of numeric ids reads as numbers; kept so, the part would hold 10 where the
    ledger says "10", and no cohort, read or correction would ever match it.
    """
    for column in (PATIENT_COLUMN, RECORD_COLUMN):
        require_filled(frame, column, f"the {column!r} column")
        if pd.api.types.is_float_dtype(frame[column]) and (frame[column] % 1 == 0).all():
            frame = frame.assign(**{column: frame[column].astype("int64")})
        frame = frame.assign(**{column: frame[column].astype(str)})
    return frame


def infer_schema(frame: pd.DataFrame) -> dict:
    """The dataset schema (column types) the ledger keeps, read off the table."""
    columns: dict[str, Any] = {}
    for name, series in frame.items():
        if pd.api.types.is_bool_dtype(series):
            columns[name] = "boolean"
        elif pd.api.types.is_integer_dtype(series):
            columns[name] = "integer"
        elif pd.api.types.is_float_dtype(series):
            columns[name] = "number"
        else:
            values = sorted(str(v) for v in series.dropna().unique())
            is_category = name != PATIENT_COLUMN and len(values) <= CATEGORY_LIMIT
            columns[name] = {"type": "category", "values": values} if is_category else "string"
    return {"columns": columns}


def row_hashes(frame: pd.DataFrame) -> list[str]:
    """Each row's SHA-256, over its canonical JSON (missing values as null)."""
    rows = frame.astype(object).where(frame.notna(), None).to_dict("records")
    return [sha256_hex(canonical_json(_native(row))) for row in rows]


def _native(row: dict) -> dict:
    cleaned = {}
    for name, value in row.items():
        if hasattr(value, "item"):
            value = value.item()  # numpy scalar -> Python
        if isinstance(value, float) and not math.isfinite(value):
            value = None
        cleaned[name] = value
    return cleaned


def part_bytes(part: pd.DataFrame) -> bytes:
    """A part as Parquet: the same rows always give the same bytes."""
    buffer = io.BytesIO()
    part.to_parquet(buffer, index=False, engine="pyarrow", compression="zstd")
    return buffer.getvalue()


def import_table(
    frame: pd.DataFrame,
    dataset: str,
    records: Contract,
    store: ObjectStore,
    progress: Progress | None = None,
) -> ImportReport:
    """Store ``frame`` as ``dataset`` and register it; ``records`` is the steward's contract."""
    if PATIENT_COLUMN not in frame.columns:
        raise InvalidArgument("the table", f"a {PATIENT_COLUMN!r} column naming each row's patient")
    frame = frame.reset_index(drop=True)
    if RECORD_COLUMN not in frame.columns:
        frame.insert(0, RECORD_COLUMN, [f"{dataset}-{n:08d}" for n in range(len(frame))])
    frame = with_text_ids(frame)
    if frame[RECORD_COLUMN].duplicated().any():
        raise InvalidArgument(f"the {RECORD_COLUMN!r} column", "unique for every row")
    _ensure_dataset(records, dataset, frame)
    report = ImportReport(dataset, rows=len(frame))
    for number, start in enumerate(range(0, len(frame), PART_ROWS)):
        part = frame.iloc[start : start + PART_ROWS]
        object_key = f"{dataset}/part-{number:06d}.parquet"
        data = part_bytes(part)
        digest = store.put(object_key, data)
        records.submit("RegisterPartition", dataset, object_key, digest, len(part))
        entries = [
            {"record_id": str(record_id), "patient": str(patient), "object_key": object_key,
             "sha256": row_hash}
            for record_id, patient, row_hash in zip(
                part[RECORD_COLUMN], part[PATIENT_COLUMN], row_hashes(part), strict=True
            )
        ]  # fmt: skip
        register(records, dataset, entries, report)
        report.parts += 1
        report.part_keys.append(object_key)
        if progress is not None:
            progress(min(start + PART_ROWS, len(frame)), len(frame))
    return report


def register(records: Contract, dataset: str, entries: list[dict], report: ImportReport) -> None:
    """Register record entries in batches, counting what was new, changed and unchanged."""
    for start in range(0, len(entries), REGISTER_BATCH):
        batch = entries[start : start + REGISTER_BATCH]
        counts = json.loads(records.submit("RegisterRecords", dataset, json.dumps(batch)))
        report.registered += counts["registered"]
        report.updated += counts["updated"]
        report.unchanged += counts["unchanged"]
        report.deleted += counts.get("deleted", 0)


def ensure_dataset(records: Contract, dataset: str, kind: str, schema: dict) -> dict | None:
    """The dataset as the ledger has it, or None when it had none and it is registered
    now, of ``kind`` with ``schema``; InvalidArgument if it is registered as another kind."""
    try:
        existing = json.loads(records.evaluate("GetDataset", dataset))
    except EndorseError as error:
        if error.chaincode_status != ChaincodeStatus.NOT_FOUND:
            raise
        records.submit("RegisterDataset", dataset, kind, json.dumps(schema))
        return None
    if existing["kind"] != kind:
        article = "an" if kind[0] in "aeiou" else "a"
        expected = f"{article} {kind} dataset"
        raise InvalidArgument(f"the dataset {dataset!r}", expected, existing["kind"])
    return existing


def _ensure_dataset(records: Contract, dataset: str, frame: pd.DataFrame) -> None:
    schema = infer_schema(frame)
    existing = ensure_dataset(records, dataset, "tabular", schema)
    if existing is None:
        return
    missing = set(schema["columns"]) - set(existing["schema"].get("columns", {}))
    if missing:
        raise InvalidArgument(
            f"the table for {dataset!r}",
            "made of the dataset's registered columns",
            sorted(missing)[0],
        )
