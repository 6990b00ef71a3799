"""End-to-end tests against the local cloud: ``localcloud/`` (the executor on a probe stack), ``app/`` (the
application stack), ``reliability/`` (faults, no-loss, soak). Fixtures and helpers live in the conftests."""
