"""Small-cell suppression and rounding for count tables, with secondary suppression.

A count table of any number of dimensions (groups by bins, rows by columns…) is treated
as if every marginal total were known to the researcher: the cohort's size is on the
ledger, and other queries can give the others. Cells below the threshold are
suppressed (ACRO's threshold check decides which); then more cells are suppressed
until no suppressed cell can be pinned down from the released cells and the totals.
Pinned down means a range narrower than the threshold, or than the smallest total
holding the cell where that is smaller (no suppression hides more than that total
does). Released cells are rounded to the nearest multiple of the rounding base.

How the secondary cells are found, in well under a second for a table of 10,000 cells
(``benchmarks/suppression.py``):

- one dimension has a closed form (a hidden cell lies anywhere in [0, the hidden sum]);
- more dimensions use the hypercube method (Repsilber; Giessing's GHMITER): each
  primary cell becomes a corner of one or more hypercubes whose corners are all
  suppressed. Adding ``+d`` at the corners an even number of steps from the cell and
  ``-d`` at the others changes no marginal total, so the cell can move as far as the
  cubes' smallest corners allow, and its range is at least that wide. This is a lower
  bound on the exact range, so it never overstates the protection;
- where no hypercubes suffice in a small table, linear programming over the suppressed
  cells works the exact ranges out (the method used for every table before; it costs
  seconds beyond a few dozen cells); in a larger one, the whole table is withheld, as
  the programme did when nothing was left to hide behind.

Protecting a table is bounded: a table over the policy's ``max_table_cells``, or one whose
protection runs past ``max_protect_seconds``, is refused (``too_many_cells``) rather than
holding the executor.
"""

from __future__ import annotations

import functools
import itertools
import time

import numpy as np

from flowblock.errors import DisclosureRefused
from flowblock.executor.disclosure.sdc import RiskAppetite, below_threshold

#: The largest table the exact linear programme may rescue where hypercubes do not
#: suffice (one solve per hidden cell and step: seconds at this size).
LP_MAX_CELLS = 64
TOO_MANY_CELLS = (
    "too many cells to protect; ask for fewer groups or coarser bins, or with an epsilon."
)


class Deadline:
    """When the protection of one table must have finished; checked between steps."""

    def __init__(self, seconds: float) -> None:
        self.at = time.monotonic() + seconds

    def check(self) -> None:
        if time.monotonic() > self.at:
            raise DisclosureRefused("too_many_cells", TOO_MANY_CELLS)


def suppress(
    counts: np.ndarray, appetite: RiskAppetite, few_patients: np.ndarray | None = None
) -> np.ndarray:
    """The cells to withhold from a count table (True: suppressed).

    ``few_patients`` marks cells whose records come from fewer patients than the
    threshold (many records of one patient are still one patient): withheld too.
    DisclosureRefused (``too_many_cells``) when the table is over the appetite's limits.
    """
    counts = np.asarray(counts, dtype=float)
    if counts.size > appetite.max_table_cells:
        raise DisclosureRefused("too_many_cells", TOO_MANY_CELLS)
    primary = below_threshold(counts, appetite) if counts.size else np.zeros(0, bool)
    if few_patients is not None:
        primary = primary | few_patients
    if not primary.any():
        return primary.copy()
    deadline = Deadline(appetite.max_protect_seconds)  # ACRO's first import is not ours
    threshold = appetite.safe_threshold
    if counts.ndim == 1:
        return _suppress_in_line(counts, primary, threshold, deadline)
    if min(counts.shape) == 1:  # each cell is a total of its own: nothing hides it
        return np.ones(counts.shape, dtype=bool)
    mask = hypercube_suppress(counts, primary, threshold, deadline)
    if mask is None and counts.size <= LP_MAX_CELLS:
        mask = _suppress_by_lp(counts, primary, threshold, deadline)
    return mask if mask is not None else np.ones(counts.shape, dtype=bool)


def round_counts(counts: np.ndarray, base: int) -> np.ndarray:
    """Counts rounded to the nearest multiple of ``base`` (as ACRO's round mitigation)."""
    counts = np.asarray(counts)
    if base <= 1:
        return counts.astype(int)
    return (np.rint(counts / base) * base).astype(int)


def protection_needed(counts: np.ndarray, threshold: int) -> np.ndarray:
    """How wide each cell's feasible range must be when it is a primary cell: the
    threshold, or the smallest total holding the cell where that is smaller, and at
    least 1 (a range of one value tells the value)."""
    counts = np.asarray(counts, dtype=float)
    lines = [np.broadcast_to(counts.sum(axis=d, keepdims=True), counts.shape)
             for d in range(counts.ndim)]  # fmt: skip
    return np.maximum(1.0, np.minimum(threshold, np.minimum.reduce(lines)))


# -- one dimension: only the grand total ------------------------------------------------


def _suppress_in_line(
    counts: np.ndarray, primary: np.ndarray, threshold: int, deadline: Deadline
) -> np.ndarray:
    """Each hidden cell lies in [0, the hidden cells' sum] (two or more of them): hide
    the smallest cell that brings that sum to the threshold, else the largest, until
    the sum is wide enough."""
    mask = primary.copy()
    needed = max(1.0, min(threshold, counts.sum()))
    while True:
        deadline.check()
        hidden_total = counts[mask].sum()
        if mask.sum() > 1 and hidden_total >= needed:
            return mask
        released = np.flatnonzero(~mask)
        if released.size == 0:  # nothing left to hide behind
            return mask
        values = counts[released]
        enough = hidden_total + values >= threshold
        if enough.any():
            mask[released[np.argmin(np.where(enough, values, np.inf))]] = True
        else:
            mask[released[np.argmax(values)]] = True


# -- more dimensions: hypercubes --------------------------------------------------------


def hypercube_suppress(
    counts: np.ndarray, primary: np.ndarray, threshold: int, deadline: Deadline | None = None
) -> np.ndarray | None:
    """The cells to withhold so that each primary cell is a corner of suppressed
    hypercubes wide enough for it (see the module's docstring); None where some primary
    cell has none (a small table may then need the exact programme, else everything).

    Several cubes may serve one cell: they move it together, each corner giving up no
    more than its count over them all. Cubes are taken for the most width for their
    cost (the counts they newly hide, plus one a cell so that empty cells are not
    free), those already hidden first. A cube chosen for one cell serves the other
    primary cells at its corners too, which need no search of their own where it is
    wide enough for them.
    """
    if min(np.shape(counts)) < 2:  # no cube has a far corner on a line of one cell
        return None
    cubes = _Cubes(np.asarray(counts, dtype=float), primary, threshold)
    deadline = deadline or Deadline(float("inf"))
    cubes.sweep(deadline)
    cubes.sweep(deadline, SWEEP_CUBES * 4)  # the few left: a wider look is cheap
    # The largest cells first: they need the widest cubes, whose corners then shelter
    # the smaller cells beside them at no further cost.
    cells = np.argwhere(primary)
    for cell in map(tuple, cells[np.argsort(-cubes.counts[primary], kind="stable")]):
        if cubes.waiting[cell]:
            deadline.check()
            if not cubes.protect(cell):
                return None
    return cubes.mask


#: How many hidden cells of each of a cell's lines the search for hidden cubes tries
#: (the largest): enough to find one where many are hidden, cheap where few are.
HIDDEN_MATES = 12
#: How many of the best cubes one round of the search considers taking together.
PICKS = 32
#: How many cells the cube sweep looks at once (memory: this many blocks of cubes).
SWEEP_BLOCK = 1 << 20
#: About how many cubes the sweep tries for each cell.
SWEEP_CUBES = 1024


@functools.cache
def _cube(ndim: int) -> tuple[np.ndarray, np.ndarray]:
    """A cube's corners as which dimensions each moves along from its origin (the origin
    first), and which corners lie an even number of steps from which."""
    moves = np.array(list(itertools.product((False, True), repeat=ndim)))
    steps = (moves[:, None, :] != moves[None, :, :]).sum(axis=2)
    return moves, steps % 2 == 0


class _Cubes:
    """The hypercube method's state over one table: what is hidden, what hiding more
    costs, and which primary cells still wait for their cubes."""

    def __init__(self, counts: np.ndarray, primary: np.ndarray, threshold: int) -> None:
        self.counts, self.mask, self.waiting = counts, primary.copy(), primary.copy()
        # The sweep's copies in single precision (half the memory) where that is exact.
        self.counts32 = counts.astype(np.float32 if counts.max() < 2**24 else float)
        self.price = np.where(primary, 0.0, counts + 1.0)
        self.needed = protection_needed(counts, threshold)
        self.moves, self.even_from = _cube(counts.ndim)

    def sweep(self, deadline: Deadline, cubes: int = SWEEP_CUBES) -> None:
        """Let every waiting cell that cubes already hidden protect go without a search
        of its own: each cell's largest hidden line-mates (about ``cubes`` cubes, so the
        fewer mates the more dimensions) make a block of cubes, of which disjoint ones
        are taken, the widest first, for all the cells at once."""
        cells = np.argwhere(self.waiting)
        if cells.size == 0:
            return
        side = min(16, max(2, int(cubes ** (1 / self.counts.ndim))))
        per_dim = [min(n - 1, side) for n in self.counts.shape]
        chunk = max(1, SWEEP_BLOCK // int(np.prod(per_dim)))
        for start in range(0, len(cells), chunk):
            deadline.check()
            part = cells[start : start + chunk]
            done = self._sheltered(part, per_dim)
            self.waiting[tuple(part[done].T)] = False

    def _sheltered(self, cells: np.ndarray, per_dim: list[int]) -> np.ndarray:
        """Which of ``cells`` the cubes among their hidden line-mates protect."""
        n, ndim = len(cells), self.counts.ndim
        mates, valid = [], np.ones((n, *per_dim), dtype=bool)
        for dim, size in enumerate(per_dim):
            line = tuple(np.arange(self.counts.shape[dim])[None, :] if d == dim
                         else cells[:, d, None] for d in range(ndim))  # fmt: skip
            score = np.where(self.mask[line], self.counts[line], -1.0)
            score[np.arange(n), cells[:, dim]] = -1.0  # the cell itself is no mate
            top = np.argsort(-score, axis=1, kind="stable")[:, :size]
            shape = [n] + [1] * ndim
            shape[dim + 1] = size
            mates.append(top.reshape(shape))
            valid &= (np.take_along_axis(score, top, axis=1) >= 0).reshape(shape)
        down = up = None
        for moves, even in zip(self.moves[1:], self.even_from[0, 1:], strict=True):
            here = [cells[:, d].reshape([n] + [1] * ndim) for d in range(ndim)]
            index = tuple(m if move else h for m, h, move in zip(mates, here, moves, strict=True))
            values = self.counts32[index]
            if moves.sum() > 1:  # a line-mate is hidden already; a farther corner may not be
                valid = valid & self.mask[index]
            if even:
                down = values if down is None else np.minimum(down, values)
            else:
                up = values if up is None else np.minimum(up, values)
        down = np.broadcast_to(down, valid.shape).reshape(n, -1)
        up = np.where(valid, up, -np.inf).reshape(n, -1)  # no cube: never the widest
        own, needed = self.counts[tuple(cells.T)], self.needed[tuple(cells.T)]
        fall, rise = np.zeros(n), np.zeros(n)
        live = np.arange(n)  # the cells still short of their width and of cubes
        for _ in range(min(per_dim)):
            gain = np.minimum((own - fall)[live, None], down[live]) + up[live]
            best = gain.argmax(axis=1)
            keep = gain[np.arange(len(live)), best] > 0
            live, best = live[keep], best[keep]
            if live.size == 0:
                break
            fall[live] += np.minimum(own[live] - fall[live], down[live, best])
            rise[live] += up[live, best]
            # The next cube shares no corner with this one: nothing on its far corner's
            # hyperplanes.
            blocked = up.reshape((n, *per_dim))
            for dim, index in enumerate(np.unravel_index(best, per_dim)):
                blocked[(live,) + (slice(None),) * dim + (index,)] = -np.inf
            live = live[fall[live] + rise[live] < needed[live]]
            if live.size == 0:
                break
        return fall + rise >= needed

    def protect(self, cell: tuple[int, ...]) -> bool:
        """Hide cubes around ``cell`` until its range is as wide as it needs; False where
        no more cubes widen it.

        The cell falls as far as its cubes' other even corners can fall (and no lower
        than zero), and rises as far as their odd corners can fall; a corner shared by
        cubes gives up its count once over them all (conservatively: what it gains in
        one cube is not counted against what it gives up in another).
        """
        self.waiting[cell] = False
        progress = _Progress(cell, self.counts[cell], float(self.needed[cell]), self.counts)
        hidden = self._hidden_mates(cell)
        for axes, free in ((hidden, True), (None, False)):
            while axes is not None or not free:
                picks = self._round(progress, axes, free)
                if not picks:
                    break
                for far in picks:
                    self._hide(progress, far)
                if progress.done:
                    return True
                progress.spend(self.even_from)
        return progress.done

    def _hidden_mates(self, cell: tuple[int, ...]) -> tuple[np.ndarray, ...] | None:
        """Per dimension, the hidden cells of the cell's line (the largest few), or None
        where a line has none (then no cube is all hidden)."""
        mates = []
        for dim, origin in enumerate(cell):
            line = (*cell[:dim], slice(None), *cell[dim + 1 :])
            found = np.flatnonzero(self.mask[line])
            found = found[found != origin]
            if found.size == 0:
                return None
            if found.size > HIDDEN_MATES:
                found = found[np.argsort(-self.counts[line][found])[:HIDDEN_MATES]]
            mates.append(found)
        return tuple(mates)

    def _corners(self, cell: tuple, axes) -> tuple[tuple | None, list[tuple]]:
        """Where each corner of every cube with origin ``cell`` lies, over the cubes' far
        corners (all of the table, or those on ``axes``): the block to take (None: the
        table), and per corner a slice of it, along the dimensions the corner moves
        along, and on the cell's own line elsewhere (the origin first)."""
        if axes is None:
            block, origin, rest = None, cell, slice(None)
        else:  # the block of the lines' chosen cells, the cell at its origin
            block = np.ix_(*(np.concatenate(([c], a)) for c, a in zip(cell, axes, strict=True)))
            origin, rest = (0,) * len(cell), slice(1, None)
        slices = [tuple(rest if m else slice(c, c + 1) for c, m in zip(origin, ms, strict=True))
                  for ms in self.moves]  # fmt: skip
        return block, slices

    @staticmethod
    def _views(table: np.ndarray, where: tuple[tuple | None, list[tuple]]) -> list[np.ndarray]:
        block, slices = where
        table = table if block is None else table[block]
        return [table[s] for s in slices]

    def _round(self, progress: _Progress, axes, free: bool) -> list[tuple[int, ...]]:
        """The best cubes to add, sharing no corner: each the most width for its cost
        (no more counted than is still needed), only hidden ones where ``free``."""
        cell, even = progress.cell, self.even_from[0]
        where = self._corners(cell, axes)
        falls = self._views(progress.falls, where)
        rises = falls if progress.rises is progress.falls else self._views(progress.rises, where)
        down = functools.reduce(np.minimum, [v for v, e in zip(falls, even, strict=True) if e][1:])
        up = functools.reduce(np.minimum, [v for v, e in zip(rises, even, strict=True) if not e])
        cost = functools.reduce(np.add, self._views(self.price, where)[1:])
        gain = np.minimum(progress.own - progress.fall, down) + up
        if axes is None:  # a far corner on the cell's own lines makes no cube
            for dim, origin in enumerate(cell):
                gain[(slice(None),) * dim + (origin,)] = -np.inf
        worth = np.minimum(gain, progress.left) / (cost + 0.5)
        if free:
            worth[cost > 0] = -np.inf
        flat = worth.ravel()
        best = np.argpartition(-flat, PICKS)[:PICKS] if flat.size > PICKS else np.arange(flat.size)
        best = best[np.argsort(-flat[best], kind="stable")]
        best = best[flat[best] > 0]
        picks, used, left = [], [set() for _ in cell], progress.left
        for far in zip(*(i.tolist() for i in np.unravel_index(best, worth.shape)), strict=True):
            if any(f in taken for f, taken in zip(far, used, strict=True)):
                continue  # shares a corner with a cube taken this round
            for f, taken in zip(far, used, strict=True):
                taken.add(f)
            left -= gain[far]
            if axes is not None:  # back from the block to the table
                far = tuple(int(a[f]) for f, a in zip(far, axes, strict=True))
            picks.append(far)
            if left <= 0:
                break
        return picks

    def _hide(self, progress: _Progress, far: tuple[int, ...]) -> None:
        """Hide one cube's corners, count what it gives the cell, and let the other
        primary cells at its corners that it alone protects go without a search."""
        cell = progress.cell
        corners = tuple(np.where(self.moves[:, d], far[d], cell[d]) for d in range(len(cell)))
        self.mask[corners], self.price[corners] = True, 0.0
        progress.add(corners, self.even_from)
        waiting = self.waiting[corners]
        if waiting.any():
            values = self.counts[corners]
            others = self.even_from & ~np.eye(len(values), dtype=bool)
            fall = np.minimum(values, np.where(others, values, np.inf).min(axis=1))
            rise = np.where(~self.even_from, values, np.inf).min(axis=1)
            sheltered = waiting & (fall + rise >= self.needed[corners])
            self.waiting[tuple(c[sheltered] for c in corners)] = False


class _Progress:
    """How far one cell's cubes let it fall and rise, and what their corners have left
    to give (their counts, less what earlier cubes took)."""

    def __init__(self, cell: tuple, own: float, needed: float, counts: np.ndarray) -> None:
        self.cell, self.own, self.needed = cell, own, needed
        self.falls = self.rises = counts
        self.fall = self.rise = 0.0
        self.taken: list[tuple[tuple[np.ndarray, ...], float, float]] = []

    @property
    def left(self) -> float:
        return self.needed - self.fall - self.rise

    @property
    def done(self) -> bool:
        return self.left <= 0

    def add(self, corners: tuple[np.ndarray, ...], even_from: np.ndarray) -> None:
        values_fall, values_rise = self.falls[corners], self.rises[corners]
        even = even_from[0]
        given_fall = min(self.own - self.fall, values_fall[1:][even[1:]].min())
        given_rise = values_rise[~even].min()
        self.fall, self.rise = self.fall + given_fall, self.rise + given_rise
        self.taken.append((corners, given_fall, given_rise))

    def spend(self, even_from: np.ndarray) -> None:
        """Take what this round's cubes gave from their corners, for the next round."""
        even = even_from[0]
        self.falls, self.rises = self.falls.copy(), self.rises.copy()
        for corners, given_fall, given_rise in self.taken:
            self.falls[tuple(c[1:][even[1:]] for c in corners)] -= given_fall
            self.rises[tuple(c[~even] for c in corners)] -= given_rise
        self.taken.clear()


# -- small tables: exact ranges by linear programming -----------------------------------


def feasible_ranges(
    counts: np.ndarray, mask: np.ndarray, deadline: Deadline | None = None
) -> dict[tuple[int, ...], tuple[float, float]]:
    """Each suppressed cell's least and greatest value given the released cells and
    every marginal total, worked out exactly (what the most careful attacker can say)."""
    counts = np.asarray(counts, dtype=float)
    hidden = [tuple(int(i) for i in c) for c in np.argwhere(mask)]
    ranges = _feasible_ranges(counts, mask, _marginals(counts.shape), hidden, deadline)
    return dict(zip(hidden, ranges, strict=True))


def _suppress_by_lp(
    counts: np.ndarray, primary: np.ndarray, threshold: int, deadline: Deadline
) -> np.ndarray:
    """While some primary cell's exact range is too narrow, hide the smallest cell beside
    it that widens it; everything where nothing is left to hide."""
    mask = primary.copy()
    constraints = _marginals(counts.shape)
    for _ in range(counts.size):
        exposed = _exposed(counts, mask, primary, constraints, threshold, deadline)
        if exposed is None:
            break
        partner = _partner(counts, mask, exposed, threshold)
        if partner is None:  # nothing left to hide behind: the rest goes too
            mask[:] = True
            break
        mask[partner] = True
    return mask


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
    deadline: Deadline,
) -> tuple[int, ...] | None:
    """A primarily suppressed cell the released cells and totals pin down too narrowly.

    Its feasible range must span the threshold, or, where a total holding it is smaller
    than the threshold, that total (no suppression can hide more than the total does).
    """
    hidden = [tuple(i) for i in np.argwhere(mask)]
    ranges = _feasible_ranges(counts, mask, constraints, hidden, deadline)
    for cell, (low, high) in zip(hidden, ranges, strict=True):
        if primary[cell]:
            cap = min(counts[selector].sum() for selector in constraints if selector[cell])
            if high - low < min(threshold, cap) or high - low < 1:
                return cell
    return None


def _feasible_ranges(
    counts: np.ndarray,
    mask: np.ndarray,
    constraints: list[np.ndarray],
    hidden: list[tuple],
    deadline: Deadline | None = None,
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
        if deadline is not None:
            deadline.check()
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
