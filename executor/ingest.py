"""Importing a steward's tables: Parquet parts in S3, every record's hash on the ledger.

A table becomes parts of ``PART_ROWS`` rows stored as Parquet objects (one object per
record would make a million-record dataset a million requests). Each row is a record:
its SHA-256 (of the row as canonical JSON) is registered on the ledger with its
patient and its part, and each part's own hash is registered too, so the data side
verifies a whole part with one comparison and can still name a single changed record.

An import never replaces a stored object: each is named by the hash of its bytes
(``{dataset}/parts/{sha256}.parquet``), so a key only ever holds those bytes. It stores
nothing the ledger has not accepted: the records are first put to the ledger without
being written (a record of another patient is refused there), then the objects are
stored, then the records and, last, the parts registered. It is resumable: a rerun
stores only what the bucket lacks and the ledger reports every record unchanged, so a
crash loses nothing and nothing is registered twice. A second file goes into a dataset
only when the steward asks to append it: a table without record ids has its rows
numbered ``{dataset}-{n}`` in the dataset's first file and ``{dataset}-{file}-{n}`` in a
file appended (``{file}`` from the hash of its rows), so the two never share an id.
"""

from __future__ import annotations

import io
import json
import math
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from flowblock.canonical import canonical_json
from flowblock.errors import EndorseError, FlowBlockError, InvalidArgument
from flowblock.executor.storage.objects import ObjectStore, sha256_hex
from flowblock.ledger import Contract, all_pages
from flowblock.ledger.collections import set_up_private_collection
from flowblock.vocabulary import RECORDS_FIELD, ChaincodeStatus

PART_ROWS = 5_000
REGISTER_BATCH = 500
PATIENT_COLUMN, RECORD_COLUMN = "patient_id", "record_id"
#: A string column with at most this many distinct values is a category.
CATEGORY_LIMIT = 20
#: Folders of a dataset's imported objects: a table's parts, an images manifest's parts.
PARTS, MANIFESTS = "parts", "manifests"

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
    stored: int = 0  # objects written to the bucket: a rerun writes only what it lacks
    part_keys: list[str] = field(default_factory=list)


@dataclass
class Part:
    """One object holding many records (a Parquet part) as an import stores it: its key,
    bytes and hash, its records (their rows and hashes), and the files (an images
    manifest's images, each as its key, path and hash) to store before it.

    The ledger's entries are made a batch at a time (:meth:`batches`): a million records'
    entries held at once would take half a gigabyte.
    """

    key: str
    data: bytes
    sha256: str
    #: The rows of the records it holds (their ids and patients), one per record.
    rows: pd.DataFrame
    #: Each record's hash: its row's, or its image's.
    hashes: list[str]
    files: list[tuple[str, Path, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.hashes)

    def batches(self) -> Iterator[list[dict]]:
        """The ledger's entries for the records, ``REGISTER_BATCH`` at a time; each names
        the object holding its record: its image's, or this part."""
        for start in range(0, len(self), REGISTER_BATCH):
            rows = self.rows.iloc[start : start + REGISTER_BATCH]
            yield [
                {"record_id": str(record_id), "patient": str(patient),
                 "object_key": self.files[start + n][0] if self.files else self.key,
                 "sha256": digest}
                for n, (record_id, patient, digest) in enumerate(zip(
                    rows[RECORD_COLUMN], rows[PATIENT_COLUMN],
                    self.hashes[start : start + REGISTER_BATCH], strict=True,
                ))
            ]  # fmt: skip


def content_key(dataset: str, folder: str, sha256: str, suffix: str) -> str:
    """The key of an imported object, named by the hash of its bytes: it can only ever
    hold those bytes, so no import replaces what another one stored."""
    return f"{dataset}/{folder}/{sha256}{suffix}"


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
            # A category's values are public (the schema is on the ledger): never an
            # identifier's, nor a column whose every row has a value of its own.
            values = sorted(str(v) for v in series.dropna().unique())
            is_category = (
                name not in (PATIENT_COLUMN, RECORD_COLUMN)
                and len(values) <= CATEGORY_LIMIT
                and len(values) < series.notna().sum()
            )
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
    *,
    append: bool = False,
) -> ImportReport:
    """Store ``frame`` as ``dataset`` and register it; ``records`` is the steward's contract.

    A dataset that holds another file's records takes this one only when ``append``: its
    rows are added (a record id it shares with the dataset corrects that record, with the
    ledger's history kept); without it the import is refused before anything is stored.
    """
    if PATIENT_COLUMN not in frame.columns:
        raise InvalidArgument("the table", f"a {PATIENT_COLUMN!r} column naming each row's patient")
    frame = frame.reset_index(drop=True)
    table = numbered(frame, dataset)
    schema = infer_schema(table)
    existing = registered_dataset(records, dataset, "tabular")
    if existing is not None:
        _require_columns(existing, schema, dataset)
    imported = imported_parts(records, dataset) if existing else {}
    parts = table_parts(table, dataset, imported)
    if adds_to_another_source(parts, imported):
        require_append(append, dataset, "file")
        # Rows numbered like the first file's would take its records' ids, so they are
        # numbered apart; unless a part of this file is registered already (a longer copy
        # of the first file), whose numbering the file then continues.
        if RECORD_COLUMN not in frame.columns and not _continues(parts, imported):
            parts = table_parts(numbered(frame, dataset, file_tag(frame)), dataset, imported)
    if existing is None:
        records.submit("RegisterDataset", dataset, "tabular", json.dumps(schema))
    checked = check_records(records, dataset, parts)
    report = ImportReport(dataset, rows=len(frame))
    return store_and_register(report, records, store, parts, imported, checked, progress)


def numbered(frame: pd.DataFrame, dataset: str, tag: str = "") -> pd.DataFrame:
    """The table with its ids as text, its rows numbered when it has no record ids:
    ``{dataset}-{n}``, or ``{dataset}-{tag}-{n}`` for a file appended to the dataset."""
    if RECORD_COLUMN not in frame.columns:
        prefix = f"{dataset}-{tag}-" if tag else f"{dataset}-"
        frame = frame.copy()
        frame.insert(0, RECORD_COLUMN, [f"{prefix}{n:08d}" for n in range(len(frame))])
    frame = with_text_ids(frame)
    if frame[RECORD_COLUMN].duplicated().any():
        raise InvalidArgument(f"the {RECORD_COLUMN!r} column", "unique for every row")
    return frame


def file_tag(frame: pd.DataFrame) -> str:
    """A short name for a file's rows (from their hashes): the same rows, the same name."""
    return sha256_hex("".join(row_hashes(frame)).encode())[:12]


def table_parts(table: pd.DataFrame, dataset: str, imported: dict[str, str]) -> list[Part]:
    """The table cut into parts of ``PART_ROWS`` rows, each named by its hash, or by the key
    the dataset registered its bytes under already (before parts were named by their hash,
    they were numbered: ``{dataset}/part-000000.parquet``)."""
    parts = []
    for start in range(0, len(table), PART_ROWS):
        rows = table.iloc[start : start + PART_ROWS]
        data = part_bytes(rows)
        digest = sha256_hex(data)
        key = imported.get(digest) or content_key(dataset, PARTS, digest, ".parquet")
        parts.append(Part(key, data, digest, rows, row_hashes(rows)))
    return parts


def registered_dataset(records: Contract, dataset: str, kind: str) -> dict | None:
    """The dataset as the ledger has it, None if it has none; InvalidArgument if it is
    registered as another kind."""
    try:
        existing = json.loads(records.evaluate("GetDataset", dataset))
    except EndorseError as error:
        if error.chaincode_status != ChaincodeStatus.NOT_FOUND:
            raise
        return None
    if existing["kind"] != kind:
        article = "an" if kind[0] in "aeiou" else "a"
        expected = f"{article} {kind} dataset"
        raise InvalidArgument(f"the dataset {dataset!r}", expected, existing["kind"])
    return existing


def imported_parts(records: Contract, dataset: str) -> dict[str, str]:
    """The parts an import registered for the dataset, their keys by hash; the parts of
    writes (``{dataset}/writes/…``) are no file's, so they are left out."""
    partitions = all_pages(
        lambda mark: json.loads(records.evaluate("ListPartitions", dataset, 1000, mark)),
        "partitions",
    )
    found = {}
    for partition in partitions:
        folder = partition["object_key"].removeprefix(f"{dataset}/").rpartition("/")[0]
        if folder in ("", PARTS, MANIFESTS):  # "": numbered, before parts were hashed
            found[partition["sha256"]] = partition["object_key"]
    return found


def adds_to_another_source(parts: list[Part], imported: dict[str, str]) -> bool:
    """Whether this import would add parts to a dataset that holds parts of another file
    (a file whose parts are all registered already is imported again, not added)."""
    ours = {part.sha256 for part in parts}
    return not set(imported) <= ours and not ours <= set(imported)


def _continues(parts: list[Part], imported: dict[str, str]) -> bool:
    return any(part.sha256 in imported for part in parts)


def require_append(append: bool, dataset: str, source: str) -> None:
    """Refuse, in one sentence, to add another ``source``'s records unless asked to."""
    if not append:
        raise FlowBlockError(
            f"the dataset {dataset!r} already holds records from another {source}; pass "
            f"--append (append=True) to add this {source}'s records to it (nothing was stored)."
        )


def check_records(records: Contract, dataset: str, parts: list[Part]) -> list[list[dict]]:
    """What registering each part's records would do, asked of the ledger without writing
    (an evaluate runs the transaction and orders nothing): a record it refuses (another
    patient's, a bad id) is refused here, before anything is stored. The counts of each
    batch of each part.

    Records name patients: they go to this organisation's private collection, which
    the first import may have to set up (its executor may not have started yet)."""
    set_up_private_collection(records)
    checked, row = [], 0
    for part in parts:
        counts = []
        for batch in part.batches():
            try:
                said = records.evaluate(
                    "RegisterRecords", dataset, transient={RECORDS_FIELD: json.dumps(batch)}
                )
            except EndorseError as error:
                raise _refusal(error, dataset, row) from None
            counts.append(json.loads(said))
            row += len(batch)
        checked.append(counts)
    return checked


def _refusal(error: EndorseError, dataset: str, first_row: int) -> EndorseError:
    """The ledger's refusal of a batch, naming the row of the file rather than of the batch."""
    status = error.chaincode_status
    if status is None or status >= ChaincodeStatus.INTERNAL_ERROR:
        return error
    said = re.sub(
        r"^records\[(\d+)\]",
        lambda found: f"row {first_row + int(found.group(1)) + 1}",
        error.chaincode_message,
    ).rstrip(".")
    return EndorseError(
        f"the ledger refused this import into {dataset!r}, so nothing was stored: {said}.",
        error.tx_id,
        error.details,
        error.status,
    )


def store_and_register(
    report: ImportReport,
    records: Contract,
    store: ObjectStore,
    parts: list[Part],
    imported: dict[str, str],
    checked: list[list[dict]],
    progress: Progress | None = None,
) -> ImportReport:
    """Store what the parts need that the bucket lacks, then register their records and,
    last, each part: the data side reads only registered parts, so it never reads a row
    whose record is not registered yet."""
    present = _present(store, parts)

    def put(key: str, data: bytes) -> None:
        store.put(key, data)
        present.add(key)
        report.stored += 1

    done = 0
    for part, counts in zip(parts, checked, strict=True):
        for key, path, digest in part.files:
            if key not in present:
                data = path.read_bytes()
                if sha256_hex(data) != digest:
                    raise FlowBlockError(f"{path} changed during the import; run it again.")
                put(key, data)
            done += 1
            if progress is not None:
                progress(done, report.rows)
        if part.key not in present:
            put(part.key, part.data)
        register(records, report.dataset, part.batches(), report, counts)
        if imported.get(part.sha256) != part.key:
            rows = len(part)
            records.submit("RegisterPartition", report.dataset, part.key, part.sha256, rows)
        report.parts += 1
        report.part_keys.append(part.key)
        if not part.files:
            done += len(part)
            if progress is not None:
                progress(done, report.rows)
    return report


def _present(store: ObjectStore, parts: list[Part]) -> set[str]:
    """Which of the parts' objects the bucket holds already, listed a folder at a time."""
    keys = [key for part in parts for key in (part.key, *(file[0] for file in part.files))]
    folders = {key.rpartition("/")[0] + "/" for key in keys}
    return {key for folder in sorted(folders) for key in store.list(folder)}


def register(
    records: Contract,
    dataset: str,
    batches: Iterable[list[dict]],
    report: ImportReport,
    checked: list[dict] | None = None,
) -> None:
    """Register batches of record entries, counting what was new, changed and unchanged; a
    batch the ledger said would change nothing (``checked``) is not submitted again.

    Records name patients, so they go to this organisation's private collection: as
    transient data, to its own peers alone (see chaincode.contracts.records)."""
    for index, batch in enumerate(batches):
        counts = checked[index] if checked is not None else None
        if counts is None or counts["registered"] or counts["updated"]:
            said = records.submit(
                "RegisterRecords", dataset, transient={RECORDS_FIELD: json.dumps(batch)},
                endorsing_organisations=[records.network.gateway.identity.msp_id],
            )  # fmt: skip
            counts = json.loads(said)
        report.registered += counts["registered"]
        report.updated += counts["updated"]
        report.unchanged += counts["unchanged"]
        report.deleted += counts.get("deleted", 0)


def _require_columns(existing: dict, schema: dict, dataset: str) -> None:
    missing = set(schema["columns"]) - set(existing["schema"].get("columns", {}))
    if missing:
        raise InvalidArgument(
            f"the table for {dataset!r}",
            "made of the dataset's registered columns",
            sorted(missing)[0],
        )
