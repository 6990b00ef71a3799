"""topicserve: the serving core shared by every Lambda function, the training pipeline and the tests.

The package is shipped as a Lambda layer (``layers/serving``). Pure logic (text hashing, dedup, bucketing,
batching policy, cache keys) lives apart from the AWS adapters (``topicserve.cache.dynamodb``,
``topicserve.registry.store``) so it can be tested without any AWS endpoint.
"""

__version__ = "0.1.0"
