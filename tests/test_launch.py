"""The self-play entry point, run as a user would run it."""

from __future__ import annotations

import subprocess
import sys

from .conftest import REPO


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
    assert out.stderr.strip().splitlines() == [
        "error: Unknown config key 'bogus' in learner. Valid keys: lr, batch_size, "
        "minibatch_size, epochs, zero_stage, grad_clip."
    ]


def test_unknown_model_exits_2_naming_the_choices():
    out = _selfplay("+games=[kuhn]", "model.name=gpt-17", "rollout.engine=hf")
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert "Unknown model 'gpt-17'" in out.stderr


def test_tiny_model_answers_through_the_hf_engine(tiny):
    out = _selfplay("+games=[kuhn]", "model=tiny-random", "rollout.engine=hf")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "engine hf, game kuhn, first turn" in out.stdout
    assert "parsed action:" in out.stdout
    assert "not implemented yet" in out.stdout
