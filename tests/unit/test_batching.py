from hypothesis import given
from hypothesis import strategies as st

from topicserve.batching import dedupe, length_buckets


def test_dedupe_keeps_first_seen_order_and_maps_back() -> None:
    dd = dedupe(["b", "a", "b", "c", "a"])
    assert dd.unique == ["b", "a", "c"]
    assert dd.inverse == [0, 1, 0, 2, 1]
    assert dd.duplicates == 2


@given(st.lists(st.sampled_from("abcdef")))
def test_dedupe_roundtrip(items: list[str]) -> None:
    dd = dedupe(items)
    assert [dd.unique[i] for i in dd.inverse] == items
    assert len(set(dd.unique)) == len(dd.unique)


def test_buckets_group_similar_lengths() -> None:
    lengths = [100, 3, 98, 5, 4, 99]
    assert length_buckets(lengths, max_batch=3) == [[1, 4, 3], [2, 5, 0]]


def test_token_budget_splits_long_rows() -> None:
    buckets = length_buckets([10, 10, 10, 200, 200], max_batch=32, max_tokens=400)
    assert buckets == [[0, 1, 2], [3, 4]]
    # each bucket's padded size stays within budget
    for b in buckets:
        assert len(b) * max([10, 10, 10, 200, 200][i] for i in b) <= 400


@given(st.lists(st.integers(min_value=0, max_value=300), max_size=200), st.integers(1, 40))
def test_buckets_partition_every_index_once(lengths: list[int], max_batch: int) -> None:
    buckets = length_buckets(lengths, max_batch=max_batch)
    flat = [i for b in buckets for i in b]
    assert sorted(flat) == list(range(len(lengths)))
    assert all(1 <= len(b) <= max_batch for b in buckets)
