"""Checkpoints are atomic: a torn or corrupted one is reported and never loaded."""

from __future__ import annotations

import contextlib
import json
import logging

from spiral_games.checkpoint import latest_checkpoint, list_checkpoints, save_checkpoint


def write_files(directory):
    (directory / "model.safetensors").write_bytes(b"weights" * 1000)
    (directory / "config.json").write_text("{}")


def test_latest_complete_checkpoint_wins_and_old_ones_are_pruned(tmp_path):
    for step in (1, 2, 3):
        save_checkpoint(tmp_path, step, write_files, {"step": step}, keep=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_000002", "step_000003"]
    path, state = latest_checkpoint(tmp_path)
    assert path.name == "step_000003" and state == {"step": 3}


def test_a_write_killed_midway_leaves_only_an_ignored_temp_dir(tmp_path, caplog):
    save_checkpoint(tmp_path, 1, write_files, {"step": 1}, keep=3)

    def dies_midway(directory):
        write_files(directory)
        raise KeyboardInterrupt  # what SIGINT/SIGKILL mid-write amounts to for the files

    with contextlib.suppress(KeyboardInterrupt):
        save_checkpoint(tmp_path, 2, dies_midway, {"step": 2}, keep=3)
    torn = tmp_path / "checkpoints" / "step_000002.tmp-killed"
    torn.mkdir()
    write_files(torn)  # a SIGKILL leaves the temp dir behind, never a step_N dir
    with caplog.at_level(logging.WARNING):
        assert latest_checkpoint(tmp_path)[1] == {"step": 1}
    assert "never finished" in caplog.text
    save_checkpoint(tmp_path, 3, write_files, {"step": 3}, keep=3)
    assert not torn.exists()  # the next complete save cleans it up


def test_corrupted_latest_checkpoint_is_reported_and_the_previous_used(
    tmp_path, caplog, reliability
):
    for step in (1, 2):
        save_checkpoint(tmp_path, step, write_files, {"step": step}, keep=3)
    latest = tmp_path / "checkpoints" / "step_000002"
    weights = latest / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # truncated
    with caplog.at_level(logging.WARNING):
        _path, state = latest_checkpoint(tmp_path)
    assert state == {"step": 1} and "Skipping checkpoint" in caplog.text and "bytes" in caplog.text

    (tmp_path / "checkpoints" / "step_000001" / "spiral_manifest.json").unlink()
    assert latest_checkpoint(tmp_path) is None  # nothing trustworthy left
    reliability.update(
        fault="Checkpoint truncated, or its manifest missing",
        tries=2,
        outcome="reported and skipped; the previous checkpoint is used (none: start fresh)",
        order=2,
    )


def test_trainer_state_is_plain_json(tmp_path):
    save_checkpoint(tmp_path, 7, write_files, {"step": 7, "rng": [3, [1, 2], None]}, keep=1)
    raw = (tmp_path / "checkpoints" / "step_000007" / "trainer_state.json").read_text()
    assert json.loads(raw)["rng"] == [3, [1, 2], None]
