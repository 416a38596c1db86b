"""Config composition: Hydra overrides in, a validated `RunConfig` out, or one clear error."""

from __future__ import annotations

import dataclasses
import re
import typing
from collections.abc import Collection
from enum import StrEnum
from pathlib import Path
from typing import Any

from spiral_games.config.schema import (
    GameConfig,
    HeldoutConfig,
    RunConfig,
    choice_error,
    register_configs,
)
from spiral_games.errors import ConfigError


def compose_run_config(
    config_dir: Path, overrides: list[str], config_name: str = "config", root: type = RunConfig
) -> Any:
    """Compose `config_dir/config_name.yaml` with command-line `overrides` into `root`
    (a `RunConfig` by default).

    Raises:
        ConfigError: naming the offending key and the fix (valid keys, available options).
    """
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    _refuse_merged_keys(overrides)
    overrides = _as_typed_words(overrides, root)
    register_configs()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(config_dir.resolve()), version_base=None):
            cfg = compose(config_name, overrides=overrides)
        OmegaConf.resolve(cfg)
        run = OmegaConf.to_object(cfg)
    except ConfigError:
        raise
    except Exception as exc:  # Hydra/OmegaConf raise many types; translate them all
        raise _translate(exc, config_dir, root) from None
    finally:
        GlobalHydra.instance().clear()
    assert isinstance(run, root)
    return run


def compose_game_config(config_dir: Path, name: str) -> GameConfig:
    """The game `config_dir/games/<name>.yaml` configures, as `+games=[<name>]` selects it.

    Raises:
        ConfigError: the file is missing, or sets a key `GameConfig` does not have.
    """
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    if not (config_dir / "games" / f"{name}.yaml").is_file():
        options = sorted(p.stem for p in (config_dir / "games").glob("*.yaml"))
        raise ConfigError(f"No game {name!r} in conf/games/ (there: {', '.join(options)}).")
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(config_dir.resolve()), version_base=None):
            node = compose(f"games/{name}").games[name]
        game = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(GameConfig), node))
    except ConfigError:
        raise
    except Exception as exc:  # Hydra/OmegaConf raise many types; translate them all
        raise ConfigError(f"conf/games/{name}.yaml: {str(exc).strip().splitlines()[0]}") from None
    finally:
        GlobalHydra.instance().clear()
    assert isinstance(game, GameConfig)
    return game


def compare_overrides(argv: list[str], known: Collection[str]) -> list[str]:
    """`--compare a=X b=Y` becomes `+models.a=X +models.b=Y`; the rest (every `key=value`
    whose key is one of `known`, a dotted key, or an option) are Hydra overrides."""
    if "--compare" not in argv:
        return argv
    rest, pairs = [], []
    for arg in (a for a in argv if a != "--compare"):
        key, sep, value = arg.partition("=")
        if sep and key.isidentifier() and key not in known:
            pairs.append(f"+models.{key}='{value}'")
        elif sep and not key.isidentifier() and "." not in key and key[:1] not in "+~-":
            raise ConfigError(
                f"--compare label {key!r} is not a plain name: a label is letters, digits and "
                f"_, not starting with a digit (e.g. {_plain_label(key)}={value})."
            )
        else:
            rest.append(arg)
    if not pairs:
        raise ConfigError("--compare takes label=model pairs, e.g. base=smollm2-135m.")
    return [*rest, *pairs]


def _plain_label(key: str) -> str:
    """`key` with what a label cannot hold replaced by _ ('lr1e-4' -> 'lr1e_4')."""
    plain = "".join(c if c.isalnum() or c == "_" else "_" for c in key)
    return plain if plain[:1].isalpha() or plain[:1] == "_" else f"m_{plain}"


MERGED_OPPONENT = "rollout.opponent"  # merged into rollout.opponents


def _merged_opponent_message(value: str | None) -> str:
    """The one error for the old `rollout.opponent`, naming the setting that replaced it."""
    if not value:
        use = "rollout.opponents=<name>"
    elif value == "null":  # rollout.opponent=null was self-play
        use = "rollout.opponents=self_play"
    else:
        use = f"rollout.opponents={value}"
    return (
        "rollout.opponent was merged into rollout.opponents, which takes self_play, league, "
        f"or a fixed opponent from games.<name>.opponents. Use {use}."
    )


def _refuse_merged_keys(overrides: list[str]) -> None:
    for override in overrides:
        key, sep, value = override.lstrip("+~").partition("=")
        if key == MERGED_OPPONENT:
            raise ConfigError(f"{override}: {_merged_opponent_message(value if sep else None)}")


BOOL_WORDS = ("true", "false", "yes", "no", "on", "off", "1", "0")  # what a bool field takes
# the resume switch of each entry point's config: `<key>=<dir>` is short for `<key>=true
# output_dir=<dir>`
RESUME_KEYS: dict[type, str] = {RunConfig: "train.resume", HeldoutConfig: "resume"}


def _as_typed_words(overrides: list[str], root: type) -> list[str]:
    """The overrides with the words of a choice kept as words, and the run directory a
    `train.resume=<run dir>` (launch/heldout.py: `resume=<dir>`) names moved to `output_dir`.

    Hydra reads `true`/`false` as booleans, and OmegaConf takes only a member's name into a
    choice (`learner.bf16=true` must reach it as the word 'true').
    """
    out = []
    for override in overrides:
        key, sep, value = override.partition("=")
        bare = key.lstrip("+~")
        if not sep:
            out.append(override)
        elif bare == RESUME_KEYS.get(root) and value.lower() not in BOOL_WORDS:
            if value in ("", "null"):  # no run to resume, as when train.resume was a path
                out.append(f"{key}=false")
            else:
                out += [f"{key}=true", _resumed_output_dir(bare, value, overrides)]
        elif value.lower() in ("true", "false") and _choice_words(bare, root) is not None:
            out.append(f"{key}='{value.lower()}'")
        else:
            out.append(override)
    return out


def _resumed_output_dir(resume: str, run_dir: str, overrides: list[str]) -> str:
    """`output_dir=<run_dir>` for `<resume>=<run_dir>`, refused beside another output_dir."""
    for override in overrides:
        key, _, value = override.partition("=")
        if key.lstrip("+~") == "output_dir" and value != run_dir:
            raise ConfigError(
                f"{resume}={run_dir} continues the run in {run_dir}, and {override} names "
                f"another. Drop one: {resume}={run_dir}, or {resume}=true {override}."
            )
    return f"output_dir={run_dir}"


def _choice_words(dotted: str, root: type) -> type[StrEnum] | None:
    """The StrEnum of the config field `dotted`, if it is a choice (Optional or not)."""
    parent, _, leaf = dotted.rpartition(".")
    schema = _schema_for(parent, root)
    if schema is None:
        return None
    hint = typing.get_type_hints(schema).get(leaf)
    for kind in (hint, *typing.get_args(hint)):
        if isinstance(kind, type) and issubclass(kind, StrEnum):
            return kind
    return None


def _translate(exc: Exception, config_dir: Path, root: type) -> ConfigError:
    message = str(exc)
    cause = exc.__cause__
    if isinstance(cause, ConfigError):
        return cause
    word = re.search(
        r"Invalid value '([^']*)', expected one of \[.*?\]\s+full_key: (\S+)",
        f"{message}\n{cause}",
    )
    words = _choice_words(word.group(2), root) if word else None
    if word and words is not None:  # a word that is no member of the field's choice
        return choice_error(word.group(2), word.group(1), words)
    missing = re.search(r"Could not (?:load|find) '([^']+)/([^']+)'", message)
    if missing:
        group, name = missing.groups()
        options = sorted(p.stem for p in (config_dir / group).glob("*.yaml"))
        hint = " To add a game, see docs/adding-a-game.md." if group == "games" else ""
        return ConfigError(
            f"Unknown {group} option {name!r}. Available in conf/{group}/: "
            f"{', '.join(options)}.{hint}"
        )
    nested = re.search(r"full_key: (\S+)", str(cause)) if cause else None
    if nested and "not in struct" in str(cause):
        return ConfigError(_unknown_key_message(nested.group(1), root))
    in_file = re.search(r"Key '[^']+' not in '.*full_key: (\S+)", message, re.DOTALL)
    if in_file:  # an unknown key set in a YAML file: Hydra names its full path
        return ConfigError(_unknown_key_message(in_file.group(1), root))
    append = re.search(r"Could not override '([^']+)'\. No match in the defaults list", message)
    if append:  # a config group with nothing selected yet, e.g. games=[kuhn] without the '+'
        group = append.group(1)
        example = "+games=[kuhn,tictactoe]" if group == "games" else f"+{group}=<option>"
        options = sorted(p.stem for p in (config_dir / group).glob("*.yaml"))
        listed = f" Available in conf/{group}/: {', '.join(options)}." if options else ""
        return ConfigError(
            f"{group} has no default to override: select it with a leading '+', e.g. "
            f"{example}.{listed}"
        )
    key = re.search(r"Could not override '([^']+)'", message) or re.search(
        r"Key '([^']+)' not in '", message
    )
    if key and ("not in" in message or "Could not override" in message):
        return ConfigError(_unknown_key_message(key.group(1), root))
    value = re.search(r"Error merging override (\S+?)=(\S*)", message)
    if value:
        detail = str(cause) if cause else message
        first = detail.strip().splitlines()[0]
        return ConfigError(f"Bad value for {value.group(1)}: {first}. Fix the override's type.")
    first = message.strip().splitlines()[0] if message.strip() else type(exc).__name__
    return ConfigError(f"Invalid config: {first}")


def _unknown_key_message(dotted: str, root: type) -> str:
    if root is RunConfig and dotted == MERGED_OPPONENT:  # set in a YAML file
        return _merged_opponent_message(None)
    parent, _, leaf = dotted.rpartition(".")
    schema = _schema_for(parent, root)
    if schema is None:
        return (
            f"Unknown config key {dotted!r}. Check the spelling against conf/ and "
            "docs/configuration.md."
        )
    valid = ", ".join(f.name for f in dataclasses.fields(schema))
    where = parent or "the root"
    return f"Unknown config key {leaf!r} in {where}. Valid keys: {valid}."


def _schema_for(parent: str, root: type) -> type | None:
    from spiral_games.config.schema import GameConfig

    if not parent:
        return root
    if root is RunConfig and re.fullmatch(r"games\.[^.]+", parent):
        return GameConfig
    node: type | None = root
    for part in parent.split("."):
        fields = {f.name: f for f in dataclasses.fields(node)} if node else {}
        factory = fields[part].default_factory if part in fields else None
        node = factory if isinstance(factory, type) and dataclasses.is_dataclass(factory) else None
    return node
