"""The differencing defence: no two released cohorts may differ by only a few patients.

Two aggregates over cohorts that differ by one patient (a filter that adds, removes or
nudges one person) reveal that patient as surely as a count of one. The executor keeps,
privately and data-side, every cohort it released to an organisation's researchers on a
dataset: in its own bucket, under ``private/disclosure/``, one object per token holding
each released cohort (the whole cohort, and each released group or cell) as sorted
64-bit hashes of patient ids. A new result is released only if each of its cohorts is
either identical to every earlier one or differs from it by at least the minimum cohort
size, counted in patients added plus patients removed.

Objects are written once, named by token, so executors racing on the same organisation
never overwrite each other: a token's cohorts are written *before* it is checked, so of
two conflicting tokens checked at once at least one sees the other and is refused (its
record is then emptied, since nothing was released). The same records, read across
every organisation's folder of a dataset, are what query auditing checks a release
against (:mod:`~flowblock.executor.disclosure.auditing`); each notes which of its cohorts
are exact releases (:class:`Record`).
"""

from __future__ import annotations

import io
import threading
import weakref
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from flowblock.errors import DisclosureRefused
from flowblock.executor.storage.objects import ObjectStore

PREFIX = "private/disclosure/cohorts"
#: The column of each row's patient hash, where the executor keeps it beside its rows.
PATIENT_HASH_COLUMN = "patient_hash"
HASH_KEY = "flowblock-cohort"
#: The hash of a fixed id, stored with every record: a record hashed differently (another
#: hashing) cannot be compared, and is taken as conflicting with everything.
PROBE = "flowblock"
#: Decoded records kept in memory (they never change once written).
CACHED = 2_000
#: Per bucket (its store object): the same key in another bucket is another record.
_caches: weakref.WeakKeyDictionary[Any, OrderedDict[str, Record]] = weakref.WeakKeyDictionary()
_cache_lock = threading.Lock()


def patient_hashes(ids: np.ndarray) -> np.ndarray:
    """Each patient id's 64-bit hash (SipHash, keyed, vectorised by pandas: a million ids
    in a tenth of a second), in the ids' order.

    The executor works these out once per part of a dataset it decodes and keeps them
    beside its rows (:data:`PATIENT_HASH_COLUMN`), so a query pays only to sort its cohort's.
    """
    return pd.util.hash_array(ids.astype(object), hash_key=HASH_KEY, categorize=False)


def cohort_hashes(patients: Iterable[str] | np.ndarray) -> np.ndarray:
    """A cohort as the sorted, distinct hashes of its patients' ids, from the ids or
    from their hashes already worked out (an array of uint64, :func:`patient_hashes`)."""
    ids = patients if isinstance(patients, np.ndarray) else np.array(list(patients), object)
    hashes = np.sort(ids if ids.dtype == np.uint64 else patient_hashes(ids))
    return hashes[np.concatenate(([True], hashes[1:] != hashes[:-1]))] if hashes.size else hashes


def difference(a: np.ndarray, b: np.ndarray) -> int:
    """How many patients are in one cohort and not the other (sorted, distinct hashes)."""
    if a.size == b.size and np.array_equal(a, b):  # the common case: the same cohort again
        return 0
    at = np.searchsorted(a, b).clip(max=max(a.size - 1, 0))
    common = int((a[at] == b).sum()) if a.size else 0
    return a.size + b.size - 2 * common


class Record(NamedTuple):
    """One token's released cohorts, and which of them are exact linear releases (the
    cohorts whose sums or means it gives: each released group's, or the whole cohort's
    when the result has no groups) for :mod:`~flowblock.executor.disclosure.auditing`."""

    cohorts: list[np.ndarray]
    linear: list[bool]


class CohortHistory:
    """The cohorts an organisation's researchers were given on one dataset."""

    def __init__(self, store: ObjectStore, dataset: str, organisation: str) -> None:
        self.store = store
        self.prefix = f"{dataset_prefix(dataset)}{safe_name(organisation)}/"

    def check_and_remember(self, token_id: str, cohorts: list[np.ndarray], minimum: int) -> None:
        """Remember ``cohorts`` for ``token_id``; refused (and forgotten) if one of them
        differs from an earlier cohort by fewer than ``minimum`` patients."""
        key = self.remember(token_id, cohorts)
        try:
            self.check(key, cohorts, minimum)
        except BaseException:
            self.withdraw(key)
            raise

    def remember(
        self, token_id: str, cohorts: list[np.ndarray], linear: list[bool] | None = None
    ) -> str:
        """Write a token's cohorts before they are checked (so a token checked at the same
        time sees them); the record's key. ``linear``: which are exact linear releases
        (all, if not said)."""
        key = f"{self.prefix}{token_id}.npz"
        self.store.put(key, _encode(cohorts, [True] * len(cohorts) if linear is None else linear))
        return key

    def withdraw(self, key: str) -> None:
        """Empty a refused token's record: nothing of it was released."""
        self.store.put(key, b"")
        with _cache_lock:
            _cache_of(self.store).pop(key, None)

    def check(self, key: str, cohorts: list[np.ndarray], minimum: int) -> None:
        """Refuse if one of ``cohorts`` differs from one of the organisation's earlier
        cohorts (all but the record ``key``) by fewer than ``minimum`` patients."""
        earlier = [k for k in self.store.list(self.prefix) if k != key]
        for earlier_key, record in read_records(self.store, earlier).items():
            for new in cohorts:
                for old in record.cohorts:
                    # Sizes apart by the minimum or more cannot be closer than that.
                    if abs(new.size - old.size) >= minimum:
                        continue
                    if 0 < difference(new, old) < minimum:
                        raise DisclosureRefused(
                            "differencing",
                            "the cohort differs from one of token "
                            f"{_token_of(earlier_key)[:12]}…, released earlier to your "
                            f"organisation, by fewer than {minimum} patients; a "
                            "differentially private request (with an epsilon) may ask it.",
                        )


def dataset_prefix(dataset: str) -> str:
    """Where every organisation's records on ``dataset`` are kept (one folder each)."""
    return f"{PREFIX}/{safe_name(dataset)}/"


def read_records(store: ObjectStore, keys: list[str]) -> dict[str, Record]:
    """The records ``keys`` name, in their order (a withdrawn one holds no cohort), read
    once and then kept decoded in memory."""
    with _cache_lock:
        _cache = _cache_of(store)
        missing = [k for k in keys if k not in _cache]
    fetched = store.get_many(missing) if missing else {}
    records = {}
    for key in keys:
        with _cache_lock:
            record = _cache.get(key)
        if record is None:
            if key not in fetched:
                continue
            record = _decode(fetched[key])
            with _cache_lock:
                _cache[key] = record
                while len(_cache) > CACHED:
                    _cache.popitem(last=False)
        records[key] = record
    return records


def _cache_of(store: ObjectStore) -> OrderedDict[str, Record]:
    return _caches.setdefault(store, OrderedDict())


def _encode(cohorts: list[np.ndarray], linear: list[bool]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, *cohorts, probe=cohort_hashes([PROBE]), linear=np.array(linear, dtype=bool))
    return buffer.getvalue()


def _decode(data: bytes) -> Record:
    if not data:  # a withdrawn record
        return Record([], [])
    with np.load(io.BytesIO(data), allow_pickle=False) as archive:
        if not np.array_equal(archive["probe"], cohort_hashes([PROBE])):
            raise DisclosureRefused(
                "differencing", "earlier cohorts were kept in a form this executor cannot read."
            )
        names = [name for name in archive.files if name.startswith("arr_")]
        cohorts = [archive[name] for name in sorted(names, key=lambda n: int(n[4:]))]
        # A record from before auditing names no linear releases: all are taken as such.
        linear = archive["linear"].tolist() if "linear" in archive.files else [True] * len(cohorts)
        return Record(cohorts, linear)


def _token_of(key: str) -> str:
    """The token a remembered cohort's object key names."""
    return key.rsplit("/", 1)[-1].removesuffix(".npz")


def safe_name(name: str) -> str:
    """A dataset or organisation name as one folder of an object key."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
