"""Benchmarks: figures printed as tables and written as JSON, never asserted by timed tests."""

import rlgen.settings  # noqa: F401  (environment defaults before prefect loads: every benchmark imports this package first)
