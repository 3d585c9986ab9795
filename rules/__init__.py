"""The image job's rules: everything the orchestrators and activities decide, with no I/O.

Request validation (each model's rules are data), settings objects built from app settings, the
status language, the timing record and the cost of a generation. Orchestrators and activities
import this package; it imports neither, nor anything that talks to a network or a disk.
"""
