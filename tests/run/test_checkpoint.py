"""Checkpoints are atomic: a torn or corrupted one is reported and never loaded."""

from __future__ import annotations

import contextlib
import json
import logging
import random

import pytest

from spiral_games.learn.advantage import RoleBaselines
from spiral_games.manifest import write_manifest
from spiral_games.run.checkpoint import (
    LoopState,
    latest_checkpoint,
    list_checkpoints,
    save_checkpoint,
)


def write_files(directory):
    (directory / "model.safetensors").write_bytes(b"weights" * 1000)
    (directory / "config.json").write_text("{}")


def test_latest_complete_checkpoint_wins_and_old_ones_are_pruned(tmp_path):
    for step in (1, 2, 3):
        save_checkpoint(tmp_path, LoopState(step=step), write_files, keep=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_000002", "step_000003"]
    path, state = latest_checkpoint(tmp_path)
    assert path.name == "step_000003" and state == LoopState(step=3)


def test_a_write_killed_midway_leaves_only_an_ignored_temp_dir(tmp_path, caplog):
    save_checkpoint(tmp_path, LoopState(step=1), write_files, keep=3)

    def dies_midway(directory):
        write_files(directory)
        raise KeyboardInterrupt  # what SIGINT/SIGKILL mid-write amounts to for the files

    with contextlib.suppress(KeyboardInterrupt):
        save_checkpoint(tmp_path, LoopState(step=2), dies_midway, keep=3)
    torn = tmp_path / "checkpoints" / "step_000002.tmp-killed"
    torn.mkdir()
    write_files(torn)  # a SIGKILL leaves the temp dir behind, never a step_N dir
    with caplog.at_level(logging.WARNING):
        assert latest_checkpoint(tmp_path)[1] == LoopState(step=1)
    assert "never finished" in caplog.text
    save_checkpoint(tmp_path, LoopState(step=3), write_files, keep=3)
    assert not torn.exists()  # the next complete save cleans it up


def test_corrupted_latest_checkpoint_is_reported_and_the_previous_used(
    tmp_path, caplog, reliability
):
    for step in (1, 2):
        save_checkpoint(tmp_path, LoopState(step=step), write_files, keep=3)
    latest = tmp_path / "checkpoints" / "step_000002"
    weights = latest / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # truncated
    with caplog.at_level(logging.WARNING):
        _path, state = latest_checkpoint(tmp_path)
    assert (
        state == LoopState(step=1)
        and "Skipping checkpoint" in caplog.text
        and "bytes" in caplog.text
    )

    (tmp_path / "checkpoints" / "step_000001" / "spiral_manifest.json").unlink()
    assert latest_checkpoint(tmp_path) is None  # nothing trustworthy left
    reliability.update(
        fault="Checkpoint truncated, or its manifest missing",
        tries=2,
        outcome="reported and skipped; the previous checkpoint is used (none: start fresh)",
        order=2,
    )


def test_loop_state_is_plain_json_and_reads_back_equal(tmp_path):
    rng = random.Random(5)
    rng.random()
    baselines = RoleBaselines(decay=0.9)
    baselines.advantage("kuhn", 1, 1.0)
    state = LoopState.capture(7, 6, baselines, rng, learner=_Learner())
    save_checkpoint(tmp_path, state, write_files, keep=1)
    raw = json.loads((tmp_path / "checkpoints" / "step_000007" / "trainer_state.json").read_text())
    assert raw["step"] == 7 and raw["version"] == 6 and raw["rng"][0] == 3
    _path, back = latest_checkpoint(tmp_path)
    assert back == state  # JSON's lists are tuples again: random.setstate takes them as they are
    restored = random.Random()
    restored.setstate(back.rng)
    assert restored.random() == rng.random()
    assert RoleBaselines.from_state_dict(back.baselines) == baselines


class _Learner:
    """The one learner method `LoopState.capture` calls: its minibatch RNG's state."""

    def rng_state(self):
        return random.Random(11).getstate()


def test_unknown_trainer_state_keys_are_refused_and_such_a_checkpoint_skipped(tmp_path, caplog):
    with pytest.raises(ValueError, match="unknown trainer state keys"):
        LoopState.from_json({"step": 1, "stepp": 2})
    for step in (1, 2):
        save_checkpoint(tmp_path, LoopState(step=step), write_files, keep=3)
    newer = tmp_path / "checkpoints" / "step_000002"  # as written by a later version
    state = json.loads((newer / "trainer_state.json").read_text())
    (newer / "trainer_state.json").write_text(json.dumps({**state, "population": []}))
    write_manifest(newer)
    with caplog.at_level(logging.WARNING):
        assert latest_checkpoint(tmp_path)[1] == LoopState(step=1)
    assert "unknown trainer state keys" in caplog.text
