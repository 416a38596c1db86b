"""The engine interface and the factory that picks an implementation by name."""

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


def build_engine(
    kind: str,
    model_path: Path,
    dtype: str = "auto",
    max_model_len: int = 2048,
    seed: int = 0,
    cpu_threads: int = 2,
    kv_cache_gib: int = 1,
    tensor_parallel_size: int = 1,
    sleep_mode: bool = False,
    worker_index: int = 0,
) -> Engine:
    """Build the `vllm` or `hf` engine over an HF model directory. `dtype="auto"` picks what
    this machine runs fastest (`spiral_games.hardware.choose_dtype`).

    Raises:
        EngineError: when the engine is unknown or its backend cannot load here.
    """
    if dtype == "auto":
        from spiral_games.hardware import choose_dtype, this_machine

        dtype = choose_dtype("auto", this_machine())[0]
    if kind == "hf":
        from spiral_games.engines.hf import HFEngine

        return HFEngine(model_path, dtype=dtype, max_model_len=max_model_len, seed=seed)
    if kind == "vllm":
        from spiral_games.engines.vllm import VLLMEngine

        return VLLMEngine(
            model_path,
            dtype=dtype,
            max_model_len=max_model_len,
            seed=seed,
            cpu_threads=cpu_threads,
            kv_cache_gib=kv_cache_gib,
            tensor_parallel_size=tensor_parallel_size,
            sleep_mode=sleep_mode,
            worker_index=worker_index,
        )
    raise EngineError(f"Unknown engine {kind!r}. Set rollout.engine to 'vllm' or 'hf'.")
