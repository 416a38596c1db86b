"""The engine interface every implementation satisfies, and the shared context check."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from spiral_games.errors import EngineError
from spiral_games.types import Generation, SamplingParams


class Engine(Protocol):
    """Generates completions for tokenized prompts and accepts new weights."""

    version: int  # weights version currently served

    def generate(
        self, prompts: Sequence[Sequence[int]], params: SamplingParams
    ) -> list[Generation]: ...

    def score(
        self, prompts: Sequence[Sequence[int]], responses: Sequence[Sequence[int]]
    ) -> list[list[float]]: ...

    def load_weights(self, safetensors_path: Path, version: int) -> None: ...

    def reseed(self, seed: int) -> None:
        """Restart sampling randomness from `seed` (rollouts reproducible after a resume)."""
        ...

    def sleep(self) -> None: ...

    def wake(self) -> None: ...

    def close(self) -> None: ...


def check_context(prompts: Sequence[Sequence[int]], max_tokens: int, max_model_len: int) -> None:
    """Raise EngineError if the longest prompt plus the token budget exceeds the context."""
    longest = max(len(p) for p in prompts)
    if longest + max_tokens > max_model_len:
        raise EngineError(
            f"A prompt of {longest} tokens plus max_tokens={max_tokens} exceeds "
            f"max_model_len={max_model_len}. Lower max_tokens or shorten the prompt."
        )
