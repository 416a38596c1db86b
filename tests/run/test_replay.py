"""The replay page asks each game to draw its own turns: the env comes from the run's
config.json, else from conf/games/<game>.yaml, and a game neither builds is drawn as the
observations' text (`GameEnv.draw_boards`'s default)."""

from __future__ import annotations

import json

from games.kuhn import KuhnPokerGame
from games.nim import NimGame
from games.tictactoe import TicTacToeGame
from spiral_games.play.game import text_boards
from spiral_games.run.replay import game_envs, render_run

from ..conftest import REPO

CONF = REPO / "conf"


def test_envs_come_from_the_runs_config_then_the_projects_conf(tmp_path):
    run_games = {
        "kuhn": {"env": {"_target_": "games.kuhn.KuhnPokerGame", "reward": "win_loss"}},
        "stolen": {"env": {"_target_": "os.system", "command": "true"}},  # never imported
    }
    (tmp_path / "config.json").write_text(json.dumps({"games": run_games}))
    envs = game_envs(tmp_path, ["kuhn", "tictactoe", "nim", "stolen", "my<game>"], CONF)
    assert isinstance(envs["kuhn"], KuhnPokerGame) and envs["kuhn"].reward == "win_loss"
    assert isinstance(envs["tictactoe"], TicTacToeGame)  # not in config.json: conf/games/
    assert isinstance(envs["nim"], NimGame)
    assert envs["stolen"] is None and envs["my<game>"] is None
    # without a config.json every game comes from conf/games/ with its defaults
    defaults = game_envs(tmp_path / "none", ["kuhn"], CONF)["kuhn"]
    assert isinstance(defaults, KuhnPokerGame) and defaults.reward == "chips"


def _turn(role: int, action: str, prompt: str) -> dict:
    return {"role": role, "prompt": prompt, "response": "", "action": action, "valid": True}


def test_a_game_draws_its_own_turns_and_others_get_their_observation_text():
    ttt = [_turn(0, "[4]", "you will be 'O'"), _turn(1, "[0]", "board")]
    assert [d.count('class="mark') for d in TicTacToeGame().draw_boards(ttt)] == [1, 2]
    kuhn = [_turn(0, "[bet]", "Round 1/1. Your card: K. Chips so far: you +0, opponent +0.")]
    assert (
        '<span class="card" title="Player 0\'s card">K</span>'
        in KuhnPokerGame().draw_boards(kuhn)[0]
    )
    nim = [_turn(0, "[0 1]", "Piles: 3 4 5\n\nYour move <b>")]
    assert NimGame().draw_boards(nim) == text_boards(nim)
    assert text_boards(nim) == ['<pre class="board text">Piles: 3 4 5\nYour move &lt;b&gt;</pre>']


def test_the_page_carries_each_drawn_games_css_once(tmp_path):
    rows = [
        {
            "game": game,
            "seed": seed,
            "version": 0,
            "returns": [1.0, -1.0],
            "reason": "done",
            "invalid_role": None,
            "trained_roles": [0, 1],
            "opponent": "",
            "turns": [_turn(0, "[4]", "you will be 'O'")],
        }
        for game in ("tictactoe", "nim")
        for seed in (0, 1)
    ]
    (tmp_path / "transcripts").mkdir()
    (tmp_path / "transcripts" / "step_000001.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in rows)
    )
    page = render_run(tmp_path, CONF).read_text()
    assert page.count("table.ttt td.last{") == 1 and page.count('class="board ttt"') == 2
    assert page.count('<pre class="board text">') == 2  # nim: no drawing of its own
