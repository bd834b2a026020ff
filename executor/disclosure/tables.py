"""Small-cell suppression and rounding for count tables, with secondary suppression.

A count table of any number of dimensions (groups by bins, rows by columns…) is treated
as if every marginal total were known to the researcher: the cohort's size is on the
ledger, and other queries can give the others. Cells below the threshold are
suppressed (ACRO's threshold check decides which); then, while some suppressed cell
could still be pinned down from the released cells and the totals, the smallest cell
beside it that widens its feasible range is suppressed too. Pinned down means a range
narrower than the threshold, or than the smallest total holding the cell where that
is smaller (no suppression hides more than that total does). The ranges are worked out
exactly by linear programming over the suppressed cells (one dimension has a closed
form). Released cells are rounded to the nearest multiple of the rounding base.
"""

from __future__ import annotations

import itertools

import numpy as np

from flowblock.executor.disclosure.sdc import RiskAppetite, below_threshold


def suppress(
    counts: np.ndarray, appetite: RiskAppetite, few_patients: np.ndarray | None = None
) -> np.ndarray:
    """The cells to withhold from a count table (True: suppressed).

    ``few_patients`` marks cells whose records come from fewer patients than the
    threshold (many records of one patient are still one patient): withheld too.
    """
    counts = np.asarray(counts, dtype=float)
    primary = below_threshold(counts, appetite) if counts.size else np.zeros(0, bool)
    if few_patients is not None:
        primary = primary | few_patients
    mask = primary.copy()
    if not primary.any():
        return mask
    threshold = appetite.safe_threshold
    constraints = _marginals(counts.shape)
    for _ in range(counts.size):
        exposed = _exposed(counts, mask, primary, constraints, threshold)
        if exposed is None:
            break
        partner = _partner(counts, mask, exposed, threshold)
        if partner is None:  # nothing left to hide behind: the rest goes too
            mask[:] = True
            break
        mask[partner] = True
    return mask


def round_counts(counts: np.ndarray, base: int) -> np.ndarray:
    """Counts rounded to the nearest multiple of ``base`` (as ACRO's round mitigation)."""
    counts = np.asarray(counts)
    if base <= 1:
        return counts.astype(int)
    return (np.rint(counts / base) * base).astype(int)


def _marginals(shape: tuple[int, ...]) -> list[np.ndarray]:
    """Every marginal total of a table, as masks over its cells (the grand total first)."""
    dims = range(len(shape))
    found = []
    for size in range(len(shape)):
        for kept in itertools.combinations(dims, size):
            for index in itertools.product(*(range(shape[d]) for d in kept)):
                selector = np.ones(shape, dtype=bool)
                for dim, value in zip(kept, index, strict=True):
                    other = [slice(None)] * len(shape)
                    other[dim] = np.arange(shape[dim]) != value
                    selector[tuple(other)] = False
                found.append(selector)
    return found


def _exposed(
    counts: np.ndarray,
    mask: np.ndarray,
    primary: np.ndarray,
    constraints: list[np.ndarray],
    threshold: int,
) -> tuple[int, ...] | None:
    """A primarily suppressed cell the released cells and totals pin down too narrowly.

    Its feasible range must span the threshold, or, where a total holding it is smaller
    than the threshold, that total (no suppression can hide more than the total does).
    """
    hidden = [tuple(i) for i in np.argwhere(mask)]
    if counts.ndim == 1:  # only the grand total: each hidden cell lies in [0, their sum]
        width = counts[mask].sum() if len(hidden) > 1 else 0
        needed = min(threshold, counts.sum())
        exposed = [cell for cell in hidden if primary[cell]]
        return exposed[0] if exposed and (width < needed or width == 0) else None
    ranges = _feasible_ranges(counts, mask, constraints, hidden)
    for cell, (low, high) in zip(hidden, ranges, strict=True):
        if primary[cell]:
            cap = min(counts[selector].sum() for selector in constraints if selector[cell])
            if high - low < min(threshold, cap) or high - low < 1:
                return cell
    return None


def _feasible_ranges(
    counts: np.ndarray, mask: np.ndarray, constraints: list[np.ndarray], hidden: list[tuple]
) -> list[tuple[float, float]]:
    """Each hidden cell's least and greatest value given the released cells and totals."""
    from scipy.optimize import linprog

    rows, totals = [], []
    for selector in constraints:
        if (selector & mask).any():
            rows.append([1.0 if selector[cell] else 0.0 for cell in hidden])
            totals.append(float(counts[selector & mask].sum()))
    a_eq, b_eq = np.array(rows), np.array(totals)
    ranges = []
    for j in range(len(hidden)):
        objective = np.zeros(len(hidden))
        objective[j] = 1.0
        low = linprog(objective, A_eq=a_eq, b_eq=b_eq, bounds=(0, None), method="highs")
        high = linprog(-objective, A_eq=a_eq, b_eq=b_eq, bounds=(0, None), method="highs")
        ranges.append((low.fun, -high.fun) if low.success and high.success else (0.0, 0.0))
    return ranges


def _partner(
    counts: np.ndarray, mask: np.ndarray, cell: tuple[int, ...], threshold: int
) -> tuple[int, ...] | None:
    """The released cell to suppress beside ``cell``: in one of its lines (same position
    in all but one dimension) if possible, the smallest that brings that line's hidden
    total to the threshold, else the largest; anywhere in the table as a last resort.
    A released zero may be hidden too: then nobody can tell it is empty."""
    released = ~mask
    for dim in range(counts.ndim):
        line = [slice(None) if d == dim else cell[d] for d in range(counts.ndim)]
        candidates = [tuple(line_cell) for line_cell in _line_cells(counts.shape, cell, dim)
                      if released[tuple(line_cell)]]  # fmt: skip
        if candidates:
            hidden_total = counts[tuple(line)][mask[tuple(line)]].sum()
            enough = [c for c in candidates if hidden_total + counts[c] >= threshold]
            if enough:
                return min(enough, key=lambda c: counts[c])
            return max(candidates, key=lambda c: counts[c])
    anywhere = [tuple(i) for i in np.argwhere(released)]
    return min(anywhere, key=lambda c: counts[c]) if anywhere else None


def _line_cells(shape: tuple[int, ...], cell: tuple[int, ...], dim: int):
    for value in range(shape[dim]):
        if value != cell[dim]:
            yield tuple(value if d == dim else cell[d] for d in range(len(shape)))
