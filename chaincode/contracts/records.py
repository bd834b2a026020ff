"""Datasets and records: what data exists, whose it is, and the hash of every object.

Only metadata lives on the ledger: each record's patient, object key in S3 and the
SHA-256 of the object, so the data side can prove it computed on exactly the
registered bytes. A steward of the organisation that holds a dataset registers its
records in batches; re-registering an identical record changes nothing (imports are
resumable), a changed one gets a new version (the record keeps its history), and a
deletion is a recorded tombstone.

Whose a record is names a patient (and a row's hash could be tested against a guessed
row), so records live in the organisation's private collection (:mod:`.private`): a
batch travels in the transient field ``records``, the organisation's peers alone
endorse, and the block holds hashes nobody can test. Datasets and their parts (an
object's key and its bytes' hash, naming nobody) are public.
"""

from __future__ import annotations

import json

from flowblock.chaincode import Context, transaction
from flowblock.chaincode.contracts.base import (
    Conflict,
    FlowBlockContract,
    Invalid,
    NotFound,
    Refused,
    caller,
    emit,
    json_argument,
    key,
    name,
    now,
    paged,
    read,
    require,
    sha256_hex,
    text,
    timestamp,
    transient_argument,
    transient_json,
    write,
)
from flowblock.chaincode.contracts.private import PrivateState
from flowblock.vocabulary import RECORDS_FIELD, Event

DATASET, PARTITION = "dataset", "partition"
#: Private: a record; a patient's records; a dataset's deleted records (for the data side
#: to leave out).
RECORD, PATIENT_RECORD, DELETED_RECORD = "record", "patient-record", "deleted-record"
UNCHANGED_BATCH = "unchanged-batch"
#: The most records one CurrentParts call looks up.
MAX_RECORDS_ASKED = 1_000
KINDS = ("tabular", "images")
COLUMN_TYPES = ("integer", "number", "string", "boolean", "category")
#: Roles of the data organisation that may see its records' metadata.
DATA_SIDE = ("steward", "executor", "auditor", "admin")


def get_dataset(ctx: Context, dataset: str) -> dict:
    found = read(ctx, key(DATASET, dataset))
    if found is None:
        raise NotFound(f"there is no dataset {dataset!r}")
    return found


def record_key(state: PrivateState, dataset: str, record_id: str) -> str:
    return state.key(RECORD, dataset, state.hide(record_id))


def record_owner(ctx: Context, meta: dict, record_id: str) -> str | None:
    """The patient (``name@Organisation``) a record of the dataset ``meta`` belongs to,
    or None if there is no such record."""
    state = PrivateState(ctx, meta["organisation"])
    record = state.read(record_key(state, meta["name"], record_id))
    return None if record is None else record["patient"]


def patient_key(patient: str, organisation: str) -> str:
    """Records name a patient by their id at the organisation that enrolled them."""
    return patient if "@" in patient else f"{patient}@{organisation}"


def _check_schema(kind: str, schema: dict) -> dict:
    columns = schema.get("columns", {})
    if kind == "tabular" and not columns:
        raise Invalid("a tabular dataset's schema must name its columns")
    if not isinstance(columns, dict):
        raise Invalid("schema.columns must map column names to types")
    for column, spec in columns.items():
        name(column, "a column name")
        column_type = spec.get("type") if isinstance(spec, dict) else spec
        if column_type not in COLUMN_TYPES:
            raise Invalid(f"column {column!r} must have a type among {', '.join(COLUMN_TYPES)}")
    return schema


class RecordsContract(FlowBlockContract):
    name = "records"

    @transaction
    def RegisterDataset(self, ctx: Context, dataset: str, kind: str, schema: str) -> dict:  # noqa: N802
        """A steward declares a dataset their organisation holds, with its schema."""
        steward = require(ctx, "steward")
        name(dataset, "dataset")
        if kind not in KINDS:
            raise Invalid(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
        if read(ctx, key(DATASET, dataset)) is not None:
            raise Conflict(f"the dataset {dataset!r} already exists")
        value = {
            "name": dataset,
            "kind": kind,
            "organisation": steward.organisation,
            "schema": _check_schema(kind, json_argument(schema, "schema")),
            "registered_by": steward.key,
            "registered_at": timestamp(now(ctx)),
        }
        write(ctx, key(DATASET, dataset), value)
        emit(
            ctx,
            Event.DATASET_REGISTERED,
            {"dataset": dataset, "organisation": steward.organisation},
        )
        return value

    @transaction(submit=False)
    def GetDataset(self, ctx: Context, dataset: str) -> dict:  # noqa: N802
        return get_dataset(ctx, dataset)

    @transaction(submit=False)
    def ListDatasets(self, ctx: Context) -> list:  # noqa: N802
        return [
            json.loads(kv.value) for kv in ctx.stub.get_state_by_partial_composite_key(DATASET, [])
        ]

    @transaction
    def RegisterRecords(self, ctx: Context, dataset: str) -> dict:  # noqa: N802
        """Register a batch of records' hashes (a JSON list in the transient field
        ``records``); identical re-registrations change nothing."""
        meta = get_dataset(ctx, dataset)
        steward = require(ctx, "steward", organisation=meta["organisation"])
        batch = transient_json(ctx, RECORDS_FIELD, "records", list)
        if not batch:
            raise Invalid("records must not be empty")
        return register_records(ctx, dataset, parse_records(batch, meta["organisation"]),
                                steward.key)  # fmt: skip

    @transaction
    def DeleteRecord(self, ctx: Context, dataset: str) -> dict:  # noqa: N802
        """Tombstone a record (the transient field ``records`` gives record_id and reason):
        it stays, marked deleted, with its history."""
        meta = get_dataset(ctx, dataset)
        steward = require(ctx, "steward", organisation=meta["organisation"])
        spec = transient_argument(ctx, RECORDS_FIELD, ("record_id", "reason"))
        record_id = name(spec["record_id"], "record_id")
        state = PrivateState(ctx, meta["organisation"])
        record = _record(state, dataset, record_id, history=True)
        if record["deleted"]:
            raise Conflict(f"the record {record_id!r} is already deleted")
        record.update(
            deleted=True,
            deleted_by=steward.key,
            deleted_at=timestamp(now(ctx)),
            reason=text(spec["reason"], "reason"),
            version=record["version"] + 1,
        )
        _store_record(ctx, state, record)
        state.write(state.key(DELETED_RECORD, dataset, state.hide(record_id)),
                    {"record_id": record_id})  # fmt: skip
        emit(ctx, Event.RECORD_DELETED, {"dataset": dataset})
        return {"dataset": dataset, "deleted": True}  # the answer goes into the block

    @transaction(submit=False)
    def CurrentParts(self, ctx: Context, dataset: str, record_ids: str) -> dict:  # noqa: N802
        """Where the current version of each record is (its object key), for the data side
        to choose among the parts that hold several versions of a corrected record."""
        organisation = get_dataset(ctx, dataset)["organisation"]
        require(ctx, *DATA_SIDE, organisation=organisation)
        wanted = json_argument(record_ids, "record_ids", list)
        if len(wanted) > MAX_RECORDS_ASKED:
            raise Invalid(f"record_ids must list at most {MAX_RECORDS_ASKED}")
        names = [name(str(record_id), "a record id") for record_id in wanted]
        state = PrivateState(ctx, organisation)
        found = state.read_many([record_key(state, dataset, record_id) for record_id in names])
        return {
            record_id: value["object_key"]
            for record_id, value in zip(names, found, strict=True)
            if value
        }

    @transaction(submit=False)
    def GetRecord(self, ctx: Context, dataset: str, record_id: str) -> dict:  # noqa: N802
        return self._visible(ctx, dataset, record_id, history=False)

    @transaction(submit=False)
    def RecordHistory(self, ctx: Context, dataset: str, record_id: str) -> list:  # noqa: N802
        """Every version of a record, oldest first (a private value has no history of
        its own in Fabric, so each record keeps its versions)."""
        return self._visible(ctx, dataset, record_id, history=True)["history"]

    @transaction(submit=False)
    def ListRecords(self, ctx: Context, dataset: str, size: int, bookmark: str) -> dict:  # noqa: N802
        """A page of a dataset's records, for its organisation's data side."""
        organisation = get_dataset(ctx, dataset)["organisation"]
        require(ctx, *DATA_SIDE, organisation=organisation)
        state = PrivateState(ctx, organisation)
        page, following = state.page(state.key(RECORD, dataset), size, bookmark)
        records = [{k: v for k, v in record.items() if k != "history"} for _, record in page]
        return {"records": records, "bookmark": following}

    @transaction
    def RegisterPartition(  # noqa: N802
        self, ctx: Context, dataset: str, object_key: str, sha256: str, rows: int
    ) -> dict:
        """A steward registers one stored object that holds many records (a Parquet part);
        so does the executor, for the part a write stored.

        Each record in it keeps its own row hash (``RegisterRecords``); the partition's
        hash covers its bytes, so the data side verifies a whole part with one check.
        """
        meta = get_dataset(ctx, dataset)
        steward = require(ctx, "steward", "executor", organisation=meta["organisation"])
        return register_partition(ctx, dataset, object_key, sha256, rows, steward.key)

    @transaction(submit=False)
    def ListPartitions(self, ctx: Context, dataset: str, size: int, bookmark: str) -> dict:  # noqa: N802
        """A page of a dataset's partitions, for its organisation's data side."""
        require(ctx, *DATA_SIDE, organisation=get_dataset(ctx, dataset)["organisation"])
        page, following = paged(ctx, PARTITION, [dataset], size, bookmark)
        return {"partitions": [json.loads(kv.value) for kv in page], "bookmark": following}

    @transaction(submit=False)
    def DeletedRecords(self, ctx: Context, dataset: str, size: int, bookmark: str) -> dict:  # noqa: N802
        """A page of a dataset's deleted record ids: the data side never uses their rows."""
        organisation = get_dataset(ctx, dataset)["organisation"]
        require(ctx, *DATA_SIDE, organisation=organisation)
        state = PrivateState(ctx, organisation)
        page, following = state.page(state.key(DELETED_RECORD, dataset), size, bookmark)
        return {"record_ids": [entry["record_id"] for _, entry in page], "bookmark": following}

    @transaction(submit=False)
    def MyRecords(self, ctx: Context, size: int, bookmark: str) -> dict:  # noqa: N802
        """A patient's own records, across datasets."""
        patient = require(ctx, "patient")
        state = PrivateState(ctx, patient.organisation)
        index = state.key(PATIENT_RECORD, state.hide(patient.key))
        page, following = state.page(index, size, bookmark)
        records = [_record(state, entry["dataset"], entry["record_id"]) for _, entry in page]
        return {"records": records, "bookmark": following}

    @staticmethod
    def _visible(ctx: Context, dataset: str, record_id: str, history: bool) -> dict:
        """A record, for its patient and its organisation's data side: anyone else is
        refused before anything private is read (their peer holds none of it)."""
        meta = get_dataset(ctx, dataset)
        who = caller(ctx)
        if who.organisation != meta["organisation"] or who.role not in ("patient", *DATA_SIDE):
            raise Refused(f"{who.key} may not see the records of {meta['name']!r}")
        record = _record(PrivateState(ctx, meta["organisation"]), dataset, record_id, history)
        if who.role == "patient" and who.key != record["patient"]:
            raise Refused(f"{who.key} may not see the records of {meta['name']!r}")
        return record


def register_records(ctx: Context, dataset: str, entries: list[dict], by: str) -> dict:
    """Register checked record entries: new, updated (a new version) or unchanged; a
    deleted record stays deleted (an import run again does not bring it back)."""
    state = PrivateState(ctx, get_dataset(ctx, dataset)["organisation"])
    keys = [record_key(state, dataset, entry["record_id"]) for entry in entries]
    counts = {"registered": 0, "updated": 0, "unchanged": 0, "deleted": 0}
    moment = timestamp(now(ctx))
    ctx.stub.start_write_batch()
    for index, (entry, existing) in enumerate(zip(entries, state.read_many(keys), strict=True)):
        if existing and existing["patient"] != entry["patient"]:
            raise Conflict(
                f"records[{index}] would move record {entry['record_id']!r} to another patient"
            )
        if existing and existing["deleted"]:
            counts["deleted"] += 1
            continue
        if existing and (existing["sha256"], existing["object_key"]) == (
            entry["sha256"], entry["object_key"],
        ):  # fmt: skip
            counts["unchanged"] += 1
            continue
        record = {
            "dataset": dataset,
            **entry,
            "version": (existing["version"] + 1) if existing else 1,
            "deleted": False,
            "registered_by": by,
            "registered_at": moment,
            "history": existing["history"] if existing else [],
        }
        _store_record(ctx, state, record)
        if existing is None:
            marker = state.key(PATIENT_RECORD, state.hide(entry["patient"]), dataset,
                               state.hide(entry["record_id"]))  # fmt: skip
            state.write(marker, {"dataset": dataset, "record_id": entry["record_id"]})
        counts["updated" if existing else "registered"] += 1
    if not (counts["registered"] or counts["updated"]):
        # A batch registered again writes this, blindly (no read, so no conflict): a
        # transaction that wrote nothing private would need every organisation's
        # endorsement, which none but this one can give.
        state.write(state.key(UNCHANGED_BATCH, dataset), {})
    emit(ctx, Event.RECORDS_REGISTERED, {"dataset": dataset, **counts})
    return counts


def _record(state: PrivateState, dataset: str, record_id: str, history: bool = False) -> dict:
    missing = f"there is no record {record_id!r} in {dataset!r}"
    return state.entry(record_key(state, dataset, record_id), missing, history)


def _store_record(ctx: Context, state: PrivateState, record: dict) -> None:
    """Write a record as it now stands, this version added to its history."""
    version = {k: v for k, v in record.items() if k != "history"}
    change = {"tx_id": ctx.stub.tx_id, "time": timestamp(now(ctx)), "record": version}
    state.write(
        record_key(state, record["dataset"], record["record_id"]),
        {**record, "history": [*record.get("history", []), change]},
    )


def register_partition(
    ctx: Context, dataset: str, object_key: str, sha256: str, rows: int, by: str
) -> dict:
    """Register one stored object holding ``rows`` records; unchanged if already so."""
    if rows < 1:
        raise Invalid("rows must be at least 1")
    state_key = key(PARTITION, dataset, text(object_key, "object_key", 1024))
    entry = {"dataset": dataset, "object_key": object_key,
             "sha256": sha256_hex(sha256, "sha256"), "rows": rows}  # fmt: skip
    existing = read(ctx, state_key)
    if existing is not None and all(existing[k] == v for k, v in entry.items()):
        return {**existing, "changed": False}
    if existing is not None:  # its bytes were registered: others would mean they were replaced
        raise Conflict(
            f"the part {object_key!r} of {dataset!r} is registered with other contents; a "
            "stored object is never replaced: store the new bytes under a key of their own"
        )
    value = {**entry, "registered_by": by, "registered_at": timestamp(now(ctx))}
    write(ctx, state_key, value)
    emit(ctx, Event.RECORDS_REGISTERED, {"dataset": dataset, "partition": object_key})
    return {**value, "changed": True}


def parse_records(batch: list, organisation: str) -> list[dict]:
    """Every entry of a registration batch, checked before anything is read or written."""
    entries, seen = [], set()
    for index, entry in enumerate(batch):
        where = f"records[{index}]"
        if not isinstance(entry, dict):
            raise Invalid(f"{where} must be a JSON object")
        record_id = name(str(entry.get("record_id", "")), f"{where}.record_id")
        if record_id in seen:
            raise Invalid(f"{where}.record_id {record_id!r} appears twice in the batch")
        seen.add(record_id)
        entries.append(
            {
                "record_id": record_id,
                "patient": patient_key(
                    name(str(entry.get("patient", "")), f"{where}.patient"), organisation
                ),
                "sha256": sha256_hex(entry.get("sha256", ""), f"{where}.sha256"),
                "object_key": text(str(entry.get("object_key", "")), f"{where}.object_key", 1024),
            }
        )
    return entries
