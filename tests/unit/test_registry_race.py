"""A registry change that loses its race: two operators (or an operator and the gate) read the same
routing and both commit a stage change. Written against the public ``Registry`` API only, so it holds
whatever the registry's storage looks like inside."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.unit.conftest import BUCKET, TABLE, artifact
from topicserve.errors import RegistryError
from topicserve.registry import Registry, Stage

#: The DynamoDB operations that write: the rival's change goes in before the first of them.
WRITES = ("transact_write_items", "update_item", "put_item", "delete_item", "batch_write_item")


class RivalFirst:
    """The DynamoDB client of a registry whose first write is preceded by a rival's whole change: the
    rival commits between this registry's read of the routing and its own commit."""

    def __init__(self, ddb: Any, rival: Callable[[], object]) -> None:
        self.ddb, self.rival = ddb, rival
        self.raced = False

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.ddb, name)
        if name not in WRITES or self.raced:
            return attribute

        def write(**kwargs: Any) -> Any:
            self.raced = True
            self.rival()
            return attribute(**kwargs)

        return write


def test_a_change_that_loses_its_race_is_refused_whole_and_the_retry_applies(
    registry: Registry, s3: Any, ddb: Any, tmp_path: Path
) -> None:
    for i in range(3):
        registry.register("mlp", artifact(tmp_path, f"mlp{i}.onnx", bytes([i])), format="onnx")
    registry.promote("mlp", 1)
    before = registry.routing("mlp", consistent=True)
    history = registry.transitions("mlp")
    stage_before = registry.show("mlp", 2).stage

    client = RivalFirst(ddb, lambda: registry.promote("mlp", 3, "canary", weight=0.2, reason="rival"))
    loser = Registry(bucket=BUCKET, table=TABLE, s3_client=s3, dynamodb_client=client)
    with pytest.raises(RegistryError, match="lost a race"):
        loser.promote("mlp", 2, "canary", weight=0.1, reason="loser")
    assert client.raced

    after = registry.routing("mlp", consistent=True)
    assert after.rev == before.rev + 1  # the rival's change alone
    assert (after.production, after.canary, after.canary_weight) == (1, 3, 0.2)
    assert registry.show("mlp", 2).stage is stage_before  # nothing of the loser's change landed
    assert [t.reason for t in registry.transitions("mlp")[len(history) :]] == ["rival"]

    loser.promote("mlp", 2, "canary", weight=0.1, reason="retried")  # reads again, then commits
    routing = registry.routing("mlp", consistent=True)
    assert (routing.canary, routing.canary_weight, routing.rev) == (2, 0.1, before.rev + 2)
    assert registry.show("mlp", 3).stage is Stage.ARCHIVED
