"""What disclosure control costs: the policy (and DP) against the bare computation.

Run: ``.venv/bin/python benchmarks/disclosure.py [--records 1000000] [--repeats 31]``.

In one process, over one in-memory table of ``--records`` vitals (one record per
patient, handed to the algorithm as the executor hands it), each figure is the median
of ``--repeats`` runs, taken in turns with its baseline's in the same run (a sandboxed
run is a process started afresh, whose time varies by a tenth from run to run here:
fewer than about 30 repeats leave the medians that far apart by chance):

- the mean and the histogram of a column with the Hospital's disclosure policy applied
  (cohort, dominance, extremes, suppression and rounding) against the same data-side
  computation without it, as the executor runs it (the algorithm in its sandboxed
  child); target ≤ 1.1x (issue 7). Against the bare algorithm in this process too,
  the strictest comparison;
- the same statistics in differential-privacy mode (OpenDP, ε = 1), likewise;
- the differencing check of the result's cohort against 10 earlier ones, from rows
  carrying their patients' hashes as the executor loads them (worked out once per part
  it decodes), beside the executor's own cohort bookkeeping (``CohortRows.patients``),
  which it already pays;
- query auditing after 1,000 earlier releases on the dataset (by ten other
  organisations: intervals of one to three cells of the sorted systolic column, as
  range filters give), for a new interval's mean: the policy's record of it with
  auditing against the same record without (differencing and the bookkeeping alike);
  the first check, which reads the 1,000 releases from the bucket (as after a
  restart), is shown on its own.

The DP figures lean on two things the sandbox does: its forkserver warms OpenDP up once
(``flowblock.executor.algorithms.preload``), and glibc backs the children's large
allocations with huge pages (each child is a fresh process paying for every page it
first touches).
"""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING

from common import timed

if TYPE_CHECKING:
    import pandas as pd

# Only the standard library at the top: the sandbox's children import this program's
# main module again (multiprocessing does so for a script), and a heavy one would be
# counted in every sandboxed run, as ``python -m flowblock``'s executor never pays.

TOKEN = {"token_id": "bench", "data_org": "Hospital", "requester": "alice@University",
         "dataset": "vitals", "epsilon": 0}  # fmt: skip


def table(records: int) -> pd.DataFrame:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(1)
    return pd.DataFrame(
        {
            "record_id": [f"r{n:07d}" for n in range(records)],
            "patient_id": [f"bench{n:07d}" for n in range(records)],
            "sex": np.where(rng.random(records) < 0.5, "F", "M"),
            "systolic": rng.normal(128, 15, records).round(1),
        }
    )


def line(label: str, measured: float, baseline: float, what: str = "algorithm alone") -> None:
    print(
        f"{label:<14} {measured * 1000:9.2f} ms vs {what} {baseline * 1000:9.2f} ms"
        f"  = {measured / baseline:5.2f}x",
        flush=True,
    )


def main() -> None:
    from flowblock.executor.algorithms.statistics import Histogram, Mean
    from flowblock.executor.datasets import lean
    from flowblock.executor.disclosure import DisclosurePolicy
    from flowblock.executor.disclosure.differencing import PATIENT_HASH_COLUMN, patient_hashes
    from flowblock.executor.sandbox import Limits, run_sandboxed
    from flowblock.testing.study import MemoryStore

    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("--records", type=int, default=1_000_000)
    options.add_argument("--repeats", type=int, default=31)
    args = options.parse_args()

    frame = table(args.records)
    patients = [f"{p}@Hospital" for p in frame["patient_id"]]
    policy = DisclosurePolicy()
    print(f"{args.records:,} records, one per patient; policy {policy.hash[:12]}…", flush=True)

    schema = {"columns": {"sex": {"type": "category", "values": ["F", "M"]}}}
    given, limits = lean(frame, schema), Limits()
    for algorithm, params in [
        (Mean, {"column": "systolic"}),
        (Histogram, {"column": "systolic", "bins": 20}),
    ]:
        token = {**TOKEN, "params": params}
        dp_params = {**params, "bounds": [60, 200], "epsilon": 1.0}

        def alone(a=algorithm, p=params) -> object:
            return a().run(given, p)

        def protected(a=algorithm, p=params, t=token) -> object:
            return policy.protect(t, a, a().run(given, p), frame, patients).value

        def private(a=algorithm, p=dp_params) -> object:
            return a().run(given, p)

        def sandboxed(a=algorithm, p=params) -> object:
            return run_sandboxed(a, given, p, limits)

        def sandboxed_protected(a=algorithm, p=params, t=token) -> object:
            return policy.protect(t, a, run_sandboxed(a, given, p, limits), frame, patients).value

        def sandboxed_private(a=algorithm, p=dp_params) -> object:
            return run_sandboxed(a, given, p, limits)

        few = max(3, args.repeats // 3)
        data_side = "data side without it"
        line(f"{algorithm.name} policy", *timed(sandboxed_protected, sandboxed, args.repeats),
             data_side)  # fmt: skip
        line(f"{algorithm.name} DP", *timed(sandboxed_private, sandboxed, args.repeats), data_side)
        line(f"{algorithm.name} policy", *timed(protected, alone, args.repeats))
        line(f"{algorithm.name} DP", *timed(private, alone, few))

    # Differencing: the cohort of the mean against ten earlier cohorts of the same size,
    # from rows with their patients' hashes beside them, as the executor loads them.
    store, mean_token = MemoryStore(), {**TOKEN, "params": {"column": "systolic"}}
    result = Mean().run(frame, mean_token["params"])
    hashed = frame.assign(**{PATIENT_HASH_COLUMN: patient_hashes(frame["patient_id"].to_numpy())})
    protected = policy.protect(mean_token, Mean, result, hashed, patients)
    for n in range(10):
        policy.record({**mean_token, "token_id": f"earlier{n}"}, protected, store)
    counter = iter(range(10**9))

    def check() -> object:
        return policy.record({**mean_token, "token_id": f"new{next(counter)}"}, protected, store)

    def bookkeeping() -> object:  # what CohortRows.patients is of the same rows
        return sorted(f"{p}@Hospital" for p in frame["patient_id"].unique())

    repeats = max(3, args.repeats // 3)
    line("differencing", *timed(check, bookkeeping, repeats), "cohort bookkeeping")
    audit(frame, repeats)


def audit(frame: pd.DataFrame, repeats: int) -> None:
    """Auditing's cost after 1,000 earlier releases (see the module's docstring)."""
    import numpy as np

    from flowblock.executor.disclosure import DisclosurePolicy, Protected
    from flowblock.executor.disclosure.differencing import CohortHistory, patient_hashes
    from flowblock.testing.study import MemoryStore

    by_systolic = patient_hashes(frame["patient_id"].to_numpy())[np.argsort(frame["systolic"])]
    cells = max(3, min(200, len(frame) // 50))
    bounds = np.linspace(0, len(frame), cells + 1).astype(int)

    def interval(n: int) -> np.ndarray:
        start, width = (7 * n) % (cells - 2), 1 + n % 3
        return np.sort(by_systolic[bounds[start] : bounds[start + width]])

    store = MemoryStore()
    for n in range(1_000):
        earlier = CohortHistory(store, "audited", f"Org{n % 10}")
        earlier.remember(f"earlier{n}", [interval(n * 13 + 5)], [True])
    audited = DisclosurePolicy(auditing_seconds=600)
    unaudited = DisclosurePolicy(auditing=False)
    token = {"dataset": "audited", "requester": "alice@University"}
    rounds = iter(range(10**9))

    def release(policy: DisclosurePolicy, n: int) -> object:
        cohort = interval(n)
        protected = Protected({"groups": [{"mean": 0.0}]}, [lambda: [cohort]])
        return policy.record({**token, "token_id": f"new{next(rounds)}"}, protected, store)

    started = time.perf_counter()
    release(audited, 0)
    print(f"auditing, first check reading 1,000 releases: {time.perf_counter() - started:.2f} s")
    same = iter(range(1, 10**9))
    pairs = iter(range(1, 10**9))

    def with_auditing() -> object:
        return release(audited, next(same))

    def without() -> object:  # the same interval the audited release just had
        return release(unaudited, next(pairs))

    line("auditing", *timed(with_auditing, without, repeats), "record without it")


if __name__ == "__main__":
    main()
