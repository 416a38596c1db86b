"""Hydra overrides for a tiny run: the tiny random model, short answers and a quiet trainer.

`tiny_overrides` is the one place the tests spell these settings out, for composing a config
in-process (`tiny_config`) and for the command line of launch/selfplay.py or launch/benchmark.py.
An extra override of a key already in the list replaces it, so no key appears twice.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from spiral_games.config.compose import compose_run_config
from spiral_games.config.schema import RunConfig

from .conftest import REPO

MODEL = ["model=tiny-random"]
# transformers, short answers, and a tiny run's sizes (the CPU card's 144 games a step and its
# temperature 2 are for SmolLM2's masked choice; the tiny model answers in free text)
ROLLOUT = [
    "rollout.engine=hf",
    "rollout.max_tokens=16",
    "rollout.episodes_per_step=16",
    "rollout.temperature=0.7",
]
TRAINER = [  # quiet, small Ray, small batches
    "train.wandb_mode=disabled",
    "eval.points=0",
    "eval.temperature=0.6",
    "ray.num_cpus=2",
    "learner.lr=2e-5",
    "learner.batch_size=32",
    "learner.minibatch_size=16",
    "learner.micro_batch_size=4",
    "learner.magnet_coef=0",
]


def override_key(override: str) -> str:
    """The config key an override sets: `+games=[kuhn]` -> `games`."""
    return override.split("=", 1)[0].lstrip("+~")


def tiny_overrides(
    *extra: str,
    games: str | Sequence[str] | None = "kuhn",
    output_dir: str | os.PathLike[str] | None = None,
    rollout: bool = True,
    trainer: bool = True,
) -> list[str]:
    """`+games=[<games>]` (none if `games` is None), `model=tiny-random`, with `rollout` also
    `ROLLOUT` (transformers, 16-token replies, 16 games a step at temperature 0.7), with
    `trainer` also `TRAINER` (no wandb, no evaluation, 2 Ray CPUs, small batches, no magnet),
    then `output_dir=<output_dir>` if given, then `extra`.
    A later override of a key replaces the earlier one in its place."""
    if games is not None and not isinstance(games, str):
        games = ",".join(games)
    listed = [f"+games=[{games}]"] if games is not None else []
    listed += MODEL + (ROLLOUT if rollout else []) + (TRAINER if trainer else [])
    if output_dir is not None:
        listed.append(f"output_dir={os.fspath(output_dir)}")
    by_key: dict[str, str] = {}
    for override in [*listed, *extra]:
        by_key[override_key(override)] = override  # a dict keeps the first position
    return list(by_key.values())


def tiny_config(
    *extra: str,
    games: str | Sequence[str] | None = "kuhn",
    output_dir: str | os.PathLike[str] | None = None,
    rollout: bool = True,
    trainer: bool = True,
) -> RunConfig:
    """`tiny_overrides(...)` composed with conf/ into a validated RunConfig."""
    overrides = tiny_overrides(
        *extra, games=games, output_dir=output_dir, rollout=rollout, trainer=trainer
    )
    return compose_run_config(REPO / "conf", overrides)
