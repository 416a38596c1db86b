"""Checkpoints: atomic HF-format directories with trainer state, and finding the last good one."""

from __future__ import annotations

import dataclasses
import json
import logging
import random
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from spiral_games.faults import kill_point
from spiral_games.learn.advantage import RoleBaselines
from spiral_games.manifest import publish_dir, verify_manifest

log = logging.getLogger(__name__)
STATE_FILE = "trainer_state.json"
_STEP_DIR = re.compile(r"^step_(\d+)$")


@dataclasses.dataclass(frozen=True)
class LoopState:
    """The training loop's state after its last completed step: with the weights and the
    optimizer, all that a resume needs to continue bit-identically. Saved as
    `trainer_state.json` in every checkpoint."""

    step: int = 0  # completed steps
    version: int = 0  # weights version the rollout workers serve
    baselines: dict[str, Any] | None = None  # RoleBaselines.state_dict(); None: fresh
    rng: tuple[Any, ...] | None = None  # the driver's random.Random state (collection seeds)
    learner_rng: Any = None  # the learner's minibatch-shuffling state (a list of them per rank)
    torch_rng: tuple[int, ...] | None = None  # torch's CPU generator state, as bytes
    league: dict[str, Any] | None = None  # League.state_dict() (rollout.opponents=league)

    @classmethod
    def capture(
        cls,
        step: int,
        version: int,
        baselines: RoleBaselines,
        rng: random.Random,
        learner: Any,
        league: dict[str, Any] | None = None,
    ) -> LoopState:
        """The state of the live loop objects after `step` completed steps (`league`: the
        run's `League.state_dict()`, if it has one)."""
        import torch

        return cls(
            step=step,
            version=version,
            baselines=baselines.state_dict(),
            rng=rng.getstate(),
            learner_rng=learner.rng_state(),
            torch_rng=tuple(torch.get_rng_state().tolist()),
            league=league,
        )

    def to_json(self) -> dict[str, Any]:
        """Plain JSON (tuples become lists)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LoopState:
        """Inverse of `to_json`: JSON turned the tuples of the RNG states into lists."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown trainer state keys {sorted(unknown)}")
        return cls(
            step=int(data.get("step", 0)),
            version=int(data.get("version", 0)),
            baselines=data.get("baselines"),
            rng=_tuples(data.get("rng")),
            learner_rng=_tuples(data.get("learner_rng")),
            torch_rng=_tuples(data.get("torch_rng")),
            league=data.get("league"),
        )


def _tuples(value: Any) -> Any:
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def save_checkpoint(
    run_dir: Path, state: LoopState, write: Callable[[Path], None], keep: int
) -> Path:
    """Write the checkpoint of `state.step` atomically: temp dir, manifest of hashes, rename.

    Args:
        write: fills a directory with the model files (weights, optimizer, tokenizer, ...).
        keep: how many complete checkpoints to keep.
    """
    root = run_dir / "checkpoints"
    final = root / f"step_{state.step:06d}"

    def fill(tmp: Path) -> None:
        write(tmp)
        kill_point("checkpoint_write")
        (tmp / STATE_FILE).write_text(json.dumps(state.to_json()))

    publish_dir(final, fill)
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


def latest_checkpoint(run_dir: Path) -> tuple[Path, LoopState] | None:
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
            try:
                state = json.loads((candidate / STATE_FILE).read_text())
                return candidate, LoopState.from_json(state)
            except (OSError, ValueError, TypeError) as exc:  # a state this version cannot read
                problem = f"unreadable {STATE_FILE} ({exc})"
        log.warning(
            "Skipping checkpoint %s: %s. Falling back to an earlier one.", candidate, problem
        )
    return None
