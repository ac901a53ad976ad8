"""Parity harness: each script runs a reference implementation and writes its golden (see harness.py, docs/parity.md)."""
