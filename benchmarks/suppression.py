"""What protecting a large count table costs: secondary suppression against the
threshold check it follows.

Run: ``.venv/bin/python benchmarks/suppression.py [--patients 150000] [--repeats 5]``.

In one process, over tables of 10,000 cells (100 x 100, and 25 x 20 x 20) of
``--patients`` patients spread over categories of skewed popularity (log-normal), so
that about half the cells are below the threshold, as a grouped count over two or
three columns gives: the policy's whole suppression (primary and secondary, the
hypercube method) against the primary suppression alone (ACRO's threshold check and the
line totals that say how wide each hidden cell's range must be), each the median of
``--repeats`` runs taken in turns. Target: ≤ 1 s a table (issue 16, "Bounded
protection"); before, such a table was still being protected after 25 minutes.
"""

from __future__ import annotations

import argparse

from common import timed

from flowblock.testing.count_tables import realistic_counts as realistic


def main() -> None:
    from flowblock.executor.disclosure import DisclosurePolicy, sdc, tables

    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("--patients", type=int, default=150_000)
    options.add_argument("--repeats", type=int, default=5)
    args = options.parse_args()

    policy = DisclosurePolicy()
    appetite = policy.appetite
    for shape in [(100, 100), (25, 20, 20)]:
        counts = realistic(shape, args.patients)

        def protect(c=counts) -> object:
            return tables.suppress(c, appetite)

        def threshold_check(c=counts) -> object:
            return sdc.below_threshold(c, appetite), tables.protection_needed(c, 10)

        mask = protect()
        primary = sdc.below_threshold(counts, appetite)
        measured, baseline = timed(protect, threshold_check, args.repeats)
        label = "x".join(map(str, shape))
        print(
            f"suppression {label:<9} {measured * 1000:9.1f} ms vs threshold check "
            f"{baseline * 1000:7.2f} ms = {measured / baseline:7.1f}x; "
            f"{counts.size:,} cells, {primary.sum():,} small, "
            f"{(mask & ~primary).sum():,} more hidden ({counts[mask & ~primary].sum():,.0f} "
            f"of {counts.sum():,.0f} patients)",
            flush=True,
        )


if __name__ == "__main__":
    main()
