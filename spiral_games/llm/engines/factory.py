"""Build an engine by name: `vllm` (CUDA or CPU) or `hf` (transformers)."""

from __future__ import annotations

from pathlib import Path

from spiral_games.errors import EngineError
from spiral_games.llm.engines.base import Engine


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
    this machine runs fastest (`spiral_games.config.hardware.choose_dtype`).

    Raises:
        EngineError: when the engine is unknown or its backend cannot load here.
    """
    if dtype == "auto":
        from spiral_games.config.hardware import choose_dtype, this_machine

        dtype = choose_dtype("auto", this_machine())[0]
    if kind == "hf":
        from spiral_games.llm.engines.hf import HFEngine

        return HFEngine(model_path, dtype=dtype, max_model_len=max_model_len, seed=seed)
    if kind == "vllm":
        from spiral_games.llm.engines.vllm import VLLMEngine

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
