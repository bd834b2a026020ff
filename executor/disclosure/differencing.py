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
record is then emptied, since nothing was released).
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from collections.abc import Iterable

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
_cache: OrderedDict[str, list[np.ndarray]] = OrderedDict()
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


class CohortHistory:
    """The cohorts an organisation's researchers were given on one dataset."""

    def __init__(self, store: ObjectStore, dataset: str, organisation: str) -> None:
        self.store = store
        self.prefix = f"{PREFIX}/{_safe(dataset)}/{_safe(organisation)}/"

    def check_and_remember(self, token_id: str, cohorts: list[np.ndarray], minimum: int) -> None:
        """Remember ``cohorts`` for ``token_id``; refused (and forgotten) if one of them
        differs from an earlier cohort by fewer than ``minimum`` patients."""
        key = f"{self.prefix}{token_id}.npz"
        self.store.put(key, _encode(cohorts))
        try:
            for earlier_key, earlier in self._earlier(exclude=key):
                for new in cohorts:
                    for old in earlier:
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
        except BaseException:
            self.store.put(key, b"")  # withdrawn: nothing of it was released
            raise

    def _earlier(self, exclude: str):
        keys = [k for k in self.store.list(self.prefix) if k != exclude]
        with _cache_lock:
            missing = [k for k in keys if k not in _cache]
        fetched = self.store.get_many(missing) if missing else {}
        for key in keys:
            with _cache_lock:
                cohorts = _cache.get(key)
            if cohorts is None:
                if key not in fetched:
                    continue
                cohorts = _decode(fetched[key])
                with _cache_lock:
                    _cache[key] = cohorts
                    while len(_cache) > CACHED:
                        _cache.popitem(last=False)
            yield key, cohorts


def _encode(cohorts: list[np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, *cohorts, probe=cohort_hashes([PROBE]))
    return buffer.getvalue()


def _decode(data: bytes) -> list[np.ndarray]:
    if not data:  # a withdrawn record
        return []
    with np.load(io.BytesIO(data), allow_pickle=False) as archive:
        if not np.array_equal(archive["probe"], cohort_hashes([PROBE])):
            raise DisclosureRefused(
                "differencing", "earlier cohorts were kept in a form this executor cannot read."
            )
        names = [name for name in archive.files if name != "probe"]
        return [archive[name] for name in sorted(names, key=lambda n: int(n[4:]))]


def _token_of(key: str) -> str:
    """The token a remembered cohort's object key names."""
    return key.rsplit("/", 1)[-1].removesuffix(".npz")


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
