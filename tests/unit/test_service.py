from typing import Any

import numpy as np
import pytest

from tests.unit.conftest import FakeEncoder, FakeHead
from topicserve.cache import LRUStore, TieredStore
from topicserve.cache.dynamodb import DynamoDBStore
from topicserve.catalogue import MODEL_NAMES
from topicserve.errors import UnknownModelError
from topicserve.responses import prediction_dict
from topicserve.service import InferenceService

TEXTS = ["space shuttle launch", "hockey playoffs", "space shuttle launch", "gpu drivers", "hockey playoffs"]


def service(
    encoder: FakeEncoder, heads: dict[str, FakeHead], store: Any = None, **kw: Any
) -> InferenceService:
    return InferenceService(encoder, heads, cache_store=store, **kw)


def test_each_distinct_text_is_encoded_once(
    fake_encoder: FakeEncoder, fake_heads: dict[str, FakeHead]
) -> None:
    svc = service(fake_encoder, fake_heads)
    result = svc.predict(TEXTS, list(MODEL_NAMES))
    assert len(fake_encoder.calls) == 1
    assert sorted(fake_encoder.encoded) == sorted(set(TEXTS))
    assert result.stats.unique_texts == 3 and result.stats.duplicates == 2 and result.stats.encoded == 3
    assert all(h.calls == 1 for h in fake_heads.values())  # one vectorised call per head
    for model, preds in result.predictions.items():
        assert len(preds) == len(TEXTS)
        assert preds[0] == preds[2] and preds[1] == preds[4]
        assert result.versions[model] == "1"
    assert result.encoder_version == "enc-v1"


def test_prediction_matches_the_head_directly(
    fake_encoder: FakeEncoder, fake_heads: dict[str, FakeHead]
) -> None:
    svc = service(fake_encoder, fake_heads)
    pred = svc.predict(["gpu drivers"], ["mlp"]).predictions["mlp"][0]
    probs = fake_heads["mlp"].predict_proba(FakeEncoder().encode(["gpu drivers"]))[0]
    assert pred.label_id == int(np.argmax(probs))
    assert pred.label == f"class{pred.label_id}"
    assert [t["probability"] for t in pred.top] == sorted((t["probability"] for t in pred.top), reverse=True)
    assert len(pred.top) == 3
    assert prediction_dict(pred)["cached"] == {"prediction": False, "embedding": False}


def test_second_request_is_served_from_the_prediction_cache(
    fake_encoder: FakeEncoder, fake_heads: dict[str, FakeHead]
) -> None:
    svc = service(fake_encoder, fake_heads, LRUStore())
    first = svc.predict(TEXTS, ["rf", "mlp"])
    second = svc.predict(TEXTS, ["rf", "mlp"])
    assert len(fake_encoder.calls) == 1
    assert second.stats.prediction_hits == 6 and second.stats.encoded == 0
    assert all(p.cached and p.embedding_cached for p in second.predictions["rf"])
    assert [p.label for p in first.predictions["rf"]] == [p.label for p in second.predictions["rf"]]


def test_new_head_version_reuses_embeddings_new_encoder_does_not(fake_heads: dict[str, FakeHead]) -> None:
    store = LRUStore()
    enc1 = FakeEncoder("enc-v1")
    service(enc1, {"rf": FakeHead("rf", version="1")}, store).predict(TEXTS, ["rf"])
    assert len(enc1.calls) == 1

    # rf v2: predictions must be recomputed, embeddings must not
    rf2 = FakeHead("rf", version="2", seed=7)
    result = service(enc1, {"rf": rf2}, store).predict(TEXTS, ["rf"])
    assert len(enc1.calls) == 1, "a new head version must reuse cached embeddings"
    assert rf2.calls == 1 and result.stats.prediction_hits == 0 and result.stats.embedding_hits == 3
    assert all(p.embedding_cached and not p.cached for p in result.predictions["rf"])

    # a new encoder version: nothing cached applies
    enc2 = FakeEncoder("enc-v2")
    result = service(enc2, {"rf": rf2}, store).predict(TEXTS, ["rf"])
    assert len(enc2.calls) == 1 and result.stats.encoded == 3
    assert result.stats.prediction_hits == 0 and result.stats.embedding_hits == 0


class TreeHead(FakeHead):
    """A head the build marked as threshold-based: it must only ever see the encoder's own output."""

    exact_embeddings = True

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.seen: list[np.ndarray] = []

    def predict_proba(self, embeddings: np.ndarray) -> np.ndarray:
        self.seen.append(embeddings.copy())
        return super().predict_proba(embeddings)


def test_a_tree_head_is_fed_fresh_embeddings_never_a_records() -> None:
    store = LRUStore()
    enc = FakeEncoder("enc-v1")
    service(enc, {"rf": FakeHead("rf", version="1")}, store).predict(TEXTS, ["rf"])
    tree = TreeHead("rf", version="2", seed=7)
    result = service(enc, {"rf": tree}, store).predict(TEXTS, ["rf"])
    assert len(enc.calls) == 2 and result.stats.embedding_hits == 0  # encoded again for the tree
    distinct = list(dict.fromkeys(TEXTS))
    assert np.array_equal(tree.seen[0], FakeEncoder("enc-v1").encode(distinct))
    again = service(enc, {"rf": tree}, store).predict(TEXTS, ["rf"])  # its own answers are reused
    assert len(enc.calls) == 2 and again.stats.prediction_hits == len(distinct)


def test_partial_hits_encode_only_the_misses(
    fake_encoder: FakeEncoder, fake_heads: dict[str, FakeHead]
) -> None:
    svc = service(fake_encoder, fake_heads, LRUStore())
    svc.predict(["hockey playoffs"], ["rf"])
    result = svc.predict(["hockey playoffs", "gpu drivers"], ["rf", "mlp"])
    assert fake_encoder.calls[-1] == ["gpu drivers"]
    assert result.stats.prediction_hits == 1  # only (rf, hockey)
    assert result.stats.embedding_hits == 1  # mlp needs hockey's embedding: it comes from the cache


def test_unknown_model_is_a_typed_error(fake_encoder: FakeEncoder, fake_heads: dict[str, FakeHead]) -> None:
    with pytest.raises(UnknownModelError, match=r"unknown model\(s\) \['bert'\]"):
        service(fake_encoder, fake_heads).predict(["x"], ["bert"])


def test_serves_without_cache_when_dynamodb_is_down(
    fake_encoder: FakeEncoder, fake_heads: dict[str, FakeHead]
) -> None:
    from tests.unit.test_cache import DownClient

    def down() -> TieredStore:
        return TieredStore(LRUStore(), DynamoDBStore("t", client=DownClient(), sleep=lambda s: None))

    result = service(fake_encoder, fake_heads, down()).predict(TEXTS, ["rf"])
    assert len(result.predictions["rf"]) == len(TEXTS)
    assert result.stats.cache_errors >= 2


def test_texts_the_tokenizer_cannot_tell_apart_share_one_encoding_and_record(
    fake_heads: dict[str, FakeHead],
) -> None:
    """The encoder is uncased: texts whose token ids are identical are encoded once and share a record."""

    class Uncased(FakeEncoder):
        def tokenize(self, texts: Any) -> Any:
            return super().tokenize([t.lower() for t in texts])

    enc, store = Uncased(), LRUStore()
    first = service(enc, fake_heads, store).predict(["Hockey Playoffs", "hockey playoffs"], ["rf"])
    assert first.stats.unique_texts == 2 and first.stats.encoded == 1
    second = service(enc, fake_heads, store).predict(["HOCKEY PLAYOFFS"], ["rf"])
    assert second.stats.prediction_hits == 1 and len(enc.calls) == 1
    assert second.predictions["rf"][0].label == first.predictions["rf"][0].label


@pytest.mark.parametrize(
    "change",
    [
        {"encode_batch_size": 8},  # INT8 embeddings depend on their batch mates
        {"encoder": FakeEncoder("enc-v1", tokenizer_version="tok-v2")},
        {"encoder": FakeEncoder("enc-v2")},
        {"max_length": 32},
    ],
    ids=["batch size", "tokenizer", "encoder", "maximum length"],
)
def test_two_encoder_configurations_never_write_under_the_same_key(
    fake_heads: dict[str, FakeHead], change: dict[str, Any]
) -> None:
    """Each configuration's records live under its own keys: the second configuration finds nothing of
    the first's and writes beside it, never over it."""
    store = LRUStore()
    base = service(FakeEncoder(), fake_heads, store)
    base.predict(TEXTS, ["rf"])
    keys_before = set(store._data)
    encoder = change.get("encoder", FakeEncoder())
    if "max_length" in change:
        encoder.max_length = change["max_length"]
    other = service(encoder, fake_heads, store, encode_batch_size=change.get("encode_batch_size", 1))
    assert other.cache is not None and base.cache is not None
    assert other.cache.config != base.cache.config
    result = other.predict(TEXTS, ["rf"])
    assert result.stats.prediction_hits == 0 and result.stats.embedding_hits == 0
    assert len(store._data) == 2 * len(keys_before)  # written beside the first's records, none over them


def test_the_shared_tier_is_written_on_a_second_sighting_only(
    fake_encoder: FakeEncoder, fake_heads: dict[str, FakeHead]
) -> None:
    from topicserve.cache import Doorkeeper

    back = LRUStore()
    svc = service(fake_encoder, fake_heads, TieredStore(LRUStore(), back), doorkeeper=Doorkeeper(1000))
    first = svc.predict(TEXTS, ["rf"])
    assert first.stats.cache_writes == 0 and len(back) == 0 and first.stats.cache_reads == 3
    second = svc.predict(TEXTS, ["rf", "mlp"])  # seen before here: mlp's answers make them worth sharing
    assert second.stats.cache_reads == 0  # the LRU had all three
    assert second.stats.cache_writes == 3 and len(back) == 3
