"""Benchmarks of the serving stack (issue 6): `make bench-quick` / `make bench`; see bench/REPORT.md."""
