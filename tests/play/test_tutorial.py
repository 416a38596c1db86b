"""The tutorial in docs/adding-a-game.md, followed literally in a copy of the project."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest

from ..conftest import REPO

# every test here starts Ray, vLLM, a DeepSpeed learner or a subprocess: not the fast lane
pytestmark = pytest.mark.slow


def _tutorial_blocks() -> dict[str, str]:
    page = (REPO / "docs" / "adding-a-game.md").read_text()
    section = page.split("# Adding a game\n", 1)[1].split("\n## ", 1)[0]
    return dict(re.findall(r"```(python|yaml|bash)\n(.*?)```", section, flags=re.DOTALL))


def test_readme_tutorial_adds_a_game_without_touching_the_library(tmp_path):
    blocks = _tutorial_blocks()
    for part in ("spiral_games", "games", "conf", "launch"):
        shutil.copytree(REPO / part, tmp_path / part, ignore=shutil.ignore_patterns("__pycache__"))
    library_before = {p: p.read_bytes() for p in (tmp_path / "spiral_games").rglob("*.py")}
    (tmp_path / "games" / "race.py").write_text(blocks["python"])
    (tmp_path / "conf" / "games" / "race.yaml").write_text(blocks["yaml"])

    play = blocks["bash"].strip().splitlines()[0]
    assert play.startswith(".venv/bin/python launch/play.py +games=[race]")
    args = [*play.split()[1:], "--out", str(tmp_path / "out")]
    # The copy stands in for the user's own installed checkout: it comes first on the path.
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    row = next(line for line in out.stdout.splitlines() if line.startswith("race"))
    p0_wins, draws, p1_wins, invalid = (int(x) for x in row.split()[3:7])
    assert p0_wins + p1_wins == 20 and draws == 0 and invalid == 0
    assert (tmp_path / "out" / "transcripts" / "race.jsonl").is_file()

    selected = subprocess.run(
        [sys.executable, "launch/selfplay.py", "+games=[race,kuhn]", "--cfg"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert selected.returncode == 0, selected.stderr
    assert '"_target_": "games.race.RaceGame"' in selected.stdout
    library_after = {p: p.read_bytes() for p in (tmp_path / "spiral_games").rglob("*.py")}
    assert library_after == library_before
