"""Checkpoints: atomic HF-format directories with trainer state, and finding the last good one."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from spiral_games.faults import kill_point
from spiral_games.models import verify_manifest, write_manifest

log = logging.getLogger(__name__)
STATE_FILE = "trainer_state.json"
_STEP_DIR = re.compile(r"^step_(\d+)$")


def save_checkpoint(
    run_dir: Path, step: int, write: Any, trainer_state: dict[str, Any], keep: int
) -> Path:
    """Write a checkpoint for `step` atomically: temp dir, manifest of hashes, then rename.

    Args:
        write: callable filling a directory with the model files (weights, tokenizer, ...).
        trainer_state: JSON-serialisable loop state (step, RAE baselines, RNG, ...).
        keep: how many complete checkpoints to keep.
    """
    root = run_dir / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step:06d}"
    tmp = Path(tempfile.mkdtemp(prefix=f"{final.name}.tmp-", dir=root))
    try:
        write(tmp)
        kill_point("checkpoint_write")
        (tmp / STATE_FILE).write_text(json.dumps(trainer_state))
        write_manifest(tmp)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for old in list_checkpoints(run_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    for torn in root.glob("step_*.tmp-*"):  # writes killed before their rename
        shutil.rmtree(torn, ignore_errors=True)
    return final


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Checkpoint directories of a run, oldest first (complete or not)."""
    root = run_dir / "checkpoints"
    if not root.is_dir():
        return []
    dirs = [p for p in root.iterdir() if p.is_dir() and _STEP_DIR.match(p.name)]
    return sorted(dirs, key=lambda p: int(_STEP_DIR.match(p.name).group(1)))  # type: ignore[union-attr]


def latest_checkpoint(run_dir: Path) -> tuple[Path, dict[str, Any]] | None:
    """The newest checkpoint whose files match its manifest, with its trainer state.

    A torn or corrupted checkpoint is reported and skipped, never loaded; so is a write that
    was killed before its rename (a `step_N.tmp-*` directory; the next save removes it).
    """
    root = run_dir / "checkpoints"
    for torn in sorted(root.glob("step_*.tmp-*")) if root.is_dir() else []:
        log.warning(
            "Ignoring %s: a checkpoint write that never finished (the run was killed while "
            "writing it).",
            torn,
        )
    for candidate in reversed(list_checkpoints(run_dir)):
        problem = verify_manifest(candidate)
        if problem is None:
            return candidate, json.loads((candidate / STATE_FILE).read_text())
        log.warning(
            "Skipping checkpoint %s: %s. Falling back to an earlier one.", candidate, problem
        )
    return None
