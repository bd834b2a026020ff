"""Query auditing: no set of exact releases, by anyone, may pin down a few patients.

The differencing check compares two cohorts; a tracker uses three or more. A sum over
A and one patient, a sum over B and that patient, and a sum over A, the patient and B
give the patient's value, though every two of them are far apart; two organisations'
researchers who pool their results do the same across organisations. So the data side
keeps every exact release on a dataset, made to anyone, and refuses one that, with the
earlier ones, determines the total of fewer than ``min_cohort`` patients (one patient's
value, or whether they are in a cohort: a count is the sum of ones).

Each released cohort is a sum query over patients (Chin and Özsoyoğlu's model, as in
Kenthapadi, Mishra and Nissim's *Simulatable auditing*, PODS 2005): a total is
determined exactly when its indicator lies in the row space of the releases. Patients
in the same released cohorts are alike to every query, so they are grouped into atoms
and each release is a 0/1 row over atoms; atoms are split as releases come, and the
rows are kept in reduced row-echelon form, modulo a prime drawn at random per
process (exact arithmetic, and no one can build cohorts whose rank would drop mod an
unknown prime). The work grows with the number of atoms and releases, not of patients,
except for looking a cohort's patients up (a sorted array, as differencing keeps them).

What is searched: every atom's total (a single atom's is determined iff a basis row is
its unit vector, so this is exact), every pair of atoms' (exact too: a basis row is
the pair's indicator, or two rows' tails cancel) and every basis row that is a set's
indicator. A determined total of three or more small atoms spread over several rows is
not looked for: finding the smallest determined set is a minimum-weight codeword
problem, NP-hard. What a refusal reveals, and its bound, are in
``docs/disclosure-auditing.md``.

The releases are the records :mod:`~flowblock.executor.disclosure.differencing` writes
(one per token, before it is checked, emptied when refused), read across every
organisation's folder; the rows built from them are kept in memory between checks, and
read again from the bucket after a restart (or when a record they took in while it was
being checked is withdrawn).
"""

from __future__ import annotations

import secrets
import threading
import time
import weakref
from typing import Any

import numpy as np

from flowblock.errors import DisclosureRefused
from flowblock.executor.disclosure import differencing
from flowblock.executor.storage.objects import ObjectStore

REFUSALS = "private/disclosure/refusals"
#: The most rows-by-atoms entries the echelon form may hold (8 bytes each): beyond it a
#: release is refused rather than audited.
MAX_CELLS = 20_000_000
_states: weakref.WeakKeyDictionary[Any, dict[str, Releases]] = weakref.WeakKeyDictionary()
_lock = threading.Lock()  # one check at a time per executor: they share the rows


class Releases:
    """The exact releases on one dataset, as rows over atoms in reduced row-echelon form.

    Atoms of fewer than ``minimum`` patients are *small*. A row is pivoted on a large
    atom whenever it has one, so the rows pivoted on small atoms span exactly the totals
    the releases determine over small atoms alone (a determined total over fewer than
    ``minimum`` patients can only be one of those): the search looks there only.
    """

    def __init__(self, prime: int, minimum: int) -> None:
        self.prime, self.minimum = prime, minimum
        self.hashes = np.empty(0, dtype=np.uint64)  # every released patient, sorted
        self.atoms = np.empty(0, dtype=np.int64)  # the atom of each
        # Atom 0 holds the patients in no release yet: its size is unknown, never used.
        self.sizes = np.zeros(1, dtype=np.int64)
        self.rows = np.zeros((0, 1), dtype=np.int64)
        self.pivots: list[int] = []
        self.keys: set[str] = set()  # the records included

    @property
    def cells(self) -> int:
        return (len(self.pivots) + 1) * self.sizes.size

    def include(self, cohorts: list[np.ndarray]) -> None:
        """Add the patients of ``cohorts`` (sorted, distinct hashes) not seen before, all
        at once (one insertion into the sorted array, however many cohorts)."""
        if not cohorts:
            return
        union = np.sort(np.concatenate(cohorts))  # sorting beats np.unique's hashing here
        union = union[np.concatenate(([True], union[1:] != union[:-1]))] if union.size else union
        new = union[~self._known(union)]
        if new.size:
            at = np.searchsorted(self.hashes, new)
            self.hashes = np.insert(self.hashes, at, new)
            self.atoms = np.insert(self.atoms, at, 0)

    def place(self, cohort: np.ndarray) -> np.ndarray:
        """Where the cohort's patients (already included) are in the sorted array."""
        return np.searchsorted(self.hashes, cohort)

    def split(self, at: np.ndarray) -> None:
        """Split every atom holding part of the cohort whose patients are at ``at``.
        No earlier total changes: both parts keep the atom's coefficient in every row."""
        if not at.size:
            return
        labels = self.atoms[at]
        inside = np.bincount(labels, minlength=self.sizes.size)
        parted = (inside > 0) & (inside < self.sizes)
        parted[0] = inside[0] > 0  # leaving "in no release": always a new atom
        split = np.flatnonzero(parted)
        if not split.size:
            return
        lookup = np.arange(self.sizes.size)
        lookup[split] = np.arange(self.sizes.size, self.sizes.size + split.size)
        self.atoms[at] = lookup[labels]
        moved = inside[split]
        self.sizes[split] -= moved
        self.sizes[0] = 0
        self.sizes = np.concatenate([self.sizes, moved])
        self.rows = np.concatenate([self.rows, self.rows[:, split]], axis=1)
        self._pivot_on_large_atoms()

    def vector(self, at: np.ndarray) -> np.ndarray:
        """The cohort whose patients are at ``at`` as a 0/1 row over atoms (after
        :meth:`split`: each atom is wholly in it or out)."""
        row = np.zeros(self.sizes.size, dtype=np.int64)
        row[self.atoms[at]] = 1
        return row

    def add(self, row: np.ndarray) -> bool:
        """Add a release's row; False if earlier releases already determine its total."""
        p = self.prime
        if self.pivots:  # a 0/1 row: subtract the basis rows at its pivots (sums < 2^62)
            row = (row - self.rows[row[self.pivots] != 0].sum(axis=0)) % p
        nonzero = np.flatnonzero(row)
        if not nonzero.size:
            return False
        large = nonzero[self.sizes[nonzero] >= self.minimum]
        self._insert(row, int(large[0] if large.size else nonzero[0]))
        return True

    def lightest(self, deadline: float) -> frozenset[int] | None:
        """Atoms of fewer than ``minimum`` patients in all over which the releases
        determine a total (a value, a sum, a count or a difference); None if none."""
        small = [i for i, pivot in enumerate(self.pivots) if self.sizes[pivot] < self.minimum]
        if not small:
            return None
        basis = self.rows[small]
        columns = np.flatnonzero(basis.any(axis=0))
        # Atoms whose columns are parallel are cut together by every total: merged.
        merged: dict[bytes, list[int]] = {}
        for column, values in zip(columns, basis[:, columns].T, strict=True):
            first = values[np.flatnonzero(values)[0]]
            merged.setdefault((values * pow(int(first), -1, self.prime) % self.prime).tobytes(),
                              []).append(int(column))  # fmt: skip
        groups = list(merged.values())
        directions = np.stack([basis[:, g[0]] for g in groups], axis=1)
        weights = [int(self.sizes[g].sum()) for g in groups]
        found = _lightest_cut(directions, weights, self.minimum, self.prime, deadline)
        return None if found is None else frozenset(a for j in found for a in groups[j])

    def _insert(self, row: np.ndarray, pivot: int) -> None:
        p = self.prime
        row = row * pow(int(row[pivot]), -1, p) % p  # entries under 2^31: products fit
        rows = (self.rows - np.outer(self.rows[:, pivot], row) % p) % p
        self.rows = np.vstack([rows, row])
        self.pivots.append(pivot)

    def _pivot_on_large_atoms(self) -> None:
        """Move the pivot of a row pivoted on a small atom to a large one it holds (an
        atom split into small parts, or a split's large part, can leave such a row)."""
        large = self.sizes >= self.minimum
        while self.pivots:
            on_small = ~large[self.pivots]
            wrong = np.flatnonzero(on_small & (self.rows[:, large] != 0).any(axis=1))
            if not wrong.size:
                return
            i = int(wrong[0])
            row = self.rows[i]
            self.rows = np.delete(self.rows, i, axis=0)
            del self.pivots[i]
            self._insert(row, int(np.flatnonzero(row * large)[0]))

    def _known(self, cohort: np.ndarray) -> np.ndarray:
        if not self.hashes.size:
            return np.zeros(cohort.size, dtype=bool)
        at = np.searchsorted(self.hashes, cohort).clip(max=self.hashes.size - 1)
        return self.hashes[at] == cohort


def _lightest_cut(
    directions: np.ndarray, weights: list[int], minimum: int, p: int, deadline: float
) -> frozenset[int] | None:
    """Columns of total weight under ``minimum`` whose removal lowers the rank of
    ``directions`` (d by n, rank d, mod p): a nonzero vector of their row space lives on
    them alone. Every such set meets every basis of the columns left, so branching on
    one basis's columns finds one if there is one; each step adds a weight of at least
    one, so the search is at most ``minimum`` deep."""
    d, seen = directions.shape[0], set()

    def visit(removed: frozenset[int], weight: int) -> frozenset[int] | None:
        if removed in seen:
            return None
        seen.add(removed)
        if time.monotonic() > deadline:
            raise _Undecided
        kept = [j for j in range(directions.shape[1]) if j not in removed]
        basis = [kept[c] for c in _independent(directions[:, kept], p)]
        if len(basis) < d:
            return removed
        for j in basis:
            if weight + weights[j] < minimum:
                found = visit(removed | {j}, weight + weights[j])
                if found is not None:
                    return found
        return None

    return visit(frozenset(), 0)


def _independent(matrix: np.ndarray, p: int) -> list[int]:
    """The pivot columns of ``matrix`` mod p (a basis of its columns, leftmost first)."""
    m, pivots, r = matrix.copy() % p, [], 0
    for c in range(m.shape[1]):
        if r == m.shape[0]:
            break
        below = np.flatnonzero(m[r:, c])
        if not below.size:
            continue
        m[[r, r + below[0]]] = m[[r + below[0], r]]
        m[r] = m[r] * pow(int(m[r, c]), -1, p) % p
        factors = m[:, c].copy()
        factors[r] = 0
        m = (m - np.outer(factors, m[r]) % p) % p
        pivots.append(c)
        r += 1
    return pivots


class _Undecided(Exception):
    """The search for a determined small total ran past the deadline."""


class Undecided(DisclosureRefused):
    """Refused because auditing could not decide within the policy's limits: it depends
    on how much was released before, not on who is in the cohorts, so it is not counted
    among the refusals that tell something (:class:`Refusals`)."""


class Auditor:
    """Audits a new release on one dataset against every earlier one, by anyone."""

    def __init__(self, store: ObjectStore, dataset: str) -> None:
        self.store = store
        self.prefix = differencing.dataset_prefix(dataset)

    def check(self, key: str, cohorts: list[np.ndarray], minimum: int, seconds: float) -> None:
        """Refuse ``cohorts`` (the exact releases of the record ``key``, already written)
        if with the earlier releases they determine the total of fewer than ``minimum``
        patients, or if that cannot be decided within ``seconds``."""
        deadline = time.monotonic() + seconds
        with _lock:
            state = self._state(key, minimum)
            # What is caught up stays, even past the deadline: the next check goes on.
            self._catch_up(state, key, deadline)
            state.include(cohorts)
            places = [state.place(cohort) for cohort in cohorts]
            for at in places:  # splitting atoms changes no earlier total
                state.split(at)
            _within_limits(state, deadline)
            saved = state.rows, list(state.pivots)  # rows are replaced, never edited
            try:
                grew = [state.add(state.vector(at)) for at in places]
                _within_limits(state, deadline)
                if any(grew) and state.lightest(deadline) is not None:
                    raise DisclosureRefused(
                        "auditing",
                        "with results released earlier on this dataset (to anyone), this "
                        f"one would determine a total over fewer than {minimum} patients; "
                        "a differentially private request (with an epsilon) may ask it.",
                    )
            except _Undecided:
                state.rows, state.pivots = saved
                raise _too_slow() from None
            except BaseException:
                state.rows, state.pivots = saved
                raise
            state.keys.add(key)

    def _state(self, key: str, minimum: int) -> Releases:
        """The releases kept for the dataset; built afresh if they took in ``key`` itself
        (a concurrent check saw its record written), since it is to be checked now, or
        were built for another minimum."""
        held = _states.setdefault(self.store, {})
        state = held.get(self.prefix)
        if state is None or key in state.keys or state.minimum != minimum:
            held[self.prefix] = state = Releases(_random_prime(), minimum)
        return state

    def _catch_up(self, state: Releases, key: str, deadline: float) -> None:
        """Bring in the records written since the state last looked (by this executor,
        another, or before a restart), concurrent ones still being checked included."""
        keys = [k for k in self.store.list(self.prefix) if k != key and k not in state.keys]
        records = {}
        for record_key, record in differencing.read_records(self.store, keys).items():
            records[record_key] = [c for c, exact in zip(*record, strict=True) if exact]
        state.include([cohort for linear in records.values() for cohort in linear])
        for record_key, linear in records.items():
            places = [state.place(cohort) for cohort in linear]
            for at in places:
                state.split(at)
            for at in places:
                state.add(state.vector(at))
            state.keys.add(record_key)
            _within_limits(state, deadline)


class Refusals:
    """How often an organisation's results on a dataset were refused for what they would
    reveal with earlier ones: each refusal tells one bit about the cohorts, so past
    ``limit`` of them every exact result there is refused alike and tells nothing."""

    def __init__(self, store: ObjectStore, dataset: str, organisation: str) -> None:
        self.store = store
        self.prefix = (
            f"{REFUSALS}/{differencing.safe_name(dataset)}/{differencing.safe_name(organisation)}/"
        )

    def require_fewer_than(self, limit: int) -> None:
        """Refuse every exact result once ``limit`` refusals were made (0: no limit)."""
        if limit and len(self.store.list(self.prefix)) >= limit:
            raise DisclosureRefused(
                "auditing",
                f"your organisation's results on this dataset were refused {limit} times "
                "for what they would reveal with earlier ones; it is now answered only "
                "with differential privacy (ask with an epsilon).",
            )

    def note(self, token_id: str) -> None:
        self.store.put(f"{self.prefix}{token_id}", b"")


def withdrawn(store: ObjectStore, dataset: str, key: str) -> None:
    """A record was withdrawn (its token refused): if the releases kept in memory took it
    in (a concurrent check saw it written), drop them, to be read again from the bucket."""
    prefix = differencing.dataset_prefix(dataset)
    with _lock:
        held = _states.get(store, {})
        if key in getattr(held.get(prefix), "keys", ()):
            del held[prefix]


def _within_limits(state: Releases, deadline: float) -> None:
    if state.cells > MAX_CELLS:
        raise Undecided(
            "auditing",
            "too many distinct cohorts were released on this dataset to audit this result "
            "within the policy's limits; a differentially private request (with an "
            "epsilon) may ask it.",
        )
    if time.monotonic() > deadline:
        raise _too_slow()


def _too_slow() -> Undecided:
    return Undecided(
        "auditing",
        "whether this result, with those released earlier, isolates patients could not "
        "be decided within the policy's time limit; a differentially private request "
        "(with an epsilon) may ask it.",
    )


def _random_prime() -> int:
    """A prime in [2^30, 2^31), drawn afresh: products of two residues fit in 62 bits."""
    while True:
        candidate = secrets.randbelow(1 << 30) | (1 << 30) | 1
        if _is_prime(candidate):
            return candidate


def _is_prime(n: int) -> bool:
    """Miller-Rabin with the bases that decide every n below 3.4e14."""
    d, s = n - 1, 0
    while d % 2 == 0:
        d, s = d // 2, s + 1
    for base in (2, 3, 5, 7, 11, 13, 17):
        x = pow(base, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = x * x % n
            if x == n - 1:
                break
        else:
            return False
    return True
