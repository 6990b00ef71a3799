"""Label feedback: the true label of a served answer, joined to what was served, summed per version.

* :mod:`.model` (pure): parsing and validating ``POST /v1/feedback`` bodies, the served answers a feedback
  item joins to, and the sums it adds (live accuracy per (model, version, window), the gate's paired
  counters per candidate record);
* :mod:`.ledger` (pure + writer): what serving records per text so feedback by text can be joined later;
* :mod:`.store` (adapter): the DynamoDB side (ledger reads, results-table reads, idempotency markers,
  counters with atomic ADDs).
"""
