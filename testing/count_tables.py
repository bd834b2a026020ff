"""Count tables shaped like real grouped counts, for tests and benchmarks of suppression."""

from __future__ import annotations

import numpy as np


def realistic_counts(shape: tuple[int, ...], patients: int, seed: int = 0) -> np.ndarray:
    """Counts of ``patients`` over categories of skewed popularity (log-normal): many
    small cells, as a grouped count over several columns gives."""
    rng = np.random.default_rng(seed)
    share = np.ones(shape)
    for dim, size in enumerate(shape):
        weights = rng.lognormal(0, 1, size)
        share = share * (weights / weights.sum()).reshape(
            [size if d == dim else 1 for d in range(len(shape))]
        )
    return rng.poisson(share * patients).astype(float)
