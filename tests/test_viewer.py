"""The replay viewer renders in headless Chromium: a screenshot that is not blank, every game
in the DOM, invalid moves highlighted."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from spiral_games.compose import compose_run_config
from spiral_games.play import GameJob, play_games
from spiral_games.policy import RandomPolicy
from spiral_games.registry import build_rules
from spiral_games.transcripts import write_transcripts
from spiral_games.types import PolicyOutput

from .conftest import REPO

GAMES = ("kuhn", "tictactoe", "negotiation")


class Unboxed:
    def act(self, observations):
        return [PolicyOutput(text="<b>I refuse</b> & no box") for _ in observations]


@pytest.fixture
def run_dir(tmp_path):
    cfg = compose_run_config(REPO / "conf", [f"+games=[{','.join(GAMES)}]"])
    for name in GAMES:
        rules = build_rules(name, cfg.games[name])
        jobs = [GameJob(rules, s, (RandomPolicy(s), RandomPolicy(s + 1))) for s in range(3)]
        jobs.append(GameJob(rules, 9, (Unboxed(), RandomPolicy(0))))
        write_transcripts(play_games(jobs), tmp_path / "transcripts" / f"{name}.jsonl")
    return tmp_path


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip("chromium is not installed (launch/install.sh --dev installs it)")
    return path


FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def test_replay_page_renders_every_game_in_headless_chromium(run_dir, tmp_path):
    out = subprocess.run(
        [sys.executable, "launch/view.py", str(run_dir)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    page = run_dir / "replay.html"
    text = page.read_text()
    assert "&lt;b&gt;I refuse&lt;/b&gt; &amp; no box" in text  # escaped, not injected
    assert text.count('class="turn role0 invalid"') >= 3

    browser = chromium()
    profile = tmp_path / "profile"
    dom = subprocess.run(
        [browser, *FLAGS, f"--user-data-dir={profile}", "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    for game in GAMES:
        assert f'id="game-{game}"' in dom.stdout
    assert "invalid move (1)" in dom.stdout

    shot = tmp_path / "shot.png"
    subprocess.run(
        [
            browser,
            *FLAGS,
            f"--user-data-dir={profile}",
            f"--screenshot={shot}",
            "--window-size=1000,800",
            page.as_uri(),
        ],
        capture_output=True,
        timeout=120,
    )
    import matplotlib.image

    pixels = matplotlib.image.imread(str(shot))
    assert pixels.shape[0] > 100 and pixels[..., :3].std() > 0.02  # not a blank page
