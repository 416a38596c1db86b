"""Transcripts: episodes serialised as JSON lines, and read back."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from spiral_games.types import Episode


def write_transcripts(episodes: Iterable[Episode], path: Path) -> int:
    """Append one JSON object per episode to `path` (created with its parents); returns count."""
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with path.open("a", encoding="utf-8") as fh:
        for episode in episodes:
            fh.write(json.dumps(episode.to_json(), ensure_ascii=False) + "\n")
            count += 1
    return count


def read_transcripts(path: Path) -> list[dict]:
    """Every transcript in a JSONL file written by `write_transcripts`."""
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]
