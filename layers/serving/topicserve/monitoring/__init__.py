"""Monitoring: what the served traffic looks like against the training reference.

* :mod:`.drift` (pure numpy): PSI of the predicted-class distribution, the domain-classifier ROC AUC on
  embeddings (Evidently's default method) and a cheap mean-shift statistic;
* :mod:`.capture` (pure + adapter): per window, class counts and confidences per model version and a
  hash-sampled, bounded set of served embeddings, summed in memory and written with atomic ADDs;
* :mod:`.reference` the reference artifact ``make models`` registers (embeddings sample, class and
  confidence distributions on held-out validation predictions);
* :mod:`.monitor` (adapter): one window judged against the reference, EMF metrics, JSON + PNG report.
"""
