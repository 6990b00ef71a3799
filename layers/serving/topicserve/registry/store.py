"""The registry's S3 + DynamoDB adapter: it reads, serialises and commits; the stage rules (what each
transition changes, its guards, what it archives, its history entries) are :mod:`topicserve.registry.rules`.

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

Every stage change is one DynamoDB transaction that writes a :class:`~topicserve.registry.rules.Decision`:
it moves the head item's pointers (under a condition on the ``rev`` it was decided on), marks the versions
that change stage and appends to the history, so two racing changes cannot leave two versions in one stage.
"""

from __future__ import annotations

import builtins  # `list` in the body of Registry is its method: annotations there say builtins.list
import datetime as dt
import hashlib
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from topicserve.aws import AwsClient, aws_client
from topicserve.dynamo import pages
from topicserve.errors import ArtifactError, ChecksumMismatchError, RegistryError
from topicserve.registry import rules
from topicserve.registry.model import Lineage, ModelVersion, Routing, Stage, Transition
from topicserve.registry.rules import Decision, HeadValue

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import TransactWriteItemTypeDef

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
        rules.check_name(name)
        digest = sha256_file(path)
        response = self.ddb.update_item(
            TableName=self.table,
            Key=self._key(name, HEAD),
            UpdateExpression="ADD latest :one",
            ExpressionAttributeValues={":one": {"N": "1"}},
            ReturnValues="ALL_NEW",
        )
        version = int(response["Attributes"]["latest"]["N"])
        lineage = rules.next_lineage(lineage, version)
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
        """Move a version to a stage, in one transaction with every side effect, recorded in the history
        (:func:`topicserve.registry.rules.promote` says what changes).

        ``expect_rev`` makes the change conditional on nothing else having changed the model since the
        caller read its routing (the gate uses it, so it never acts on a decision made on stale state).
        """
        stage = Stage.parse(stage) if isinstance(stage, str) else stage
        record = self.show(name, version)
        routing = self.routing(name, consistent=True)
        decision = rules.promote(
            routing,
            version,
            record.stage,
            stage,
            at=_now(),
            weight=weight,
            reason=reason,
            actor=actor,
            expect_rev=expect_rev,
        )
        if decision is None:
            return record
        self._commit(decision)
        return self.show(name, version)

    def rollback(
        self, name: str, *, production: bool = False, reason: str = "", actor: str = "cli"
    ) -> ModelVersion:
        """Undo the riskiest step in flight: the canary if there is one, else the shadow (archived, the
        production version untouched); with neither, or with ``production``, put back the version that
        was in production before the current one. Returns the version serving production afterwards."""
        routing = self.routing(name, consistent=True)
        version, stage = rules.rollback_target(routing, production=production)
        if stage is Stage.ARCHIVED:
            self.promote(name, version, Stage.ARCHIVED, reason=reason or rules.ROLLED_BACK, actor=actor)
            return self.resolve(name)
        decision = rules.restore_production(
            routing, self.show(name, version).stage, at=_now(), reason=reason, actor=actor
        )
        self._commit(decision)
        return self.show(name, version)

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
        if stage in rules.POINTED:
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

    def _commit(self, decision: Decision) -> None:
        """One transaction: the head item (pointers, ``rev`` + 1 under a condition on the ``rev`` the
        decision was made on, the history appended) and the stage of every version that changes, so
        racing writers cannot leave two versions in one stage: the loser gets a clear error and reads
        again."""
        name, rev = decision.model, decision.rev
        values: dict[str, Any] = {
            ":rev": {"N": str(rev)},
            ":next": {"N": str(rev + 1)},
            ":log": {"L": [{"S": t.to_document()} for t in decision.history]},
            ":empty": {"L": []},
        }
        names = {"#rev": "rev", "#transitions": "transitions"}
        assignments = [
            "#rev = :next",
            "#transitions = list_append(if_not_exists(#transitions, :empty), :log)",
        ]
        for i, (attribute, value) in enumerate(decision.sets.items()):
            names[f"#a{i}"] = attribute
            values[f":a{i}"] = _attribute(value)
            assignments.append(f"#a{i} = :a{i}")
        for i, attribute in enumerate(decision.removes):
            names[f"#r{i}"] = attribute
        expression = "SET " + ", ".join(assignments)
        if decision.removes:
            expression += " REMOVE " + ", ".join(f"#r{i}" for i in range(len(decision.removes)))
        items: list[TransactWriteItemTypeDef] = [
            {
                "Update": {
                    "TableName": self.table,
                    "Key": self._key(name, HEAD),
                    "UpdateExpression": expression,
                    "ConditionExpression": "attribute_exists(latest) AND "
                    + ("(attribute_not_exists(#rev) OR #rev = :rev)" if rev == 0 else "#rev = :rev"),
                    "ExpressionAttributeNames": names,
                    "ExpressionAttributeValues": values,
                }
            }
        ]
        for version, stage in decision.stages.items():
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


def _attribute(value: HeadValue) -> dict[str, Any]:
    """A head item value in DynamoDB's wire format: a number (a float as its repr: exact), or the
    production history, a list of numbers."""
    if isinstance(value, tuple):
        return {"L": [{"N": str(v)} for v in value]}
    return {"N": repr(value) if isinstance(value, float) else str(value)}


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


def _parse_s3_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://") or "/" not in uri[5:]:
        raise ArtifactError(f"not an s3:// URI: {uri}")
    bucket, key = uri[5:].split("/", 1)
    return bucket, key
