"""Build an engine by name: `vllm` (CUDA or CPU) or `hf` (transformers)."""

from __future__ import annotations

import dataclasses

from spiral_games.config.choices import Dtype, EngineKind
from spiral_games.config.hardware import choose_dtype, this_machine
from spiral_games.errors import EngineError
from spiral_games.llm.engines.base import Engine, EngineSpec


def build_engine(spec: EngineSpec) -> Engine:
    """Build the `vllm` or `hf` engine `spec` names. `dtype=auto` picks what this machine runs
    fastest (`spiral_games.config.hardware.choose_dtype`).

    Raises:
        EngineError: when the engine is unknown or its backend cannot load here.
    """
    if spec.dtype == Dtype.auto:
        dtype = choose_dtype(Dtype.auto, this_machine(), spec.kind)[0]
        spec = dataclasses.replace(spec, dtype=dtype)
    if spec.kind == EngineKind.hf:
        from spiral_games.llm.engines.hf import HFEngine

        return HFEngine(spec)
    if spec.kind == EngineKind.vllm:
        from spiral_games.llm.engines.vllm import VLLMEngine

        return VLLMEngine(spec)
    raise EngineError(f"Unknown engine '{spec.kind}'. Set rollout.engine to 'vllm' or 'hf'.")
