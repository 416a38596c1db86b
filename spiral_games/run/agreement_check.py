"""The run's start-up agreement check: every rollout engine against the learner, before any game
is played; a disagreement is one clear error or, where the dtype was `auto`, a logged switch of
the engines to float32 (never a silent run on a policy that is not the trained model)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Protocol

from spiral_games.actors.rollout_pool import RolloutPool
from spiral_games.actors.rollout_worker import WorkerConfig
from spiral_games.config.choices import Dtype
from spiral_games.config.schema import RolloutConfig
from spiral_games.errors import EngineError
from spiral_games.llm.agreement import PROBE_TEXT, Agreement, compare, tolerance
from spiral_games.llm.prompting import encode_user_message


class ProbeScorer(Protocol):
    """The learner side: its own forward pass on one sequence (Learner, LearnerGroup)."""

    def probe_scores(
        self, prompt: list[int], response: list[int]
    ) -> tuple[list[float], list[float]]: ...


def check_agreement(
    pool: RolloutPool,
    learner: ProbeScorer,
    tokenizer: Any,
    engine_dtype: Dtype,
    learner_bf16: bool,
    rollout: RolloutConfig,
) -> list[Agreement]:
    """One `Agreement` per live worker: its greedy reply to the probe prompt, scored by the
    learner."""
    prompt = encode_user_message(tokenizer, PROBE_TEXT)
    learner_dtype = Dtype.bfloat16 if learner_bf16 else Dtype.float32
    tol = tolerance(
        engine_dtype, learner_dtype, rollout.agreement_tol_fp32, rollout.agreement_tol_reduced
    )
    reports = []
    for generation in pool.greedy(prompt, rollout.agreement_tokens):
        logprobs, top = learner.probe_scores(prompt, list(generation.token_ids))
        reports.append(compare(generation, logprobs, top, engine_dtype, learner_dtype, tol))
    return reports


def agreed_pool(
    pool: RolloutPool,
    worker_cfg: WorkerConfig,
    learner: ProbeScorer,
    tokenizer: Any,
    learner_bf16: bool,
    dtype_requested: Dtype,
    start_pool: Callable[[WorkerConfig], RolloutPool],
) -> tuple[RolloutPool, WorkerConfig, list[str]]:
    """Check `pool` (serving `worker_cfg`) against `learner`; returns the pool to play with, its
    config and the lines to print and record. With `dtype_requested=auto` (model.dtype) and
    reduced-precision engines that disagree, the pool is restarted (`start_pool`) in float32
    and checked again.

    Raises:
        EngineError: a disagreement that a float32 switch cannot fix or `model.dtype` forbids
            (the pool is shut down first).
    """
    rollout = worker_cfg.rollout
    if rollout.agreement_tokens == 0:
        return pool, worker_cfg, ["agreement check: off (rollout.agreement_tokens=0)"]
    reports = check_agreement(pool, learner, tokenizer, worker_cfg.dtype, learner_bf16, rollout)
    lines = [f"agreement check: {r.describe()}" for r in reports]
    bad = next((r for r in reports if not r.ok), None)
    if bad is None:
        return pool, worker_cfg, lines
    if dtype_requested == Dtype.auto and worker_cfg.dtype != Dtype.float32:
        lines.append(
            f"model.dtype: float32 (auto switched from {worker_cfg.dtype}: the rollout engine "
            "disagreed with the learner; set model.dtype explicitly to override)"
        )
        pool.shutdown()
        worker_cfg = dataclasses.replace(worker_cfg, dtype=Dtype.float32)
        pool = start_pool(worker_cfg)
        reports = check_agreement(pool, learner, tokenizer, Dtype.float32, learner_bf16, rollout)
        lines += [f"agreement check: {r.describe()}" for r in reports]
        bad = next((r for r in reports if not r.ok), None)
        if bad is None:
            return pool, worker_cfg, lines
    pool.shutdown()
    fix = (
        "Set model.dtype=float32 (or auto)"
        if bad.engine_dtype != Dtype.float32
        else "The engine does not serve the learner's weights: check model.* and the "
        "checkpoint, or set rollout.engine=hf"
    )
    raise EngineError(
        f"The rollout engine and the learner disagree at start ({bad.describe()}). {fix}; "
        "rollout.agreement_tokens=0 turns the check off."
    )
