"""Orchestrators: deterministic workflows; no I/O, wall clock or randomness but the context's."""
