"""The engine interface every implementation satisfies, what an engine is built from, and the
shared context check."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from spiral_games.config.choices import Dtype, EngineKind, SyncBackend
from spiral_games.config.hardware import choose_threads, this_machine
from spiral_games.config.schema import RolloutConfig
from spiral_games.errors import EngineError
from spiral_games.types import Generation, SamplingParams


@dataclass(frozen=True)
class EngineSpec:
    """What an engine is built from: the rollout config that sizes it (context length, KV cache,
    tensor parallelism, sleep mode), read from `rollout` and never copied, plus the values
    resolved for this one engine (`WorkerConfig.engine_spec` in a run, `from_rollout`
    elsewhere). No field has a default."""

    rollout: RolloutConfig
    kind: EngineKind  # resolved: vllm | hf
    model_path: Path  # an HF model directory
    dtype: Dtype  # resolved; auto: `build_engine` picks for this machine
    seed: int  # this engine's: the run's seed plus its worker index
    cpu_threads: int  # vLLM-CPU threads, resolved from rollout.cpu_threads (>= 1)
    worker_index: int  # which slice of this machine's cores vLLM-CPU binds to
    weight_sync: SyncBackend  # vLLM's weight-transfer backend, if any (file: none)
    sequences: int  # the most requests it serves at once (games in flight): sizes the KV cache

    @classmethod
    def from_rollout(
        cls,
        kind: EngineKind,
        model_path: Path,
        rollout: RolloutConfig,
        *,
        dtype: Dtype,
        seed: int,
        worker_index: int = 0,
        sequences: int | None = None,
    ) -> EngineSpec:
        """An engine outside a run's rollout workers (benchmarks, opponents, tests), sized by
        `rollout` as a worker would be; `cpu_threads=0` becomes this machine's cores split over
        `rollout.num_workers`; `sequences` None: `rollout.concurrent_games`."""
        return cls(
            rollout=rollout,
            kind=kind,
            model_path=model_path,
            dtype=dtype,
            seed=seed,
            cpu_threads=choose_threads(
                rollout.cpu_threads, this_machine().cores, rollout.num_workers
            ),
            worker_index=worker_index,
            weight_sync=SyncBackend.file,  # outside a run's workers nothing streams weights in
            sequences=rollout.concurrent_games if sequences is None else sequences,
        )


class Engine(Protocol):
    """Generates completions for tokenized prompts and accepts new weights."""

    version: int  # weights version currently served

    def generate(
        self, prompts: Sequence[Sequence[int]], params: SamplingParams
    ) -> list[Generation]: ...

    def choose(
        self,
        prompts: Sequence[Sequence[int]],
        choices: Sequence[Sequence[int]],
        params: SamplingParams,
    ) -> list[Generation]:
        """One token per prompt, drawn from the model's next-token distribution renormalised
        over that prompt's `choices` at `params.temperature` (a masked choice); each
        Generation carries `choice_ids` and `choice_logprobs`."""
        ...

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


@runtime_checkable
class StreamingEngine(Protocol):
    """An engine with a request queue: each request runs in the engine's continuous batch and
    is answered as soon as it is done (vLLM). Games then advance one at a time."""

    version: int

    def submit(
        self, prompt: Sequence[int], params: SamplingParams, choices: Sequence[int] = ()
    ) -> str:
        """Queue one reply (with `choices`: a masked choice among them, as `Engine.choose`)."""
        ...

    def poll(self, request_ids: Collection[str]) -> dict[str, Generation]: ...

    def abort(self, request_ids: Collection[str]) -> None: ...


def check_context(prompts: Sequence[Sequence[int]], max_tokens: int, max_model_len: int) -> None:
    """Raise EngineError if the longest prompt plus the token budget exceeds the context."""
    longest = max(len(p) for p in prompts)
    if longest + max_tokens > max_model_len:
        raise EngineError(
            f"A prompt of {longest} tokens plus max_tokens={max_tokens} exceeds "
            f"max_model_len={max_model_len}. Lower max_tokens or shorten the prompt."
        )
