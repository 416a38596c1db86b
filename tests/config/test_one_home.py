"""Every default has one home, the config dataclasses: no other dataclass in the package or in
games/ declares a default for a field the config already gives one. Slices of the config (what
an actor, an engine or the game loop is built from) hold the config itself plus values resolved
at run time, which carry no defaults of their own."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import pkgutil
from types import ModuleType

import pytest

import games
import spiral_games
from spiral_games.config import schema

# Fields that share a name with a config field and are a different thing, each with its own
# default. (module.Class, field): why it is not the config's value.
ALLOWED = {
    # a per-request sampling seed (None: the engine's running stream), not the run's seed
    ("spiral_games.types.SamplingParams", "seed"): "a request's seed",
    # the league's saved state (members, ratings), not the LeagueConfig
    ("spiral_games.run.checkpoint.LoopState", "league"): "the league's state",
    # reference lines measured at the last evaluation, not the names in eval.reference
    ("spiral_games.report.summary.EvalChange", "reference"): "measured values",
}
# The slices that once copied config fields one by one: the scan must keep seeing them.
SLICES = {
    "spiral_games.actors.rollout_worker.WorkerConfig",
    "spiral_games.learn.learner.LearnerSpec",
    "spiral_games.llm.engines.base.EngineSpec",
    "spiral_games.play.loop.GameRules",
    "spiral_games.types.SamplingParams",
    "spiral_games.learn.advantage.RoleBaselines",
}
OPTIONAL = ("vllm",)  # a module that needs it is skipped where it is not installed


def config_classes() -> list[type]:
    """The config dataclasses: every dataclass `spiral_games.config.schema` defines."""
    return [
        obj
        for obj in vars(schema).values()
        if inspect.isclass(obj)
        and dataclasses.is_dataclass(obj)
        and obj.__module__ == schema.__name__
    ]


def _has_default(f: dataclasses.Field) -> bool:
    return f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING


def config_defaults(configs: list[type]) -> dict[str, list[str]]:
    """Field name -> the config dataclasses that declare it with a default."""
    homes: dict[str, list[str]] = {}
    for cls in configs:
        for f in dataclasses.fields(cls):
            if _has_default(f):
                homes.setdefault(f.name, []).append(cls.__name__)
    return homes


def _modules() -> list[ModuleType]:
    found = []
    for package in (spiral_games, games):
        for info in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
            try:
                found.append(importlib.import_module(info.name))
            except ModuleNotFoundError as exc:
                if not (exc.name or "").startswith(OPTIONAL):
                    raise
    return found


def package_dataclasses() -> dict[str, type]:
    """module.Class -> every dataclass defined in spiral_games/ and games/, configs excepted."""
    configs = set(config_classes())
    return {
        f"{module.__name__}.{obj.__qualname__}": obj
        for module in _modules()
        for obj in vars(module).values()
        if inspect.isclass(obj)
        and dataclasses.is_dataclass(obj)
        and obj.__module__ == module.__name__
        and obj not in configs
    }


def second_homes(classes: dict[str, type], homes: dict[str, list[str]]) -> list[str]:
    """`module.Class.field (also in Config, ...)` for each field of `classes` with a default of
    its own that a config dataclass also declares with a default."""
    return [
        f"{name}.{f.name} (also in {', '.join(homes[f.name])})"
        for name, cls in sorted(classes.items())
        for f in dataclasses.fields(cls)
        if f.name in homes and _has_default(f) and (name, f.name) not in ALLOWED
    ]


@pytest.fixture(scope="module")
def scanned() -> dict[str, type]:
    return package_dataclasses()


def test_no_dataclass_redeclares_a_config_default(scanned):
    found = second_homes(scanned, config_defaults(config_classes()))
    assert not found, (
        "These re-declare a config field with a default of their own; take the value from the "
        "config dataclass (pass the sub-config, or resolve it at run time without a default), "
        "or, for a different thing of the same name, add it to ALLOWED with the reason:\n"
        + "\n".join(found)
    )


def test_the_scan_sees_the_config_slices_and_the_allowed_fields(scanned):
    assert not SLICES - set(scanned), SLICES - set(scanned)
    homes = config_defaults(config_classes())
    for name, field_name in ALLOWED:  # no stale entry: each still shares a defaulted name
        fields = {f.name: f for f in dataclasses.fields(scanned[name])}
        assert field_name in homes and _has_default(fields[field_name]), (name, field_name)


def test_a_copied_default_is_found():
    @dataclasses.dataclass(frozen=True)
    class CopiedSpec:
        lr: float = 1e-6  # learner.lr, copied
        cpu_threads: int = 1  # learner.cpu_threads, copied with another value
        resolved_threads: int = 2  # no config field has this name

    @dataclasses.dataclass(frozen=True)
    class ResolvedSpec:
        cpu_threads: int  # resolved at run time, no default: no second home
        seed: int

    found = second_homes(
        {"t.CopiedSpec": CopiedSpec, "t.ResolvedSpec": ResolvedSpec},
        config_defaults(config_classes()),
    )
    assert found == [
        "t.CopiedSpec.lr (also in LearnerConfig)",
        "t.CopiedSpec.cpu_threads (also in RolloutConfig, LearnerConfig)",
    ]
