"""Builds games and opponents from config `_target_` paths, limited to trusted packages."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import Any, Protocol, cast

from spiral_games.config.schema import GameConfig
from spiral_games.errors import ConfigError
from spiral_games.play.game import GameEnv
from spiral_games.play.loop import GameRules
from spiral_games.play.policy import Policy

TRUSTED_PREFIXES = ("games.", "spiral_games.")


def import_target(path: str) -> Callable[..., Any]:
    """Import `package.module.Name`, refusing anything outside the trusted packages.

    Raises:
        ConfigError: for an untrusted, malformed or missing target.
    """
    if not isinstance(path, str) or not path.startswith(TRUSTED_PREFIXES) or "." not in path:
        raise ConfigError(
            f"_target_ {path!r} is not allowed: targets must live under "
            f"{', '.join(p.rstrip('.') for p in TRUSTED_PREFIXES)}. Put your game in games/ "
            "(docs/adding-a-game.md)."
        )
    module_name, _, attr = path.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"_target_ {path!r}: cannot import {module_name} ({exc}).") from exc
    if not hasattr(module, attr):
        raise ConfigError(f"_target_ {path!r}: module {module_name} has no {attr!r}.")
    return getattr(module, attr)


def instantiate(spec: dict[str, Any], **extra: Any) -> Any:
    """Call `spec['_target_']` with the other keys (plus `extra`), with clear errors on bad keys."""
    target = import_target(spec.get("_target_", ""))
    kwargs = {k: v for k, v in spec.items() if k != "_target_"}
    kwargs.update({k: v for k, v in extra.items() if _accepts(target, k)})
    try:
        inspect.signature(target).bind(**kwargs)
    except TypeError as exc:
        params = ", ".join(p for p in inspect.signature(target).parameters if p != "self")
        raise ConfigError(
            f"{spec['_target_']} does not accept {sorted(kwargs)}: {exc}. Valid: {params}."
        ) from None
    try:
        return target(**kwargs)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{spec['_target_']}: {exc}") from exc


def _accepts(target: Callable[..., Any], name: str) -> bool:
    params = inspect.signature(target).parameters
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def build_rules(name: str, cfg: GameConfig) -> GameRules:
    """The `GameRules` of one configured game; builds one env eagerly to fail fast."""

    def make_env() -> GameEnv:
        env = instantiate(cfg.env)
        if not isinstance(env, GameEnv):
            raise ConfigError(
                f"games.{name}.env._target_ built a {type(env).__name__}, not a GameEnv. "
                "Subclass spiral_games.play.game.GameEnv (or use TextArenaGame)."
            )
        return env

    make_env()
    if cfg.action_format is None:
        raise ConfigError(
            f"games.{name}.action_format is unset. RunConfig fills it from "
            "model.action_format: build the game's config through RunConfig (compose_run_config)."
        )
    return GameRules(name=name, make_env=make_env, config=cfg, action_format=cfg.action_format)


class GameAnalysis(Protocol):
    """An exact measurement of a policy in one game (e.g. Kuhn exploitability): `measure`
    returns named values; a value `x` with a standard error also returns `x_se`."""

    def measure(self, policy: Policy, rules: GameRules, seed: int) -> dict[str, float]: ...


def build_analysis(game: str, cfg: GameConfig, name: str) -> GameAnalysis:
    """The analysis named in `games.<game>.analyses`."""
    analysis = instantiate(cfg.analyses[name])
    if not callable(getattr(analysis, "measure", None)):
        raise ConfigError(
            f"games.{game}.analyses.{name}._target_ built a {type(analysis).__name__}, which "
            "has no measure(policy, rules, seed) method (spiral_games.play.registry.GameAnalysis)."
        )
    return cast(GameAnalysis, analysis)


def build_opponent(game: str, cfg: GameConfig, opponent: str, seed: int) -> Policy:
    """A fixed opponent named in `games.<game>.opponents`, seeded with `seed`."""
    if opponent not in cfg.opponents:
        raise ConfigError(
            f"Game {game!r} has no opponent {opponent!r}. Configured: "
            f"{', '.join(cfg.opponents) or 'none'} (games.{game}.opponents)."
        )
    return instantiate(cfg.opponents[opponent], seed=seed)
