"""The imitation baseline's entry point, run as a user would run it, on the tiny model."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from spiral_games.errors import ConfigError
from spiral_games.llm.models import resolve_model
from spiral_games.run.checkpoint import latest_checkpoint
from spiral_games.run.sft import DEMONSTRATIONS_FILE

from ..conftest import REPO
from ..tiny_run import tiny_config, tiny_overrides

# Small evaluations: the analyses on a handful of replies, and a few games against random
SMALL_EVAL = [
    "eval.points=2",
    "eval.games=2",
    "eval.opponents=[random]",
    "eval.reference=[]",
    "games.kuhn.analyses.exploitability.samples=1",
    "games.tictactoe.analyses.move_quality.games=2",
    "games.tictactoe.analyses.move_quality.positions=2",
]


def _sft(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "launch/sft.py", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.slow
def test_two_sft_steps_from_the_command_line_log_evaluate_and_write_a_loadable_checkpoint(
    tiny, tmp_path
):
    args = tiny_overrides(
        "train.steps=2",
        "sft.demonstrations=12",
        "learner.batch_size=8",
        "learner.minibatch_size=8",
        "learner.lr=1e-3",
        *SMALL_EVAL,
        games="kuhn,tictactoe",
        output_dir=tmp_path,
    )
    out = _sft(*args)
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"run finished: {tmp_path}" in out.stdout
    assert "demonstrations: episodes=12" in out.stdout
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 1, 2]  # the evaluation before training, two steps
    for row in rows[1:]:
        assert row["train/samples"] == 8.0 and row["train/tokens"] > 0
        assert row["sft/samples"] == row["sft/kuhn/samples"] + row["sft/tictactoe/samples"] > 8
        assert row["sft/kuhn/samples"] == row["sft/kuhn/expert_turns"]  # sft_keep: all
        assert row["train/loss"] > 0 and row["train/grad_norm"] > 0
    assert rows[2]["sft/passes"] == pytest.approx(16 / rows[2]["sft/samples"])
    for key in ("eval/kuhn/exploitability", "eval/kuhn/random/win_rate"):
        assert key in rows[0] and key in rows[2]
    demos = (tmp_path / DEMONSTRATIONS_FILE).read_text().splitlines()
    assert len(demos) == 12 and {json.loads(d)["game"] for d in demos} == {"kuhn", "tictactoe"}

    found = latest_checkpoint(tmp_path)  # the manifest verified, as a resume or a run reads it
    assert found is not None
    path, state = found
    assert path.name == "step_000002" and state.step == 2
    model = resolve_model(str(path))  # what model.name=<checkpoint> loads for play and eval
    trained = load_file(str(model.path / "model.safetensors"))
    start = load_file(str(tiny.path / "model.safetensors"))
    assert trained.keys() == start.keys()
    assert any(not torch.equal(trained[k], start[k]) for k in start)
    assert (
        model.tokenizer("\\boxed{[bet]}")["input_ids"]
        == tiny.tokenizer("\\boxed{[bet]}")["input_ids"]
    )


def test_the_sft_config_trains_by_nll_and_other_losses_are_refused():
    out = _sft("+games=[kuhn,tictactoe]", "--cfg")
    assert out.returncode == 0, out.stderr
    printed = json.loads(out.stdout)
    assert printed["learner"]["loss"] == "sft" and printed["sft"]["expert"] == "expert"
    assert printed["learner"]["magnet_coef"] == 0  # the experts' strategies, not bent to uniform
    assert printed["games"]["kuhn"]["sft_keep"] == "all"  # conf/games/kuhn.yaml
    assert printed["games"]["tictactoe"]["sft_keep"] == "winner"  # sft.keep's default
    refused = _sft(*tiny_overrides("learner.loss=ppo", games="kuhn"))
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert (
        refused.stderr.strip()
        .splitlines()[-1]
        .startswith(
            "error: learner.loss=ppo: the imitation baseline trains by NLL (learner.loss=sft"
        )
    )


def test_self_play_refuses_the_imitation_loss(tmp_path):
    from spiral_games.run.trainer import train

    with pytest.raises(ConfigError, match=r"learner\.loss=sft is the imitation baseline's loss"):
        train(tiny_config("learner.loss=sft", output_dir=tmp_path))
