"""Shared fixtures: real models built once per session into the (CI-owned) model cache."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach a hub
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


@pytest.fixture(scope="session")
def smollm2():
    """The bundled SmolLM2-135M-Instruct, converted once into the shared model cache."""
    from spiral_games.models import resolve_model

    return resolve_model("smollm2-135m")


@pytest.fixture(scope="session")
def tiny():
    """The 2-layer `tiny-random` model (seed 0) with SmolLM2's tokenizer."""
    from spiral_games.models import resolve_model

    return resolve_model("tiny-random", seed=0)
