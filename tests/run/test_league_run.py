"""The opponent league in real training runs (Ray, transformers, DeepSpeed, a tiny model): games
against snapshots and fixed opponents, ratings in the metrics, snapshot files, and an exact
resume after SIGKILL."""

from __future__ import annotations

import json

import pytest
from safetensors.torch import load_file

from ..actors.test_reliability import (
    assert_same_tensors,
    checkpoint_files,
    logged_steps,
    run_trainer,
)

LEAGUE = [
    "train.steps=5",
    "rollout.opponents=league",
    "league.every=1",
    "league.size=2",
    "league.self_play=0.25",
    "rollout.episodes_per_step=12",
    "train.transcripts_per_step=1000",
]


def transcripts(run_dir, step):
    path = run_dir / "transcripts" / f"step_{step:06d}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.slow
def test_a_league_run_trains_against_snapshots_rates_them_and_resumes_exactly(tiny, tmp_path):
    reference = tmp_path / "reference"
    assert run_trainer(reference, tmp_path / "reference.log", *LEAGUE) == 0
    metrics = [json.loads(line) for line in (reference / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2, 3, 4, 5]

    # step 1 has only the fixed opponent; snapshots join after steps 1-4, at most 2 kept
    opponents = {s: {row["opponent"] for row in transcripts(reference, s)} for s in range(1, 6)}
    assert opponents[1] <= {"", "random"}
    assert "step_000001" in opponents[2] | opponents[3]
    assert opponents[5] <= {"", "random", "step_000003", "step_000004"}
    for s in range(1, 6):
        for row in transcripts(reference, s):  # only the current policy's seat is trained
            assert len(row["trained_roles"]) == (2 if row["opponent"] == "" else 1)
            assert all(
                t["version"] == s - 1 for t in row["turns"] if t["role"] in row["trained_roles"]
            )

    last = metrics[-1]
    assert last["league/size"] == 3  # random + the 2 newest snapshots
    assert last["league/games_rated"] > 0
    for name in ("current", "random", "step_000003", "step_000004"):
        assert last[f"league/rating/{name}"] > 0 and last[f"league/rating_sigma/{name}"] > 0
    draws = [v for k, v in last.items() if k.startswith("league/draw/")]
    assert abs(sum(draws) - 1) < 1e-9 and last["league/draw/current"] == 0.25
    assert "league/rating/step_000001" not in last  # evicted
    # snapshot files: only those a kept checkpoint (4 and 5: keep_checkpoints=2) still names
    files = sorted(p.stem for p in (reference / "league").glob("*.safetensors"))
    assert files == ["step_000003", "step_000004"]
    snap = load_file(str(reference / "league" / "step_000004.safetensors"))
    assert snap.keys() and all(t.isfinite().all() for t in snap.values())

    # SIGKILL in step 4's push (snapshot 4 written, not checkpointed), then resume: bit-identical
    run_dir = tmp_path / "killed"
    code = run_trainer(run_dir, tmp_path / "killed.log", *LEAGUE, kill_at="push:4")
    assert code == -9 and logged_steps(run_dir) == [1, 2, 3]
    assert run_trainer(run_dir, tmp_path / "resumed.log", *LEAGUE, "train.resume=true") == 0
    assert "Resuming" in (tmp_path / "resumed.log").read_text()
    assert logged_steps(run_dir) == [1, 2, 3, 4, 5]
    state, weights, optimizer = checkpoint_files(run_dir, 5)
    ref_state, ref_weights, ref_optimizer = checkpoint_files(reference, 5)
    assert state["league"] == ref_state["league"]  # members, ratings and results
    assert state == ref_state
    assert_same_tensors(weights, ref_weights)
    assert_same_tensors(optimizer, ref_optimizer)
    for s in (4, 5):
        assert transcripts(run_dir, s) == transcripts(reference, s)
