"""A dataset's rows as the ledger says they stand, for the patients a request may use.

The data side reads a dataset only through :meth:`Datasets.cohort_rows`: the rows of a
cohort (patient → the records of theirs that may be used, ``None`` for all), as
:class:`CohortRows`. Every row it answers with is

- verified: each part's bytes match their hash on the ledger, or the first record that
  changed is named (:class:`~flowblock.executor.storage.objects.RecordTampered`);
- current: of a record in several parts (corrected by a write, or imported again), only
  the version the ledger holds now (``records:CurrentParts``), whatever order the parts
  were written in;
- not deleted: a record tombstoned on the ledger (``records:DeletedRecords``) is never
  read again, from a cached part neither;
- consented: only the cohort's patients, and of a patient whose consent names records,
  only those.

Who the cohort of a token is comes from consent as it stands now
(:meth:`Datasets.cohort`); a read or write request names its one patient itself. The
token lifecycle (claim, run, complete) is :mod:`flowblock.executor.worker`'s.
"""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from flowblock.errors import FlowBlockError
from flowblock.executor.algorithms.filters import apply_where
from flowblock.executor.disclosure.differencing import PATIENT_HASH_COLUMN, patient_hashes
from flowblock.executor.images import HASH_COLUMN, OBJECT_COLUMN
from flowblock.executor.ingest import PATIENT_COLUMN, RECORD_COLUMN, row_hashes
from flowblock.executor.storage.objects import ObjectStore, RecordTampered, sha256_hex
from flowblock.labels import category_values
from flowblock.ledger import Contract, all_pages

#: Consents in one page of consent:WhoMayCompute.
PAGE = 10_000
#: Verified, decoded parts kept in memory between requests (each at most 5,000 rows).
PARTS_CACHED = 400
#: Records looked up in one records:CurrentParts call.
CURRENT_PARTS_ASKED = 1_000

#: Patient (a key such as ``p1@Hospital``, or this organisation's own id) → the records
#: of theirs that may be used (``None``: all of them).
Cohort = dict[str, list[str] | None]


@dataclass(frozen=True)
class CohortRows:
    """A cohort's rows of a dataset, and whose they are."""

    dataset: str
    #: The cohort the rows were restricted to: compared with consent as it stands later,
    #: it says whether a result may still be released.
    cohort: Cohort
    #: The rows, with their record and patient ids (and their patients' hashes, when
    #: asked for); the index is the dataset's, so rows taken out leave gaps.
    frame: pd.DataFrame
    #: The sorted patient keys of the rows: a patient with no row left is not among them.
    patients: list[str]


class Datasets:
    """One organisation's datasets, over its ledger contract and its S3 bucket.

    Parts verified and decoded are kept in memory by hash between requests (the hash
    names their bytes, so a cached part cannot go stale), with their patients' hashes for
    the differencing check, worked out once when a part is decoded. One instance serves
    every thread of an executor.
    """

    def __init__(self, contract: Contract, store: ObjectStore, organisation: str) -> None:
        self.contract = contract
        self.store = store
        self.organisation = organisation
        self._parts: dict[str, tuple[pd.DataFrame, np.ndarray]] = {}
        self._repeats: dict[tuple[str, ...], frozenset[str]] = {}
        self._parts_lock = threading.Lock()

    def cohort_rows(
        self,
        dataset: str,
        cohort: Cohort,
        *,
        where: Sequence[tuple[str, str, Any]] = (),
        with_patient_hashes: bool = False,
    ) -> CohortRows:
        """The rows of ``cohort`` in ``dataset`` as the ledger stands now, narrowed by the
        checked filters ``where``; ``with_patient_hashes``, each row's patient's hash as
        the differencing check needs it (:data:`PATIENT_HASH_COLUMN`).

        Each call reads the dataset's listing again (a part, a correction or a deletion
        registered meanwhile counts); parts already verified are not fetched again.
        """
        rows = self._restrict(self._current_rows(dataset, with_patient_hashes), cohort)
        if where:
            rows = apply_where(rows, list(where))
        return CohortRows(dataset, cohort, rows, self._patients_of(rows))

    def cohort(self, token: dict) -> Cohort:
        """Who let a token's requester use the dataset for its purpose, as consent stands
        now: patient → the records they let them use (None: all of them)."""
        entries = all_pages(
            lambda bookmark: self._ledger(
                "consent:WhoMayCompute", token["dataset"], token["requester"], token["purpose"],
                PAGE, bookmark,
            ),
            "patients",
        )  # fmt: skip
        # Pages count consents, not patients: one patient's grants can span two pages.
        # A grant on the whole dataset covers everything; record grants add up.
        cohort: Cohort = {}
        for entry in entries:
            patient, records = entry["patient"], entry["records"]
            if records is None or (patient in cohort and cohort[patient] is None):
                cohort[patient] = None
            else:
                cohort[patient] = sorted({*cohort.get(patient, []), *records})
        return cohort

    def images_of(self, rows: pd.DataFrame) -> list[bytes]:
        """The images of an images dataset's rows (its manifest's), each checked against
        its registered hash: fetched for the rows asked about only, as they are large."""
        keys = list(rows[OBJECT_COLUMN])
        fetched = self.store.get_many(keys) if keys else {}
        images = []
        for key, expected, record_id in zip(keys, rows[HASH_COLUMN], rows[RECORD_COLUMN],
                                            strict=True):  # fmt: skip
            data = fetched[key]
            if sha256_hex(data) != expected:
                raise RecordTampered(f"{key} (record {record_id})", expected, sha256_hex(data))
            images.append(data)
        return images

    def _ledger(self, function: str, *args: Any) -> Any:
        payload = self.contract.evaluate(function, *args)
        return json.loads(payload) if payload else None

    def _current_rows(self, dataset: str, with_patient_hashes: bool) -> pd.DataFrame:
        """Every current, undeleted row of a dataset, each part checked against its hash.

        Parts are fetched concurrently; a part already verified and decoded is reused
        from memory by its hash, its patients' hashes added as a column when asked for.
        """
        partitions = all_pages(
            lambda bookmark: self._ledger("records:ListPartitions", dataset, 1000, bookmark),
            "partitions",
        )
        if not partitions:
            raise FlowBlockError(f"the dataset {dataset!r} has no data yet.")
        with self._parts_lock:
            known = {p["sha256"]: self._parts[p["sha256"]] for p in partitions
                     if p["sha256"] in self._parts}  # fmt: skip
        missing = [p for p in partitions if p["sha256"] not in known]
        fetched = self.store.get_many([p["object_key"] for p in missing]) if missing else {}
        decoded: dict[str, tuple[pd.DataFrame, np.ndarray]] = {}
        for partition in missing:
            data = fetched[partition["object_key"]]
            if sha256_hex(data) != partition["sha256"]:
                self._name_changed_record(dataset, partition, data)
            part = pd.read_parquet(io.BytesIO(data))
            decoded[partition["sha256"]] = part, patient_hashes(part[PATIENT_COLUMN].to_numpy())
        with self._parts_lock:
            self._parts.update(decoded)
            while len(self._parts) > PARTS_CACHED:  # forget the oldest
                self._parts.pop(next(iter(self._parts)))
        parts = [(known | decoded)[p["sha256"]] for p in partitions]
        frame = pd.concat([part for part, _ in parts], ignore_index=True)
        if with_patient_hashes:
            frame[PATIENT_HASH_COLUMN] = np.concatenate([hashes for _, hashes in parts])
        frame = self._current_versions(dataset, frame, partitions, parts)
        deleted = all_pages(
            lambda bookmark: self._ledger("records:DeletedRecords", dataset, 1000, bookmark),
            "record_ids",
        )
        if deleted:  # tombstoned on the ledger: never read, computed on or served again
            frame = frame[~frame[RECORD_COLUMN].isin(deleted)].reset_index(drop=True)
        return frame

    def _current_versions(
        self, dataset: str, frame: pd.DataFrame, partitions: list[dict], parts: list
    ) -> pd.DataFrame:
        """Of a record in several parts (corrected by a write, or imported again), only
        the version the ledger holds now: the row of the part its record names.

        Which records repeat depends only on the parts, so it is worked out once per set
        of part hashes (finding repeats among a million ids takes a third of a second).
        """
        parts_key = tuple(p["sha256"] for p in partitions)
        with self._parts_lock:
            repeats = self._repeats.get(parts_key)
        if repeats is None:
            ids = frame[RECORD_COLUMN]
            repeats = frozenset(ids[ids.duplicated(keep=False).to_numpy()])
            with self._parts_lock:
                self._repeats[parts_key] = repeats
                while len(self._repeats) > PARTS_CACHED:  # forget the oldest
                    self._repeats.pop(next(iter(self._repeats)))
        if not repeats:
            return frame
        ids = sorted(str(record_id) for record_id in repeats)
        current: dict[str, str] = {}
        for start in range(0, len(ids), CURRENT_PARTS_ASKED):
            batch = json.dumps(ids[start : start + CURRENT_PARTS_ASKED])
            current.update(self._ledger("records:CurrentParts", dataset, batch))
        keep = ~frame[RECORD_COLUMN].isin(repeats).to_numpy()
        part_ends = np.cumsum([len(part) for part, _ in parts])
        record_ids = frame[RECORD_COLUMN].to_numpy()
        for row in np.flatnonzero(~keep):  # a few rows: the repeated records' versions
            part = partitions[int(np.searchsorted(part_ends, row, side="right"))]
            keep[row] = current.get(str(record_ids[row])) == part["object_key"]
        return frame[keep].reset_index(drop=True)

    def _name_changed_record(self, dataset: str, partition: dict, data: bytes) -> None:
        """Raise RecordTampered naming the first record whose row no longer matches."""
        key = partition["object_key"]
        try:
            rows = pd.read_parquet(io.BytesIO(data))
        except Exception:  # unreadable: the part as a whole is all we can name
            raise RecordTampered(key, partition["sha256"], sha256_hex(data)) from None
        # An images manifest lists each record's image hash; a table's part, its rows.
        is_manifest = {OBJECT_COLUMN, HASH_COLUMN} <= set(rows.columns)
        hashes = list(rows[HASH_COLUMN]) if is_manifest else row_hashes(rows)
        for record_id, row_hash in zip(rows[RECORD_COLUMN], hashes, strict=True):
            record = self._ledger("records:GetRecord", dataset, str(record_id))
            if record["sha256"] != row_hash:
                raise RecordTampered(f"{key} (record {record_id})", record["sha256"], row_hash)
        raise RecordTampered(key, partition["sha256"], sha256_hex(data))

    def _restrict(self, frame: pd.DataFrame, cohort: Cohort) -> pd.DataFrame:
        """The rows of the cohort's patients (only their granted records, where limited)."""
        suffix = f"@{self.organisation}"
        local = {key.removesuffix(suffix): records for key, records in cohort.items()}
        ids = frame[PATIENT_COLUMN]
        allowed = ids.isin(local).to_numpy()
        limited = {p: set(r) for p, r in local.items() if r is not None}
        if limited:
            rows = ids.isin(limited).to_numpy()
            allowed[rows] = [
                record in limited[patient]
                for patient, record in zip(ids[rows], frame[RECORD_COLUMN][rows], strict=True)
            ]
        return frame[allowed]

    def _patients_of(self, rows: pd.DataFrame) -> list[str]:
        """The sorted patient keys of some rows (each distinct id turned into a key once)."""
        return sorted(self._patient_key(str(p)) for p in rows[PATIENT_COLUMN].unique())

    def _patient_key(self, patient: str) -> str:
        return patient if "@" in patient else f"{patient}@{self.organisation}"


def lean(rows: pd.DataFrame, schema: dict | None = None) -> pd.DataFrame:
    """What a tabular algorithm is given: no record ids, patients as numbers, the
    schema's category columns as categories (the values the schema lists, the public
    ones, when it lists them).

    Aggregates never need a record's id nor a patient's name (only which rows are the
    same patient's), and strings are what makes a large frame slow to hand to the
    sandboxed child: a million rows, 0.7 s against 0.1 s.
    """
    columns = (schema or {}).get("columns", {})
    dropped = [c for c in (RECORD_COLUMN, PATIENT_HASH_COLUMN) if c in rows.columns]
    categories = {
        name: pd.CategoricalDtype(category_values(schema, name)) for name, spec in columns.items()
        if isinstance(spec, dict) and spec.get("type") == "category" and name in rows.columns
        and name not in dropped and name != PATIENT_COLUMN
    }  # fmt: skip
    codes = pd.factorize(rows[PATIENT_COLUMN].to_numpy())[0]
    lean_rows = rows.drop(columns=dropped).assign(**{PATIENT_COLUMN: codes})
    return lean_rows.astype(categories) if categories else lean_rows
