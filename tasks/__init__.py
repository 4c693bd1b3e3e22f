"""Prefect tasks: thin wrappers over plain functions that run and test without Prefect."""

import rlgen.settings  # noqa: F401  (environment defaults must be set before prefect is imported)
