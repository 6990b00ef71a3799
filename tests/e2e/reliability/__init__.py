"""Reliability of the deployed application: bad input, faults, no-loss accounting, degradation, soak."""
