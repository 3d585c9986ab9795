"""Shared pieces for devhost's engine tests: a running Engine, fakes, async polling."""
