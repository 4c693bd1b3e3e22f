"""Prefect flows: each composes tasks into data -> train -> evaluate -> export -> register."""

import rlgen.settings  # noqa: F401  (environment defaults must be set before prefect is imported)
