"""Offline model building: encoder export + quantisation, fidelity check, embeddings, heads, ensemble.

Runs on the development Python 3.11 (torch, transformers, scikit-learn); produces ONNX artifacts that the
serving runtime (``topicserve``) loads without any of those libraries. Entry point: ``python -m
training.build`` (``make models``; ``QUICK=1`` for the small CI subset).
"""
