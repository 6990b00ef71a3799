"""The one catalogue of models: every list of served models in the project derives from here.

Settings, the training build, the deploy, the client, the benchmarks, the demo and the tests read
:data:`MODEL_NAMES`. ``template.yaml`` keeps one predict function per head, and
``tests/unit/test_template.py`` checks the template against this catalogue. Tried: a loop with
``AWS::LanguageExtensions``' ``Fn::ForEach`` deploys in LocalStack's CloudFormation (a probe stack made
two queues from one ForEach), but the per-function references (warmer targets and its invoke policies,
the outputs) and renamed logical ids (which would replace the live functions on AWS) made it a larger
change than this catalogue; see docs/ARCHITECTURE.md. Adding a head: add it here, train it in
``training/heads.py``, add its predict function to the template; the tests then say what else is missing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from topicserve.errors import InvalidRequestError, UnknownModelError


@dataclass(frozen=True)
class HeadSpec:
    name: str  # model name in the registry, the API path and every cache key
    title: str
    function: str  # logical id of its predict function in template.yaml


HEADS: tuple[HeadSpec, ...] = (
    HeadSpec("logreg", "logistic regression", "PredictLogregFunction"),
    HeadSpec("rf", "random forest", "PredictRfFunction"),
    HeadSpec("hgb", "histogram gradient boosting, one-vs-rest", "PredictHgbFunction"),
    HeadSpec("mlp", "small PyTorch MLP (384-256-20)", "PredictMlpFunction"),
    HeadSpec(
        "ensemble",
        "soft vote of the four heads (weights from the validation split)",
        "PredictEnsembleFunction",
    ),
)
MODEL_NAMES: tuple[str, ...] = tuple(h.name for h in HEADS)
#: The encoder variant the serving layer ships (``make models`` also builds fp32, the fidelity reference).
SERVED_ENCODER = "int8"
#: Texts per session call wherever embeddings are made (serving, the model build, the monitor's reference):
#: the INT8 encoder quantises activations per tensor at run time, so a text's embedding depends on its batch
#: mates and their padding (cosine down to 0.96 between batch 1 and 8); one text per call is batch-invariant,
#: and on these CPUs also the fastest (docs/MODELS.md, "Batch invariance"). Heads are trained on what
#: serving will produce only if both use this.
SERVED_BATCH_SIZE = 1


def check_models(models: object, served: Sequence[str], *, where: str = "models") -> list[str]:
    """The distinct model names a caller asked for, in order, when every one is served here.

    The one check of model names: request bodies and SQS messages (``models``), the predict path's model
    and the service's own entry all go through it.
    """
    if not isinstance(models, list | tuple) or not all(isinstance(m, str) for m in models):
        raise InvalidRequestError(f"{where} must be a list of model names")
    if not models:
        raise InvalidRequestError(f"{where} is an empty list; omit it to ask every model")
    unknown = [m for m in models if m not in served]
    if unknown:
        raise UnknownModelError(f"unknown model(s) {unknown}; served: {sorted(served)}")
    return list(dict.fromkeys(models))
