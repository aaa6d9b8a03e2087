"""Emulated fleets: many devices in one process (emulator.py), their data (datasets.py),
and `fedge fleet` (cli.py)."""
