"""The devnet's world state: versions, byte-ordered ranges, history, atomic blocks."""

from __future__ import annotations

import pytest

from flowblock.network.devnet.statedb import CommittedTransaction, StateDB, Write


def write(key: str, value: bytes | None, block: int, txnum: int = 0) -> Write:
    return Write("cc", key, value, block, txnum, f"tx-{block}-{txnum}-{key}", block, 0)


@pytest.fixture
def state(tmp_path):
    db = StateDB(tmp_path / "state.sqlite")
    db.commit_block(0, [], [])
    yield db
    db.close()


def test_values_carry_the_version_that_wrote_them(state):
    state.commit_block(1, [write("a", b"1", 1, 0), write("b", b"2", 1, 1)], [])
    state.commit_block(2, [write("a", b"3", 2, 0), write("b", None, 2, 0)], [])
    assert state.get("cc", "a") == (b"3", (2, 0))
    assert state.get("cc", "b") is None
    assert state.height == 3


def test_ranges_are_in_byte_order_and_composite_keys_sort_first(state):
    keys = ["b", "a", "\x00idx\x00a\x00", "é", "Z"]
    state.commit_block(1, [write(k, b"v", 1, n) for n, k in enumerate(keys)], [])
    assert [k for k, _, _ in state.range("cc", "\x01", "", 100)] == ["Z", "a", "b", "é"]
    assert [k for k, _, _ in state.range("cc", "a", "b", 100)] == ["a"]
    assert [k for k, _, _ in state.range("cc", "", "", 2)] == ["\x00idx\x00a\x00", "Z"]


def test_history_is_newest_first_and_keeps_deletes(state):
    state.commit_block(1, [write("k", b"one", 1)], [])
    state.commit_block(2, [write("k", None, 2)], [])
    state.commit_block(3, [write("k", b"three", 3)], [])
    assert [(value, deleted) for _, value, deleted, _, _ in state.history("cc", "k")] == [
        (b"three", 0),
        (None, 1),
        (b"one", 0),
    ]


def test_a_block_applies_whole_or_not_at_all(state):
    good = CommittedTransaction("t1", 1, 0, 0)
    with pytest.raises(Exception):  # noqa: B017,PT011 - any failure must roll back
        state.commit_block(
            1, [write("k", b"v", 1), Write("cc", "k2", object(), 1, 1, "t", 0, 0)], [good]
        )
    assert state.get("cc", "k") is None
    assert state.transaction("t1") is None
    assert state.height == 1
    with pytest.raises(ValueError, match="cannot commit block 5"):
        state.commit_block(5, [], [])


def test_the_first_record_of_a_transaction_id_wins(state):
    state.commit_block(1, [], [CommittedTransaction("t", 1, 0, 0)])
    state.commit_block(2, [], [CommittedTransaction("t", 2, 0, 9)])
    assert state.transaction("t") == CommittedTransaction("t", 1, 0, 0)
