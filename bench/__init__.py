"""Benchmarks of cyberevents (not part of the test run): `python -m bench`."""
