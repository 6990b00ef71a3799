"""Model registry: artifacts in S3, versions, stages and lineage in DynamoDB.

``model`` is pure (records, stages); ``store`` is the S3/DynamoDB adapter. The command line
(``topicserve-registry``) is an operator tool: ``tools/topicserve_ops/registry_cli.py``, outside the layer.
It talks to whatever endpoint boto3 is pointed at (``AWS_ENDPOINT_URL``), so the same code serves AWS and
LocalStack. Nothing here unpickles: artifacts are ONNX files checked against their sha256.
"""

from topicserve.registry.model import Lineage, ModelVersion, Stage
from topicserve.registry.store import Registry

__all__ = ["Lineage", "ModelVersion", "Registry", "Stage"]
