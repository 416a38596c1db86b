"""Data that flows between parts: small frozen dataclasses shared by engines, games and learner."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SamplingParams:
    """Sampling settings honoured by every engine."""

    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 256
    stop: tuple[str, ...] = ()
    seed: int | None = None


@dataclass(frozen=True)
class Generation:
    """One sampled completion of one prompt."""

    prompt_ids: tuple[int, ...]  # [P]
    token_ids: tuple[int, ...]  # [T] sampled tokens, EOS included when produced
    logprobs: tuple[float, ...]  # [T] behaviour log-prob of each sampled token
    text: str  # decoded `token_ids` without special tokens
    truncated: bool  # True when max_tokens ended the sample before EOS or a stop string
