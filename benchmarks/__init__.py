"""Benchmarks: figures printed as tables and written as JSON, never asserted by timed tests."""
