"""The league's snapshot weights in a run directory: `league/step_000004.safetensors`, written
when a snapshot joins, kept while any kept checkpoint's league still names it (absolute paths:
rollout workers may run in another working directory)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from spiral_games.errors import ConfigError
from spiral_games.play.league import CHECKPOINT, League
from spiral_games.run.checkpoint import STATE_FILE, list_checkpoints

log = logging.getLogger(__name__)


def snapshot_path(run_dir: Path, name: str) -> Path:
    """Where league snapshot `name`'s weights live."""
    return (run_dir / "league" / f"{name}.safetensors").resolve()


def league_snapshots(run_dir: Path, league: League) -> dict[str, tuple[str, int]]:
    """name -> (weights file, step) for every snapshot in `league`, as the rollout pool takes
    them; a missing file is one clear error (the run directory lost it)."""
    out = {}
    for member in league.snapshots():
        path = snapshot_path(run_dir, member.name)
        if not path.is_file():
            raise ConfigError(
                f"League snapshot {member.name} has no weights at {path}. Restore the run's "
                "league/ directory, or start a new run (a different output_dir)."
            )
        out[member.name] = (str(path), member.step)
    return out


def prune_snapshots(run_dir: Path) -> list[Path]:
    """Delete snapshot files that no kept checkpoint's league names (call right after a
    checkpoint, when the live league is the newest checkpoint's); returns what went."""
    named: set[str] = set()
    for checkpoint in list_checkpoints(run_dir):
        try:
            state = json.loads((checkpoint / STATE_FILE).read_text())
        except (OSError, ValueError):
            continue  # torn: never resumed from
        for name, kind, _ in (state.get("league") or {}).get("members", []):
            if kind == CHECKPOINT:
                named.add(name)
    gone = []
    files = [*(run_dir / "league").glob("*.safetensors"), *(run_dir / "league").glob("*.tmp")]
    for path in sorted(files):  # *.tmp: an export a kill interrupted
        if path.suffix == ".tmp" or path.stem not in named:
            path.unlink(missing_ok=True)
            gone.append(path)
    if gone:
        log.info("League: removed %d snapshot(s) no checkpoint needs.", len(gone))
    return gone
