"""The model families rlgen knows. This is the only list of them: the CLI, the pipeline, the report, promotion,
`rlgen runs`, the deployments and the tests enumerate it.

A family of your own registers itself: `register(Family(...))` in a module named by $RLGEN_PLUGINS
(comma-separated module paths, imported when the registry is), and every rlgen command sees it.
"""

from __future__ import annotations

import importlib
import os

from rlgen.config.base import RunConfig
from rlgen.errors import ConfigError
from rlgen.families import coop, descriptor, dqn, gan, generator, lm, vae
from rlgen.family import Branch, Family

FAMILIES: dict[str, Family] = {
    f.name: f for f in (dqn.FAMILY, vae.FAMILY, gan.FAMILY, descriptor.FAMILY, generator.FAMILY, coop.FAMILY, lm.FAMILY)
}


def register(family: Family) -> Family:
    """Add a family (a plugin's, a test's); its name and its pipeline branches' names must be new."""
    if family.name in FAMILIES or family.name == "pipeline":
        raise ValueError(f"a family called {family.name!r} is already registered; pick another name")
    taken = set(family.branches) & set(branches())
    if taken:
        raise ValueError(
            f"pipeline branch name(s) {', '.join(sorted(taken))} of {family.name!r} are taken; rename them"
        )
    FAMILIES[family.name] = family
    return family


def unregister(name: str) -> None:
    """Remove a registered family (tests clean up with this)."""
    FAMILIES.pop(name, None)


def family(name: str) -> Family:
    """The family called `name`; an unknown name lists the known ones."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise ConfigError(f"Unknown model {name!r}; known: {', '.join(sorted(FAMILIES))}") from None


def family_of(config: RunConfig) -> Family:
    """The family whose config class `config` is."""
    return family(getattr(config, "family", type(config).__name__))


def branches() -> dict[str, tuple[Family, Branch]]:
    """Every pipeline branch (model) of every family, by branch name, in registry order."""
    return {name: (f, branch) for f in FAMILIES.values() for name, branch in f.branches.items()}


def load_plugins() -> None:
    """Import the modules named in $RLGEN_PLUGINS (each registers its families)."""
    for module in filter(None, (m.strip() for m in os.environ.get("RLGEN_PLUGINS", "").split(","))):
        importlib.import_module(module)


load_plugins()
