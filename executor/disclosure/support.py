"""A sum's support: the patients whose values it adds up, a release of its own.

A sum (or a mean: a sum over a count) over a cohort is also a sum over those of its
patients whose value is neither zero nor missing: the others add nothing. A researcher
who filters on the value itself gets that second cohort, less a target, as a release of
its own, and the two totals differ by the target's value: the number of HIV-positive
patients (a sum of the yes/no column over everyone) less the exact size of the positive
cohort but the target is the target's status, though the two cohorts are far apart and
each is a different sum. Query auditing sees the pair once the support is a release too,
so a statistic that adds values up releases each group's support beside the group,
where at least the minimum cohort is left out of it (a support closer to its group needs
no record: the group less the filtered cohort is a small total already).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd


def source(
    frames: Callable[[], dict[tuple, pd.DataFrame]],
    wanted: set[tuple],
    columns: list[str],
    cohort_column: str,
    minimum: int,
) -> Callable[[], list[np.ndarray]]:
    """The cohorts a sum's groups reveal, worked out when asked for: each wanted group's
    patients, and for each summarised column the group's patients whose values add to
    its sum, where at least ``minimum`` of the group's patients are left out."""

    def cohorts() -> list[np.ndarray]:
        found = []
        for key, frame in frames().items():
            if key not in wanted:
                continue
            ids = frame[cohort_column].to_numpy()
            everyone = pd.unique(ids)
            found.append(everyone)
            for column in columns:
                values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float)
                adding = pd.unique(ids[~np.isnan(values) & (values != 0)])
                if adding.size and everyone.size - adding.size >= minimum:
                    found.append(adding)
        return found

    return cohorts
