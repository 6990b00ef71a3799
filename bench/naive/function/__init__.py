"""The naive variant's Lambda code (``app.py``, linked into its package); importable in-process as
``bench.naive.function.app`` for the peer benchmark."""
