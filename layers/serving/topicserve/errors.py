"""Typed errors of the serving core.

Every error a caller can provoke with bad input derives from :class:`InvalidInputError`, so the API layer
can map the whole family to HTTP 4xx with the message intact, and anything else is a genuine server fault.
"""

from __future__ import annotations


class TopicServeError(Exception):
    """Base class of every error raised on purpose by topicserve."""


class InvalidInputError(TopicServeError, ValueError):
    """The caller sent something we refuse (maps to HTTP 400)."""


class TextTypeError(InvalidInputError, TypeError):
    """A text is not a string."""


class EmptyTextError(InvalidInputError):
    """A text is empty or whitespace only (documented behaviour: refused, never silently predicted)."""


class TooManyTextsError(InvalidInputError):
    """A request carries more texts than the configured limit."""


class UnknownModelError(InvalidInputError, KeyError):
    """A head name that the service does not serve."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else "unknown model"


class ArtifactError(TopicServeError):
    """A model artifact cannot be used (missing, unreadable)."""


class ChecksumMismatchError(ArtifactError):
    """An artifact's sha256 differs from the one recorded: refuse it rather than serve a wrong model."""


class RegistryError(TopicServeError):
    """A registry operation is not allowed (unknown version, bad stage transition, ...)."""


class InvalidEmbeddingsError(TopicServeError, ValueError):
    """Embeddings handed to a head have the wrong type, dtype, shape or non-finite values.

    Not an :class:`InvalidInputError`: clients send texts, not embeddings, so this is a programming error
    (or a corrupt embedding cache entry) on our side and must surface as a server fault.
    """


class UnprocessableTextError(InvalidInputError):
    """Valid texts that still fail on their own in the model pipeline (maps to HTTP 422), found by isolation
    while the rest of the pipeline serves other texts fine."""


class InvalidRequestError(InvalidInputError):
    """A request body that is not valid JSON or not of the documented shape."""


class PayloadTooLargeError(InvalidInputError):
    """A body or message over the configured byte limit (maps to HTTP 413)."""


class InvalidIdempotencyKeyError(InvalidRequestError):
    """An ``Idempotency-Key`` header that is not 1-128 printable ASCII characters, or is sent twice."""


class IdempotencyKeyReusedError(InvalidInputError):
    """An ``Idempotency-Key`` already used with another body within the window (maps to HTTP 422)."""


class RequestInProgressError(InvalidInputError):
    """The first request with this ``Idempotency-Key`` has not answered yet (maps to HTTP 409)."""


class MalformedMessageError(TopicServeError):
    """An SQS message we cannot even attribute to a request (no JSON, no ids).

    It cannot get an error result (there is nowhere to write one), so the batcher reports it as a batch
    item failure and SQS moves it to the dead-letter queue after maxReceiveCount receives.
    """


class BackendUnavailableError(TopicServeError):
    """An AWS backend (DynamoDB, S3, SQS) could not be reached or kept refusing work after retries."""


#: DynamoDB / SQS / S3 error codes that mean "try again later", not "this request is wrong"
TRANSIENT_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "Throttling",
        "RequestLimitExceeded",
        "InternalServerError",
        "InternalFailure",
        "ServiceUnavailable",
        "RequestTimeout",
        "SlowDown",
    }
)


def is_transient(exc: BaseException) -> bool:
    """Whether a failure says the environment is unwell (retry the work) rather than the work is bad.

    Backend outages, throttling, timeouts and memory exhaustion are transient; everything else, model
    faults included, is a property of the input (or of a broken model, which isolation tells apart).
    """
    if isinstance(exc, BackendUnavailableError | TimeoutError | ConnectionError | MemoryError):
        return True
    try:
        from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError
    except ImportError:  # pragma: no cover - botocore is in every environment that talks to AWS
        return False
    if isinstance(exc, ClientError):
        return exc.response.get("Error", {}).get("Code") in TRANSIENT_CODES
    return isinstance(exc, BotoCoreError) and not isinstance(exc, ParamValidationError)
