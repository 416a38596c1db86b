"""The run page renders in headless Chromium: a screenshot that is not blank, the before/after
table and curves on top, every game in the DOM with its state drawn turn by turn by the game
itself (TicTacToe grid, Kuhn cards and pot, observation text for other games), invalid moves
highlighted, and filters that the URL hash preselects."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser

import pytest

from games.kuhn import kuhn_views
from games.tictactoe import tictactoe_states
from spiral_games.config.compose import compose_run_config
from spiral_games.play.loop import GameJob, play_games
from spiral_games.play.policy import RandomPolicy
from spiral_games.play.registry import build_rules
from spiral_games.report.summary import write_run_report
from spiral_games.report.transcripts import write_transcripts
from spiral_games.report.viewer import file_step, outcome
from spiral_games.run.replay import render_run
from spiral_games.types import PolicyOutput

from ..conftest import REPO

# every test here starts Ray, vLLM, a DeepSpeed learner or a subprocess: not the fast lane
pytestmark = pytest.mark.slow

GAMES = ("kuhn", "tictactoe", "negotiation")


class Unboxed:
    def act(self, observations):
        return [PolicyOutput(text="<b>I refuse</b> & no box") for _ in observations]


def _eval_metrics(win: float, loss: float) -> dict:
    prefix = "eval/kuhn/random"
    return {
        f"{prefix}/games": 20.0,
        f"{prefix}/win_rate": win,
        f"{prefix}/draw_rate": 0.0,
        f"{prefix}/loss_rate": loss,
        f"{prefix}/invalid_rate": 1.0 - win - loss,
        f"{prefix}/response_length": 80.0,
    }


def _write_metrics(run_dir) -> None:
    rows = [{"step": 0, **_eval_metrics(0.1, 0.3)}]
    rows += [{"step": s, "rollout/invalid_move_rate": 0.5 / s, "time/step": 1.0} for s in (1, 2)]
    rows.append({"step": 3, "rollout/invalid_move_rate": 0.1, **_eval_metrics(0.6, 0.4)})
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture
def run_dir(tmp_path):
    """Self-play games at steps 1 and 3, evaluation games vs random at steps 0 and 3, a
    metrics.jsonl and the run report (summary.json, curves.png) that training writes."""
    cfg = compose_run_config(
        REPO / "conf", [f"+games=[{','.join(GAMES)}]", "games.kuhn.env.num_rounds=5"]
    )
    for name in GAMES:
        rules = build_rules(name, cfg.games[name])
        jobs = [GameJob(rules, s, (RandomPolicy(s), RandomPolicy(s + 1))) for s in range(3)]
        jobs.append(GameJob(rules, 9, (Unboxed(), RandomPolicy(0))))
        episodes = play_games(jobs)
        write_transcripts(episodes[:2], tmp_path / "transcripts" / "step_000001.jsonl")
        write_transcripts(episodes[2:], tmp_path / "transcripts" / "step_000003.jsonl")
        for step in (0, 3):
            seats = (RandomPolicy(step), RandomPolicy(step + 1))
            job = GameJob(rules, 10 + step, seats, trained_roles=(0,), opponent="random")
            write_transcripts(play_games([job]), tmp_path / "eval" / f"step_{step:06d}.jsonl")
    _write_metrics(tmp_path)
    write_run_report(tmp_path)
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


class _Dom(HTMLParser):
    """The episodes' attributes and each <select>'s option values of a dumped DOM."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.episodes: list[dict[str, str | None]] = []
        self.options: dict[str, list[str]] = {}
        self._select = ""
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        found = dict(attrs)
        if tag == "div" and "episode" in (found.get("class") or "").split():
            self.episodes.append(found)
        elif tag == "select":
            self._select = found.get("id") or ""
            self.options[self._select] = []
        elif tag == "option":
            self.options[self._select].append(found.get("value") or "")


def dump_dom(browser: str, profile, url: str) -> str:
    out = subprocess.run(
        [browser, *FLAGS, f"--user-data-dir={profile}", "--dump-dom", url],
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=120,
    )
    return out.stdout


def test_run_page_renders_report_boards_and_filters_in_headless_chromium(run_dir, tmp_path):
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
    dom = dump_dom(browser, profile, page.as_uri())
    for game in GAMES:
        assert f'id="game-{game}"' in dom
    assert "invalid move (1)" in dom
    # the report on top: before/after table from summary.json, then the curves
    assert dom.index('id="before-after"') < dom.index('src="curves.png"') < dom.index("game-kuhn")
    assert "0 → 3" in dom and "+0.500" in dom  # kuhn vs random win rate 0.1 -> 0.6
    # TicTacToe: a grid after every turn, the cell just filled marked
    ttt_turns = dom.split('id="game-tictactoe"')[1].split('id="game-')[0].count('class="turn')
    assert dom.count('class="board ttt"') == ttt_turns > 0
    assert re.search(r'<td class="mark last">[OX]</td>', dom)
    # Kuhn: the acting player's card and the round, up to the last round
    assert re.search(r'<span class="card"[^>]*>[JQK]</span> round 1/5', dom)
    assert " round 5/5 · pot " in dom
    assert 'class="board text"' in dom  # negotiation: no drawing, the observation's text
    parsed = _Dom(dom)
    assert set(GAMES) | {""} == set(parsed.options["filter-game"])
    assert parsed.options["filter-step"] == ["", "0", "1", "3"]
    assert {"", "self-play", "vs random"} == set(parsed.options["filter-opponent"])
    assert "invalid move" in parsed.options["filter-outcome"]
    assert not any("hidden" in e for e in parsed.episodes)

    filtered = _Dom(dump_dom(browser, profile, page.as_uri() + "#game=kuhn&step=3"))
    shown = [e for e in filtered.episodes if "hidden" not in e]
    assert shown and all(e["data-game"] == "kuhn" and e["data-step"] == "3" for e in shown)
    assert len(shown) < len(filtered.episodes) == len(parsed.episodes)

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


def _turn(role: int, action: str | None, prompt: str = "", valid: bool = True) -> dict:
    return {"role": role, "action": action, "valid": valid, "prompt": prompt}


def test_tictactoe_grid_replays_valid_moves_only():
    turns = [_turn(0, "[4]"), _turn(1, "[4]", valid=False), _turn(1, "[0]"), _turn(0, None)]
    states = tictactoe_states(turns)
    center = ("",) * 4 + ("O",) + ("",) * 4
    assert states[0] == (center, 4)
    assert states[1] == (center, None)  # the rejected move leaves the grid as it was
    assert states[2] == (("X", *center[1:]), 0)
    assert states[3] == (states[2][0], None)


def _deal(rnd: int, card: str, mine: int, theirs: int) -> str:
    return f"Round {rnd}/2. Your card: {card}. Chips so far: you {mine:+d}, opponent {theirs:+d}."


def test_kuhn_views_track_each_players_card_and_the_pot_per_round():
    over = "Round 1 over: cards were Player 0 K, Player 1 J. Chips: Player 0 +2, Player 1 -2."
    turns = [
        _turn(0, "[bet]", "ante 1 chip\n" + _deal(1, "K", 0, 0)),
        _turn(1, "[call]", _deal(1, "J", 0, 0)),
        _turn(1, "[check]", f"{over}\n{_deal(2, 'Q', -2, 2)}"),
        _turn(0, "[check]", "Player 1 chose [check]."),  # no deal line: card carried over
    ]
    views = kuhn_views(turns)
    assert [(v.round, v.card, v.pot, v.betting) for v in views] == [
        (1, "K", (2, 1), ("bet",)),
        (1, "J", (2, 2), ("bet", "call")),
        (2, "Q", (1, 1), ("check",)),
        (2, "K", (1, 1), ("check", "check")),
    ]
    assert views[2].chips == (2, -2) and views[2].showdown.startswith("round 1: Player 0 K")
    assert views[3].showdown == ""


def test_unknown_game_renders_its_observation_text_escaped(tmp_path):
    row = {
        "game": "my<game>",
        "seed": 1,
        "version": 0,
        "returns": [1.0, -1.0],
        "reason": "done",
        "invalid_role": None,
        "trained_roles": [0],
        "opponent": "random",
        "turns": [
            {
                "role": 0,
                "prompt": "Board: <script>alert(1)</script>",
                "response": "x",
                "action": "[go]",
                "valid": True,
                "invalid_reason": "",
            }
        ],
    }
    saved = tmp_path / "eval" / "step_000007.jsonl"
    saved.parent.mkdir()
    saved.write_text(json.dumps(row) + "\n")
    page = render_run(tmp_path, REPO / "conf").read_text()  # no game of that name anywhere
    assert outcome(row) == "win" and 'data-step="7"' in page
    assert '<pre class="board text">Board: &lt;script&gt;alert(1)&lt;/script&gt;</pre>' in page
    assert 'data-game="my&lt;game&gt;"' in page and "<script>alert" not in page
    assert "No evaluation" in page and "curves.png" not in page


def test_file_step_reads_the_step_from_the_file_name(tmp_path):
    assert file_step(tmp_path / "step_000000.jsonl") == "0"
    assert file_step(tmp_path / "step_000120.jsonl") == "120"
    assert file_step(tmp_path / "kuhn.jsonl") == "kuhn"
