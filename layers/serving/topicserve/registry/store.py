"""The registry's S3 + DynamoDB adapter.

Table layout (partition key ``name`` S, sort key ``version`` N):

* ``version = 0`` is the name's *head item*: ``latest`` (a counter bumped atomically by ``register``, so
  versions increase monotonically even with concurrent writers), the routing pointers ``production``,
  ``canary`` + ``canary_weight`` and ``shadow`` (what serving reads, see
  :class:`~topicserve.registry.model.Routing`), ``history`` (the production versions in promotion order,
  which is what ``rollback`` walks back), ``rev`` (bumped by every stage change) and ``transitions`` (every
  stage change: when, which version, from where to where, why and by whom; ~250 bytes each, so the
  400 KB item holds ~1,500 of them).
* ``version >= 1`` are the versions: ``stage`` (the only mutable attribute) and ``doc``, the immutable
  JSON record (:class:`~topicserve.registry.model.ModelVersion`).

Every stage change is one DynamoDB transaction that moves the head item's pointers (under a condition on
the ``rev`` it read), marks the versions that change stage and appends to the history, so two racing
changes cannot leave two versions in one stage.
"""

from __future__ import annotations

import builtins  # `list` in the body of Registry is its method: annotations there say builtins.list
import dataclasses
import datetime as dt
import hashlib
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from topicserve.aws import AwsClient, aws_client
from topicserve.dynamo import pages
from topicserve.errors import ArtifactError, ChecksumMismatchError, RegistryError
from topicserve.registry.model import Lineage, ModelVersion, Routing, Stage, Transition

HEAD = 0
_CHUNK = 1 << 20


def _fetch(s3: Any, bucket: str, key: str, path: str) -> None:
    """Stream one object into ``path`` with a plain ``get_object``: serving clients are botocore clients,
    which have no ``download_file`` (that is boto3's s3transfer, too costly to import at cold start)."""
    body = s3.get_object(Bucket=bucket, Key=key)["Body"]
    with open(path, "wb") as out:
        for chunk in body.iter_chunks(_CHUNK):
            out.write(chunk)


def sha256_file(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


class Registry:
    def __init__(
        self,
        *,
        bucket: str,
        table: str,
        s3_client: AwsClient | None = None,
        dynamodb_client: AwsClient | None = None,
        prefix: str = "models",
    ) -> None:
        s3_client = s3_client or aws_client("s3", serving=False)
        dynamodb_client = dynamodb_client or aws_client("dynamodb", serving=False)
        self.bucket = bucket
        self.table = table
        self.s3 = s3_client
        self.ddb = dynamodb_client
        self.prefix = prefix.strip("/")

    # -- writes --------------------------------------------------------------------------------------
    def register(
        self,
        name: str,
        artifact: str | os.PathLike[str],
        *,
        format: str,
        metrics: dict[str, Any] | None = None,
        hyperparameters: dict[str, Any] | None = None,
        labels: list[str] | None = None,
        lineage: Lineage | None = None,
        description: str = "",
        stage: Stage = Stage.NONE,
    ) -> ModelVersion:
        """Upload an artifact and record it as the next version of ``name``.

        The parent version defaults to the newest existing version, so lineage forms a chain without the
        caller having to look it up.
        """
        path = Path(artifact)
        if not path.is_file():
            raise ArtifactError(f"artifact {path} does not exist")
        if not name or "/" in name:
            raise RegistryError(f"invalid model name {name!r}")
        digest = sha256_file(path)
        response = self.ddb.update_item(
            TableName=self.table,
            Key=self._key(name, HEAD),
            UpdateExpression="ADD latest :one",
            ExpressionAttributeValues={":one": {"N": "1"}},
            ReturnValues="ALL_NEW",
        )
        version = int(response["Attributes"]["latest"]["N"])
        lineage = lineage or Lineage()
        if lineage.parent_version is None and version > 1:
            lineage = dataclasses.replace(lineage, parent_version=version - 1)
        key = f"{self.prefix}/{name}/{version}/{path.name}"
        self.s3.upload_file(str(path), self.bucket, key, ExtraArgs={"Metadata": {"sha256": digest}})
        record = ModelVersion(
            name=name,
            version=version,
            sha256=digest,
            size_bytes=path.stat().st_size,
            format=format,
            artifact_uri=f"s3://{self.bucket}/{key}",
            created_at=_now(),
            stage=Stage.NONE,
            metrics=metrics or {},
            hyperparameters=hyperparameters or {},
            labels=list(labels or []),
            lineage=lineage,
            description=description,
        )
        self.ddb.put_item(
            TableName=self.table,
            Item={
                **self._key(name, version),
                "stage": {"S": Stage.NONE.value},
                "doc": {"S": record.to_document()},
            },
            ConditionExpression="attribute_not_exists(version)",
        )
        if stage is not Stage.NONE:
            return self.promote(name, version, stage)
        return record

    def promote(
        self,
        name: str,
        version: int,
        stage: Stage | str = Stage.PRODUCTION,
        *,
        weight: float | None = None,
        reason: str = "",
        actor: str = "cli",
        expect_rev: int | None = None,
    ) -> ModelVersion:
        """Move a version to a stage, in one transaction with every side effect, recorded in the history.

        * production: the previous production version is archived;
        * shadow / canary (``weight`` in (0, 1] for a canary): the version that held that stage is
          archived; a canary whose version is already the canary only changes its weight;
        * any stage: a version leaving the canary or shadow stage frees it. A production version cannot be
          moved aside directly (promote another version, or roll back).

        ``expect_rev`` makes the change conditional on nothing else having changed the model since the
        caller read its routing (the gate uses it, so it never acts on a decision made on stale state).
        """
        stage = Stage.parse(stage) if isinstance(stage, str) else stage
        record = self.show(name, version)
        routing = self.routing(name, consistent=True)
        if expect_rev is not None and routing.rev != expect_rev:
            raise RegistryError(
                f"{name} changed since revision {expect_rev} (now {routing.rev}); read it again"
            )
        change = _Change(routing)
        if stage is Stage.PRODUCTION:
            if routing.production == version:
                return record
            change.vacate(version)
            if routing.production is not None:
                change.stages[routing.production] = Stage.ARCHIVED
            change.sets["production"] = {"N": str(version)}
            change.sets["history"] = {"L": [{"N": str(v)} for v in (*routing.history, version)]}
        elif stage in (Stage.SHADOW, Stage.CANARY):
            if routing.production == version:
                raise RegistryError(f"{name} v{version} is in production: it cannot also be a {stage.value}")
            slot = stage.value
            holder = routing.canary if stage is Stage.CANARY else routing.shadow
            if stage is Stage.CANARY:
                weight = _check_weight(weight)
                change.sets["canary_weight"] = {"N": repr(weight)}
            if holder == version:
                if stage is Stage.SHADOW or weight == routing.canary_weight:
                    return record
            else:
                change.vacate(version)
                if holder is not None:
                    change.stages[holder] = Stage.ARCHIVED
                change.sets[slot] = {"N": str(version)}
                change.sets[f"{slot}_rev"] = {"N": str(routing.rev + 1)}
        else:
            if routing.production == version:
                raise RegistryError(
                    f"{name} v{version} is in production: promote another version (or roll back) first"
                )
            change.vacate(version)
        change.stages[version] = stage
        self._commit(name, change, {version: record.stage}, reason=reason, actor=actor, weight=weight)
        return self.show(name, version)

    def rollback(
        self, name: str, *, production: bool = False, reason: str = "", actor: str = "cli"
    ) -> ModelVersion:
        """Undo the riskiest step in flight: the canary if there is one, else the shadow (archived, the
        production version untouched); with neither, or with ``production``, put back the version that
        was in production before the current one. Returns the version serving production afterwards."""
        routing = self.routing(name, consistent=True)
        candidate = routing.canary if routing.canary is not None else routing.shadow
        if candidate is not None and not production:
            self.promote(name, candidate, Stage.ARCHIVED, reason=reason or "rolled back", actor=actor)
            return self.resolve(name)
        history = routing.history
        if routing.production is None or len(history) < 2:
            raise RegistryError(f"{name} has no earlier production version to roll back to")
        previous = history[-2]
        change = _Change(routing)
        change.vacate(previous)
        change.stages[routing.production] = Stage.ARCHIVED
        change.stages[previous] = Stage.PRODUCTION
        change.sets["production"] = {"N": str(previous)}
        change.sets["history"] = {"L": [{"N": str(v)} for v in history[:-1]]}
        before = {previous: self.show(name, previous).stage}
        self._commit(name, change, before, reason=reason or "production rolled back", actor=actor)
        return self.show(name, previous)

    # -- reads ---------------------------------------------------------------------------------------
    def names(self) -> list[str]:
        scan = pages(
            self.ddb.scan,
            TableName=self.table,
            FilterExpression="version = :head",
            ExpressionAttributeValues={":head": {"N": str(HEAD)}},
            ProjectionExpression="#n",
            ExpressionAttributeNames={"#n": "name"},
        )
        return sorted({item["name"]["S"] for page in scan for item in page.get("Items", [])})

    def list(self, name: str | None = None) -> list[ModelVersion]:
        if name is None:
            return [v for n in self.names() for v in self.list(n)]
        query = pages(
            self.ddb.query,
            TableName=self.table,
            KeyConditionExpression="#n = :n AND version > :head",
            ExpressionAttributeNames={"#n": "name"},
            ExpressionAttributeValues={":n": {"S": name}, ":head": {"N": str(HEAD)}},
            ConsistentRead=True,
        )
        return [self._record(item) for page in query for item in page.get("Items", [])]

    def show(self, name: str, version: int) -> ModelVersion:
        item = self.ddb.get_item(TableName=self.table, Key=self._key(name, version), ConsistentRead=True).get(
            "Item"
        )
        if item is None or version == HEAD:
            raise RegistryError(f"{name} v{version} is not in the registry")
        return self._record(item)

    def resolve(self, name: str, stage: Stage | str = Stage.PRODUCTION) -> ModelVersion:
        """The version of ``name`` at ``stage`` (for staging/none/archived: the newest one there)."""
        stage = Stage.parse(stage) if isinstance(stage, str) else stage
        if stage in _POINTED:
            pointer = getattr(self.routing(name, consistent=True), stage.value)
            if pointer is None:
                raise RegistryError(f"{name} has no {stage.value} version")
            return self.show(name, pointer)
        candidates = [v for v in self.list(name) if v.stage is stage]
        if not candidates:
            raise RegistryError(f"{name} has no version at stage {stage.value}")
        return max(candidates, key=lambda v: v.version)

    def production_history(self, name: str) -> builtins.list[int]:
        """Versions that have been in production, newest first (the current one included, first)."""
        return list(reversed(self.routing(name, consistent=True).history))

    def routing(self, name: str, *, consistent: bool = False) -> Routing:
        item = self.ddb.get_item(
            TableName=self.table, Key=self._key(name, HEAD), ConsistentRead=consistent, **_ROUTING_PROJECTION
        ).get("Item")
        if item is None:
            raise RegistryError(f"no model named {name!r} in the registry")
        return _routing(item)

    def routings(self, names: Sequence[str]) -> dict[str, Routing]:
        """The routing of several models in one BatchGetItem: what serving reads at every refresh.
        Models missing from the registry are missing from the answer."""
        found: dict[str, Routing] = {}
        request: dict[str, Any] = {
            self.table: {"Keys": [self._key(n, HEAD) for n in dict.fromkeys(names)], **_ROUTING_PROJECTION}
        }
        for _ in range(10):
            if not request:
                return found
            page = self.ddb.batch_get_item(RequestItems=request)
            for item in page.get("Responses", {}).get(self.table, []):
                routing = _routing(item)
                found[routing.model] = routing
            request = page.get("UnprocessedKeys") or {}
        raise RegistryError("the registry kept some routing reads unprocessed (throttled); try again")

    def transitions(self, name: str, limit: int | None = None) -> builtins.list[Transition]:
        """The model's stage changes, oldest first (the last ``limit`` of them)."""
        item = self.ddb.get_item(
            TableName=self.table,
            Key=self._key(name, HEAD),
            ConsistentRead=True,
            ProjectionExpression="transitions",
        ).get("Item", {})
        docs = [v["S"] for v in item.get("transitions", {}).get("L", [])]
        return [Transition.from_document(d) for d in docs[-limit if limit else 0 :]]

    def find_by_sha256(self, name: str, sha256: str) -> ModelVersion | None:
        return next((v for v in self.list(name) if v.sha256 == sha256), None)

    def lineage(self, name: str, version: int) -> builtins.list[ModelVersion]:
        """The version and its ancestors, newest first."""
        chain = [self.show(name, version)]
        while (parent := chain[-1].lineage.parent_version) is not None:
            chain.append(self.show(name, parent))
        return chain

    def download(self, record: ModelVersion, dest_dir: str | os.PathLike[str]) -> Path:
        """Fetch an artifact into ``dest_dir`` (e.g. Lambda's /tmp) and prove it is the registered one.

        A file already there with the right sha256 is reused (warm environments, repeated cold starts in
        one sandbox). A mismatch is refused with :class:`ChecksumMismatchError` and nothing is left behind.
        """
        bucket, key = _parse_s3_uri(record.artifact_uri)
        dest_dir = Path(dest_dir)
        dest_dir.mkdir(parents=True, exist_ok=True)
        target = dest_dir / f"{record.name}-v{record.version}-{record.sha256[:12]}{Path(key).suffix}"
        if target.is_file() and sha256_file(target) == record.sha256:
            return target
        fd, tmp_name = tempfile.mkstemp(dir=dest_dir, prefix=".download-")
        os.close(fd)
        try:
            try:
                _fetch(self.s3, bucket, key, tmp_name)
            except Exception as exc:  # botocore raises several unrelated types for a missing object
                raise ArtifactError(f"cannot download {record.artifact_uri}: {exc}") from exc
            actual = sha256_file(tmp_name)
            if actual != record.sha256:
                raise ChecksumMismatchError(
                    f"{record.name} v{record.version}: artifact {record.artifact_uri} has sha256 {actual}, "
                    f"the registry recorded {record.sha256}; refusing to load it"
                )
            os.replace(tmp_name, target)
        finally:
            if os.path.exists(tmp_name):
                os.unlink(tmp_name)
        return target

    # -- helpers -------------------------------------------------------------------------------------
    @staticmethod
    def _key(name: str, version: int) -> dict[str, Any]:
        return {"name": {"S": name}, "version": {"N": str(version)}}

    def _record(self, item: dict[str, Any]) -> ModelVersion:
        return ModelVersion.from_document(item["doc"]["S"], stage=item["stage"]["S"])

    def _commit(
        self,
        name: str,
        change: _Change,
        before: dict[int, Stage],
        *,
        reason: str,
        actor: str,
        weight: float | None = None,
    ) -> None:
        """One transaction: the head item (pointers, ``rev`` + 1 under a condition on the ``rev`` read,
        the history appended) and the stage of every version that changes, so racing writers cannot
        leave two versions in one stage: the loser gets a clear error and reads again."""
        routing = change.routing
        at = _now()
        old = {**routing.stage_of(), **before}
        log = [
            Transition(
                at=at,
                version=v,
                from_stage=old.get(v, Stage.NONE).value,
                to_stage=stage.value,
                reason=reason if v in before else f"{reason} (side effect)".strip(),
                actor=actor,
                weight=weight if stage is Stage.CANARY else None,
            )
            for v, stage in change.stages.items()
        ]
        values: dict[str, Any] = {
            ":rev": {"N": str(routing.rev)},
            ":next": {"N": str(routing.rev + 1)},
            ":log": {"L": [{"S": t.to_document()} for t in log]},
            ":empty": {"L": []},
        }
        names = {"#rev": "rev", "#transitions": "transitions"}
        assignments = [
            "#rev = :next",
            "#transitions = list_append(if_not_exists(#transitions, :empty), :log)",
        ]
        for i, (attribute, value) in enumerate(change.sets.items()):
            names[f"#a{i}"] = attribute
            values[f":a{i}"] = value
            assignments.append(f"#a{i} = :a{i}")
        removes = [a for a in dict.fromkeys(change.removes) if a not in change.sets]
        for i, attribute in enumerate(removes):
            names[f"#r{i}"] = attribute
        expression = "SET " + ", ".join(assignments)
        if removes:
            expression += " REMOVE " + ", ".join(f"#r{i}" for i in range(len(removes)))
        items: list[dict[str, Any]] = [
            {
                "Update": {
                    "TableName": self.table,
                    "Key": self._key(name, HEAD),
                    "UpdateExpression": expression,
                    "ConditionExpression": "attribute_exists(latest) AND "
                    + ("(attribute_not_exists(#rev) OR #rev = :rev)" if routing.rev == 0 else "#rev = :rev"),
                    "ExpressionAttributeNames": names,
                    "ExpressionAttributeValues": values,
                }
            }
        ]
        for version, stage in change.stages.items():
            items.append(
                {
                    "Update": {
                        "TableName": self.table,
                        "Key": self._key(name, version),
                        "UpdateExpression": "SET stage = :s",
                        "ConditionExpression": "attribute_exists(version)",
                        "ExpressionAttributeValues": {":s": {"S": stage.value}},
                    }
                }
            )
        try:
            self.ddb.transact_write_items(TransactItems=items)
        except self.ddb.exceptions.TransactionCanceledException as exc:
            raise RegistryError(
                f"the stage change of {name} lost a race with another change, or a version is missing; "
                "read the registry again and retry"
            ) from exc


_POINTED = (Stage.PRODUCTION, Stage.CANARY, Stage.SHADOW)
_ROUTING_ATTRIBUTES = (
    "name",
    "production",
    "canary",
    "canary_weight",
    "shadow",
    "rev",
    "canary_rev",
    "shadow_rev",
    "history",
)
_ROUTING_PROJECTION: dict[str, Any] = {
    "ProjectionExpression": ", ".join(f"#p{i}" for i in range(len(_ROUTING_ATTRIBUTES))),
    "ExpressionAttributeNames": {f"#p{i}": a for i, a in enumerate(_ROUTING_ATTRIBUTES)},
}


def _routing(item: dict[str, Any]) -> Routing:
    def number(attribute: str) -> int | None:
        return int(item[attribute]["N"]) if attribute in item else None

    return Routing(
        model=item["name"]["S"],
        production=number("production"),
        canary=number("canary"),
        canary_weight=float(item["canary_weight"]["N"]) if "canary_weight" in item else 0.0,
        shadow=number("shadow"),
        rev=number("rev") or 0,
        canary_rev=number("canary_rev") or 0,
        shadow_rev=number("shadow_rev") or 0,
        history=tuple(int(v["N"]) for v in item.get("history", {}).get("L", [])),
    )


def _check_weight(weight: float | None) -> float:
    if weight is None or not 0.0 < weight <= 1.0:
        raise RegistryError(f"a canary needs a traffic weight in (0, 1], got {weight!r}")
    return float(weight)


class _Change:
    """The pointer and stage changes of one transition, before they are written."""

    def __init__(self, routing: Routing) -> None:
        self.routing = routing
        self.sets: dict[str, Any] = {}
        self.removes: builtins.list[str] = []
        self.stages: dict[int, Stage] = {}

    def vacate(self, version: int) -> None:
        """``version`` leaves the canary or shadow stage it holds (if any)."""
        if version == self.routing.canary:
            self.removes += ["canary", "canary_weight", "canary_rev"]
        if version == self.routing.shadow:
            self.removes += ["shadow", "shadow_rev"]


def _parse_s3_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://") or "/" not in uri[5:]:
        raise ArtifactError(f"not an s3:// URI: {uri}")
    bucket, key = uri[5:].split("/", 1)
    return bucket, key
