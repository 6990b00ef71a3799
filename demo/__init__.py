"""What `make demo` runs against the deployed stack (``demo/run.py``)."""
