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


class TextTooLongError(InvalidInputError):
    """A text exceeds the configured character limit."""


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


class InvalidRequestError(InvalidInputError):
    """A request body that is not valid JSON or not of the documented shape."""


class PayloadTooLargeError(InvalidInputError):
    """A body or message over the configured byte limit (maps to HTTP 413)."""


class MalformedMessageError(TopicServeError):
    """An SQS message we cannot even attribute to a request (no JSON, no ids).

    It cannot get an error result (there is nowhere to write one), so the batcher reports it as a batch
    item failure and SQS moves it to the dead-letter queue after maxReceiveCount receives.
    """


class BackendUnavailableError(TopicServeError):
    """An AWS backend (DynamoDB, S3, SQS) could not be reached or kept refusing work after retries."""
