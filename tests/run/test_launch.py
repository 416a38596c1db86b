"""The self-play entry point, run as a user would run it."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from spiral_games.config.schema import LearnerConfig

from ..conftest import REPO
from ..tiny_run import tiny_overrides

# every test here starts Ray, vLLM, a DeepSpeed learner or a subprocess: not the fast lane
pytestmark = pytest.mark.slow


def _selfplay(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "launch/selfplay.py", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_design_card_command_parses_and_prints_the_config():
    out = _selfplay("+games=[kuhn,tictactoe]", "--cfg")
    assert out.returncode == 0, out.stderr
    assert '"kuhn"' in out.stdout and '"tictactoe"' in out.stdout


def test_bad_override_exits_2_with_one_line_and_no_traceback():
    out = _selfplay("+games=[kuhn]", "learner.bogus=3")
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    valid = ", ".join(f.name for f in dataclasses.fields(LearnerConfig))
    assert out.stderr.strip().splitlines() == [
        f"error: Unknown config key 'bogus' in learner. Valid keys: {valid}."
    ]


def test_unknown_model_exits_2_naming_the_choices():
    out = _selfplay("+games=[kuhn]", "model.name=gpt-17", "rollout.engine=hf")
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert "Unknown model 'gpt-17'" in out.stderr


def test_one_training_step_with_the_tiny_model_from_the_command_line(tiny, tmp_path):
    out = _selfplay(*tiny_overrides("train.steps=1", output_dir=tmp_path))
    assert out.returncode == 0, out.stderr[-2000:]
    assert f"run finished: {tmp_path}" in out.stdout
    assert "step 1:" in out.stdout + out.stderr  # the live progress line
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 1
