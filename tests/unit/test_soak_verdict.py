"""The soak's verdict on memory and file handles: judged within each start of the stack."""

from flowblock.testing.soak import MIB, Sample, flatness


def samples(cycle: int, stack_mib: list[int], weed_fds: list[int]) -> list[Sample]:
    return [
        Sample(seconds=cycle * 300.0 + n, cycle=cycle, steady=True,
               rss={"stack": mib * MIB, "seaweedfs": 120 * MIB, "workers": 0},
               fds={"stack": 60, "seaweedfs": fds, "workers": 0}, load=(0, 0, 0, 0))
        for n, (mib, fds) in enumerate(zip(stack_mib, weed_fds, strict=True))
    ]  # fmt: skip


def test_a_start_on_more_data_is_not_a_leak():
    first = samples(1, [380] * 9, [100] * 9)
    later = samples(2, [500] * 9, [150] * 9)  # higher, but flat within the start
    assert flatness(first + later) == []


def test_growth_within_one_start_is_named_with_its_start():
    first = samples(1, [380] * 9, [100] * 9)
    leaking = samples(2, [400, 400, 400, 450, 500, 550, 600, 650, 700], [100] * 6 + [140] * 3)
    problems = flatness(first + leaking)
    assert problems == [
        "stack in start 2: memory grew from 400 to 650 MiB",
        "seaweedfs in start 2: file handles grew from 100 to 140",
    ]


def test_too_short_a_run_is_not_judged_flat():
    assert flatness(samples(1, [380] * 5, [100] * 5))[0].startswith("no start had six")
