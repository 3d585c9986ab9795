"""Benchmarks of this service, one module per figure (`python -m bench.<figure>`).

Each module measures one thing on the local stack (Azurite, the simulator, devhost) and prints a
Markdown table; docs/benchmarks.md holds the latest results with the command that produced them.
A benchmark is a measurement, never a test: nothing here asserts a speed. tests/bench runs each
one with tiny counts to check it still produces its figures.
"""
