"""Resuming a held-out call (launch/heldout.py `resume=<dir>`): which scores of the call in
`output_dir` a new call keeps, and the checks that keep scores of different settings apart."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spiral_games.config.schema import GameConfig, HeldoutConfig
from spiral_games.errors import ConfigError
from spiral_games.report.heldout import GameScore

SCORES = "scores.jsonl"  # each (model, game)'s score, appended as soon as it is done
CALL = "call.json"  # the settings a resumed call must share (call_settings)


@dataclass(frozen=True)
class ScoreKey:
    """Which games a score is of: the same key, the same games and seats."""

    model: str  # the label
    weights: str  # what the label named ("" for the random player)
    game: str
    seed: int
    games: int

    @classmethod
    def of(cls, record: Mapping[str, Any]) -> ScoreKey:
        return cls(
            record["model"], record["weights"], record["game"], record["seed"], record["games"]
        )


def call_settings(cfg: HeldoutConfig) -> dict[str, Any]:
    """What decides how a game is played and scored, beyond its ScoreKey and game config: the
    sampling, the prompt and parsing, the reply and context budgets. Not which models and games,
    where the output goes, the harness, the threads and batching, or the engine and dtype words
    (`auto` resolves per machine: the resolved ones are checked by `check_engine`)."""
    m, r = cfg.model, cfg.rollout
    return _json(
        {
            "temperature": cfg.temperature,
            "text_temperature": cfg.text_temperature,
            "spell_choices": cfg.spell_choices,
            "top_p": cfg.top_p,
            "model": {
                "prompt_style": m.prompt_style,
                "action_format": m.action_format,
                "max_tokens": m.max_tokens,
                "seed": m.seed,
            },
            "rollout": {
                "max_tokens": r.max_tokens,
                "max_model_len": r.max_model_len,
                "on_context_overflow": r.on_context_overflow,
            },
        }
    )


def game_settings(config: GameConfig) -> dict[str, Any]:
    """A game's config as scores.jsonl records it: a kept score needs the same."""
    return _json(dataclasses.asdict(config))


def _json(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _dotted(tree: Any, prefix: str = "") -> dict[str, Any]:
    """{"a.b": leaf} for every leaf of nested dicts."""
    if not isinstance(tree, dict):
        return {prefix.rstrip("."): tree}
    return {k: v for key, sub in tree.items() for k, v in _dotted(sub, f"{prefix}{key}.").items()}


def start_call(cfg: HeldoutConfig, out: Path) -> dict[ScoreKey, dict[str, Any]]:
    """The scores a resumed call keeps from the call in `out` (`cfg.resume`), `out`/scores.jsonl
    left holding only whole lines; for a new call, empty, and its `call.json` written. A new call
    refuses an `out` that holds scores, a resumed one a call whose settings differ, so no score
    is overwritten or mixed with another call's.

    Raises:
        ConfigError: naming the fix.
    """
    scores = out / SCORES
    if not cfg.resume:
        if scores.exists():
            raise ConfigError(
                f"{out} already holds the scores of an earlier held-out call ({SCORES}). "
                f"Continue it with resume={out}, or choose another output_dir."
            )
        out.mkdir(parents=True, exist_ok=True)
        (out / CALL).write_text(json.dumps(call_settings(cfg), indent=1))
        return {}
    if not (out / CALL).is_file():
        raise ConfigError(
            f"resume: {out} holds no held-out call this version can continue (no {CALL}). "
            "Check the path, or choose another output_dir for a new call."
        )
    before = _dotted(json.loads((out / CALL).read_text()))
    now = _dotted(call_settings(cfg))
    changed = sorted(k for k in before.keys() | now.keys() if before.get(k) != now.get(k))
    if changed:
        shown = ", ".join(
            f"{k}={json.dumps(before[k])} (now {json.dumps(now.get(k))})"
            if k in before
            else f"{k} (not in {CALL}: set since)"
            for k in changed
        )
        raise ConfigError(
            f"resume: the call in {out} ran with {shown}. Resume it with those settings, or "
            "start a new call in another output_dir."
        )
    return _whole_lines(scores)


def _whole_lines(scores: Path) -> dict[ScoreKey, dict[str, Any]]:
    """Every score line of `scores` by its key, and `scores` rewritten without the line a kill
    cut short (so the next score starts on a line of its own)."""
    if not scores.exists():
        return {}
    lines, kept = [], {}
    for line in scores.read_text().splitlines():
        try:
            record = json.loads(line)
            key = ScoreKey.of(record)
            GameScore.from_dict(record)
        except (json.JSONDecodeError, KeyError, TypeError):  # cut short, or not a score line
            continue
        lines.append(line)
        kept[key] = record
    part = scores.with_name(scores.name + ".part")
    part.write_text("".join(f"{line}\n" for line in lines))
    part.replace(scores)
    return kept


def kept_score(
    kept: Mapping[ScoreKey, dict[str, Any]], key: ScoreKey, config: GameConfig
) -> dict[str, Any] | None:
    """The line of `kept` for `key`, if it was played with this game config."""
    line = kept.get(key)
    return line if line is not None and line.get("game_config") == game_settings(config) else None


def check_engine(label: str, kept: list[dict[str, Any]], engine: Mapping[str, str]) -> None:
    """Refuse to add scores on another engine or dtype to a model's kept ones (`auto` resolves
    by machine), naming the settings that pin the kept ones."""
    for line in kept:
        was = line["engine"]
        if (was["engine"], was["dtype"]) != (engine["engine"], engine["dtype"]):
            raise ConfigError(
                f"resume: {label}'s kept scores were played on {was['engine']} in "
                f"{was['dtype']}, and this call loads it on {engine['engine']} in "
                f"{engine['dtype']}. Resume with rollout.engine={was['engine']} "
                f"model.dtype={was['dtype']}, or start a new call in another output_dir."
            )
