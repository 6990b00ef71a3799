"""The registry's S3 + DynamoDB adapter.

Table layout (partition key ``name`` S, sort key ``version`` N):

* ``version = 0`` is the name's *head item*: ``latest`` (a counter bumped atomically by ``register``, so
  versions increase monotonically even with concurrent writers), ``production`` (the version now serving)
  and ``history`` (the production versions in promotion order, which is what ``rollback`` walks back).
* ``version >= 1`` are the versions: ``stage`` (the only mutable attribute) and ``doc``, the immutable
  JSON record (:class:`~topicserve.registry.model.ModelVersion`).

Promotion to production is one DynamoDB transaction that moves the head item's pointer, marks the new
version and archives the old one, each under a condition, so two racing promotions cannot leave two
production versions.
"""

from __future__ import annotations

import builtins  # `list` in the body of Registry is its method: annotations there say builtins.list
import dataclasses
import datetime as dt
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

from topicserve.aws import AwsClient, aws_client
from topicserve.errors import ArtifactError, ChecksumMismatchError, RegistryError
from topicserve.registry.model import Lineage, ModelVersion, Stage

HEAD = 0
_CHUNK = 1 << 20


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

    def promote(self, name: str, version: int, stage: Stage | str = Stage.PRODUCTION) -> ModelVersion:
        """Move a version to a stage. Promoting to production archives the previous production version."""
        stage = Stage.parse(stage) if isinstance(stage, str) else stage
        current = self.show(name, version)
        if stage is not Stage.PRODUCTION:
            if current.stage is Stage.PRODUCTION:
                raise RegistryError(
                    f"{name} v{version} is in production: promote another version (or roll back) first"
                )
            self._set_stage(name, version, stage)
            return self.show(name, version)
        head = self._head(name)
        old = head.get("production")
        if old == version:
            return current
        history = [*head.get("history", []), version]
        self._switch_production(name, old=old, new=version, history=history)
        return self.show(name, version)

    def rollback(self, name: str) -> ModelVersion:
        """Put back the version that was in production before the current one."""
        head = self._head(name)
        history: list[int] = head.get("history", [])
        current = head.get("production")
        if current is None or len(history) < 2:
            raise RegistryError(f"{name} has no earlier production version to roll back to")
        previous = history[-2]
        self._switch_production(name, old=current, new=previous, history=history[:-1])
        return self.show(name, previous)

    # -- reads ---------------------------------------------------------------------------------------
    def names(self) -> list[str]:
        names: set[str] = set()
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "FilterExpression": "version = :head",
            "ExpressionAttributeValues": {":head": {"N": str(HEAD)}},
            "ProjectionExpression": "#n",
            "ExpressionAttributeNames": {"#n": "name"},
        }
        while True:
            page = self.ddb.scan(**kwargs)
            names.update(item["name"]["S"] for item in page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return sorted(names)
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def list(self, name: str | None = None) -> list[ModelVersion]:
        if name is None:
            return [v for n in self.names() for v in self.list(n)]
        versions: list[ModelVersion] = []
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "#n = :n AND version > :head",
            "ExpressionAttributeNames": {"#n": "name"},
            "ExpressionAttributeValues": {":n": {"S": name}, ":head": {"N": str(HEAD)}},
            "ConsistentRead": True,
        }
        while True:
            page = self.ddb.query(**kwargs)
            versions.extend(self._record(item) for item in page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return versions
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

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
        if stage is Stage.PRODUCTION:
            production = self._head(name).get("production")
            if production is None:
                raise RegistryError(f"{name} has no production version")
            return self.show(name, production)
        candidates = [v for v in self.list(name) if v.stage is stage]
        if not candidates:
            raise RegistryError(f"{name} has no version at stage {stage.value}")
        return max(candidates, key=lambda v: v.version)

    def production_history(self, name: str) -> builtins.list[int]:
        """Versions that have been in production, newest first (the current one included, first)."""
        return list(reversed(self._head(name).get("history", [])))

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
                self.s3.download_file(bucket, key, tmp_name)
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

    def _head(self, name: str) -> dict[str, Any]:
        item = self.ddb.get_item(TableName=self.table, Key=self._key(name, HEAD), ConsistentRead=True).get(
            "Item"
        )
        if item is None:
            raise RegistryError(f"no model named {name!r} in the registry")
        head: dict[str, Any] = {"latest": int(item["latest"]["N"])}
        if "production" in item:
            head["production"] = int(item["production"]["N"])
        head["history"] = [int(v["N"]) for v in item.get("history", {}).get("L", [])]
        return head

    def _record(self, item: dict[str, Any]) -> ModelVersion:
        return ModelVersion.from_document(item["doc"]["S"], stage=item["stage"]["S"])

    def _set_stage(self, name: str, version: int, stage: Stage) -> None:
        self.ddb.update_item(
            TableName=self.table,
            Key=self._key(name, version),
            UpdateExpression="SET stage = :s",
            ConditionExpression="attribute_exists(version)",
            ExpressionAttributeValues={":s": {"S": stage.value}},
        )

    def _switch_production(
        self, name: str, *, old: int | None, new: int, history: builtins.list[int]
    ) -> None:
        if old is None:
            guard = "attribute_not_exists(production)"
            guard_values: dict[str, Any] = {}
        else:
            guard = "production = :old"
            guard_values = {":old": {"N": str(old)}}
        items: list[dict[str, Any]] = [
            {
                "Update": {
                    "TableName": self.table,
                    "Key": self._key(name, HEAD),
                    "UpdateExpression": "SET production = :new, history = :history",
                    "ConditionExpression": guard,
                    "ExpressionAttributeValues": {
                        ":new": {"N": str(new)},
                        ":history": {"L": [{"N": str(v)} for v in history]},
                        **guard_values,
                    },
                }
            },
            {
                "Update": {
                    "TableName": self.table,
                    "Key": self._key(name, new),
                    "UpdateExpression": "SET stage = :s",
                    "ConditionExpression": "attribute_exists(version)",
                    "ExpressionAttributeValues": {":s": {"S": Stage.PRODUCTION.value}},
                }
            },
        ]
        if old is not None:
            items.append(
                {
                    "Update": {
                        "TableName": self.table,
                        "Key": self._key(name, old),
                        "UpdateExpression": "SET stage = :s",
                        "ExpressionAttributeValues": {":s": {"S": Stage.ARCHIVED.value}},
                    }
                }
            )
        try:
            self.ddb.transact_write_items(TransactItems=items)
        except self.ddb.exceptions.TransactionCanceledException as exc:
            raise RegistryError(
                f"promotion of {name} v{new} lost a race with another promotion or the version is missing; "
                "read the registry again and retry"
            ) from exc


def _parse_s3_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://") or "/" not in uri[5:]:
        raise ArtifactError(f"not an s3:// URI: {uri}")
    bucket, key = uri[5:].split("/", 1)
    return bucket, key
