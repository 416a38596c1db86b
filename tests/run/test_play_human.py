"""Human play (`launch/play.py --seats=human,...`): the human policy's input handling on text
streams, and the launch script driven through a real pseudo-terminal as a person would."""

from __future__ import annotations

import importlib.util
import io
import json
import os
import pty
import re
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from games.tictactoe import TicTacToeGame, TicTacToeMinimaxPolicy
from spiral_games.config.choices import ActionFormat
from spiral_games.config.schema import GameConfig
from spiral_games.play.human import HumanPolicy, HumanQuit, choose_move, play_watched
from spiral_games.play.loop import GameJob, GameRules
from spiral_games.play.parsing import parse_boxed_action
from spiral_games.types import GameEnd, Observation, ParsedAction

from ..conftest import REPO

TICTACTOE = tuple(f"[{i}]" for i in range(9))
KUHN_OPEN = ("[check]", "[bet]")


def _obs(legal: tuple[str, ...] | None = TICTACTOE, text: str = "the board") -> Observation:
    return Observation(game="g", role=0, text=text, legal_actions=legal)


# ---- the move a typed line names ----


@pytest.mark.parametrize(
    ("entry", "legal", "move"),
    [
        ("4", TICTACTOE, "[4]"),  # bare
        ("[4]", TICTACTOE, "[4]"),  # the game's syntax
        (" [ 4 ] ", TICTACTOE, "[4]"),
        ("bet", KUHN_OPEN, "[bet]"),
        ("BET", KUHN_OPEN, "[bet]"),
        ("b", KUHN_OPEN, "[bet]"),  # a prefix of exactly one legal move
        ("ch", KUHN_OPEN, "[check]"),
    ],
)
def test_game_syntax_and_shorthands_name_one_legal_move(entry, legal, move):
    assert choose_move(entry, legal) == (move, "")


def test_an_illegal_entry_is_refused_with_the_legal_moves():
    move, problem = choose_move("9", ("[3]", "[5]"))
    assert move is None
    assert problem == "'9' is not a legal move here. Legal moves: [3], [5]."


def test_an_ambiguous_prefix_is_refused_naming_the_candidates():
    move, problem = choose_move("c", ("[check]", "[call]"))
    assert move is None and "[check] or [call]" in problem


def test_a_move_beyond_the_listed_sample_goes_through_the_games_parser():
    # negotiation lists a sample of offers; its parser accepts any well-formed one
    def parse(text: str) -> ParsedAction:
        ok = "[Offer:" in text
        return ParsedAction(text if ok else None, "" if ok else "no [Offer: ...] in the answer")

    offer = "[Offer: 3 Wood -> 2 Gold]"
    assert choose_move(offer, ("[Deny]",), parse) == (offer, "")
    assert choose_move("hello", ("[Deny]",), parse)[0] is None


def test_a_game_without_a_move_list_gets_the_entry_as_typed():
    assert choose_move("[take 3]", None) == ("[take 3]", "")


# ---- the human policy on text streams ----


def _human(lines: str) -> tuple[HumanPolicy, io.StringIO]:
    out = io.StringIO()
    return HumanPolicy(io.StringIO(lines), out), out


def test_human_retries_after_invalid_entries_and_answers_in_the_boxed_format():
    human, out = _human("banana\n\n9\n4\n")
    [answer] = human.act([_obs(legal=TICTACTOE[3:])])
    assert answer.text == "\\boxed{[4]}"
    assert parse_boxed_action(answer.text, TICTACTOE).action == "[4]"  # play's own parser
    shown = out.getvalue()
    assert "the board" in shown and "Legal moves: [3], [4]" in shown
    assert "Not played: 'banana' is not a legal move here. Legal moves: [3], [4]" in shown
    assert "Not played: Type a move" in shown
    assert "Not played: '9' is not a legal move" in shown
    assert shown.count("your move> ") == 4


def test_help_lists_the_moves_again():
    human, out = _human("help\nbet\n")
    assert human.act([_obs(legal=KUHN_OPEN)])[0].text == "\\boxed{[bet]}"
    assert out.getvalue().count("Legal moves: [check], [bet]") == 2


@pytest.mark.parametrize("word", ["quit", "q", "QUIT", "exit"])
def test_quit_ends_the_session(word):
    human, _ = _human(f"{word}\n4\n")
    with pytest.raises(HumanQuit, match="You quit"):
        human.act([_obs()])


def test_end_of_input_ends_the_session_with_a_clear_message():
    human, _ = _human("banana\n")  # then Ctrl-D
    with pytest.raises(HumanQuit, match=r"The input ended \(Ctrl-D\)"):
        human.act([_obs()])


def test_a_repeated_history_is_shown_only_from_where_the_person_left_it():
    human, out = _human("0\n4\n")
    human.act([_obs(text="intro\nboard 1")])
    human.act([_obs(text="intro\nboard 1\nthey played 8\nboard 2")])
    shown = out.getvalue()
    assert shown.count("intro") == 1 and "they played 8\nboard 2" in shown


# ---- one watched game: narration, result, abandonment ----


def _tictactoe_job(human: HumanPolicy, seed: int = 0) -> GameJob:
    game = GameConfig(env={"_target_": "games.tictactoe.TicTacToeGame"})  # SPIRAL's penalty
    rules = GameRules("tictactoe", TicTacToeGame, game, ActionFormat.boxed)
    return GameJob(rules, seed, (human, TicTacToeMinimaxPolicy(seed=1)))


def test_a_watched_game_against_the_expert_runs_to_the_end():
    human, out = _human("".join(f"{i}\n" for i in range(9)))  # taken cells are refused
    episode, stop = play_watched(_tictactoe_job(human), ("you", "expert"), out)
    assert stop is None and episode.end is GameEnd.FINISHED
    assert episode.returns[0] <= episode.returns[1]  # nobody beats minimax
    text = out.getvalue()
    assert "Player 1 (expert) played [" in text
    assert "Final position (Player 0):" in text
    assert re.search(r"Game over: (a draw|Player 1 \(expert\) wins)\.\nReturns: Player 0", text)
    assert all(t.valid for t in episode.turns)  # every refusal happened before play


def test_quitting_mid_game_abandons_it_and_keeps_the_moves():
    human, out = _human("4\nquit\n")
    episode, stop = play_watched(_tictactoe_job(human), ("you", "expert"), out)
    assert stop is not None and stop.message == "You quit" and not stop.interrupted
    assert episode.end is GameEnd.ABANDONED and episode.returns == (0.0, 0.0)
    assert [t.action for t in episode.turns][:1] == ["[4]"] and len(episode.turns) == 2
    assert episode.to_json()["end"] == "abandoned"


# ---- launch/play.py: bad input ----


def _play_main():
    spec = importlib.util.spec_from_file_location("play_launch", REPO / "launch" / "play.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["+games=[kuhn]", "--seats=human"], "--seats=human names 1 seat(s): give two"),
        (["+games=[kuhn]", "--seats=human,wizard"], "Unknown seat 'wizard'. Use human"),
        (["+games=[chess]", "--seats=human,expert"], "Unknown games option 'chess'"),
        (
            ["+games=[kuhn]", "--seats=human,model", "--engine=vllm", "rollout.engine=hf"],
            "Give the engine once",
        ),
    ],
)
def test_bad_input_gets_one_line_naming_the_fix(args, message, capsys):
    assert _play_main()(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err


# ---- launch/play.py in a pseudo-terminal ----


class Terminal:
    """`launch/play.py` on a pseudo-terminal: its stdin, stdout and stderr are the pty's slave
    side, this test types on the master side and reads what a person would see."""

    def __init__(self, *args: str) -> None:
        master, slave = pty.openpty()
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "launch/play.py", *args],
            cwd=REPO,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
            start_new_session=True,
        )
        os.close(slave)
        self.fd = master
        self.screen = ""  # everything shown so far (the pty echoes what is typed)
        self.read_to = 0  # `expect` searches after its last match

    def expect(self, pattern: str, timeout_s: float = 180) -> re.Match[str]:
        deadline = time.monotonic() + timeout_s
        while True:
            found = re.compile(pattern).search(self.screen, self.read_to)
            if found:
                self.read_to = found.end()
                return found
            left = deadline - time.monotonic()
            ready = select.select([self.fd], [], [], max(left, 0))[0] if left > 0 else []
            if not ready:
                raise AssertionError(f"no {pattern!r} in {timeout_s}s; screen:\n{self.screen}")
            try:
                data = os.read(self.fd, 4096)
            except OSError:  # EIO: the program exited and closed the terminal
                data = b""
            if not data:
                raise AssertionError(f"play.py ended before {pattern!r}; screen:\n{self.screen}")
            self.screen += data.decode(errors="replace").replace("\r\n", "\n")

    def type(self, text: str) -> None:
        os.write(self.fd, text.encode())

    def close(self) -> int:
        code = self.proc.wait(timeout=60)
        os.close(self.fd)
        return code


def _play_to_the_end(term: Terminal) -> tuple[list[str], str]:
    """Answer every prompt with the first legal move, typed bare (`4`, `check`); returns the
    moves played and the result lines."""
    played = []
    while True:
        found = term.expect(r"Legal moves: (.*?) \(type one|(Game over: .*\nReturns: .*)\n")
        if found.group(2):
            return played, found.group(2)
        first = found.group(1).split(", ")[0]
        term.expect(r"your move> ")
        term.type(first.strip("[]") + "\n")
        term.expect(rf"played \[{re.escape(first.strip('[]'))}\]")
        played.append(first)


def _human_turns(path: Path) -> list[list[str]]:
    games = [json.loads(line) for line in path.read_text().splitlines()]
    return [[t["action"] for t in g["turns"] if t["role"] == 0] for g in games]


@pytest.mark.slow  # a subprocess, a terminal or a training run
def test_human_plays_tictactoe_against_the_model_in_a_terminal(tiny, tmp_path):
    term = Terminal(
        "+games=[tictactoe]",
        "--seats=human,model",
        "model.name=tiny-random",
        "model.max_tokens=16",
        f"--out={tmp_path}",
    )
    term.expect(r"loading model tiny-random")
    term.expect(r"Player 0 is you, Player 1 is model")
    term.expect(r"Current Board:")  # the observation, as the game words it
    term.expect(r"your move> ")
    term.type("banana\n")
    term.expect(r"Not played: 'banana' is not a legal move here\. Legal moves: \[0\], ")
    term.expect(r"your move> ")
    term.type("[4]\n")
    term.expect(r"Player 0 \(you\) played \[4\]\.")
    term.expect(r"Player 1 \(model\) (played \[\d\]|made an invalid move)")  # its parsed move
    term.expect(r"its reply: ")
    played, result = _play_to_the_end(term)
    assert re.match(r"Game over: (a draw|Player [01] \((you|model)\) wins)\.", result)
    saved = term.expect(r"transcript: game saved to (\S+)\n").group(1)
    assert term.close() == 0
    assert Path(saved) == tmp_path / "transcripts" / "tictactoe.jsonl"
    assert _human_turns(Path(saved)) == [["[4]", *played]]


@pytest.mark.slow  # a subprocess, a terminal or a training run
def test_human_plays_kuhn_against_a_training_checkpoint_in_a_terminal(tiny, tmp_path):
    checkpoint = tmp_path / "run" / "checkpoints" / "step_000002"  # as training writes it
    shutil.copytree(tiny.path, checkpoint)
    (tmp_path / "run" / "config.json").write_text('{"model": {"name": "tiny-random"}}')
    term = Terminal(
        "+games=[kuhn]", "--seats=human,model", f"model.name={checkpoint}", f"--out={tmp_path}"
    )
    term.expect(r"Your card: [JQK]\.")
    term.expect(r"Legal moves: \[check\], \[bet\]")
    term.expect(r"your move> ")
    term.type("raise\n")
    term.expect(r"Not played: 'raise' is not a legal move here\. Legal moves: \[check\], \[bet\]")
    term.type("b\n")  # the unique prefix of [bet]
    term.expect(r"Player 0 \(you\) played \[bet\]\.")
    played, result = _play_to_the_end(term)
    assert result.startswith("Game over: ")
    term.expect(r"transcript: game saved to ")
    assert term.close() == 0
    [game] = [json.loads(line) for line in (tmp_path / "transcripts" / "kuhn.jsonl").open()]
    assert [t["action"] for t in game["turns"] if t["role"] == 0] == ["[bet]", *played]
    assert game["turns"][0]["response"] == "\\boxed{[bet]}" and game["opponent"] == "human,model"


def test_a_run_directory_as_model_name_names_its_checkpoints(tiny, tmp_path, capsys):
    shutil.copytree(tiny.path, tmp_path / "run" / "checkpoints" / "step_000002")
    (tmp_path / "run" / "config.json").write_text('{"model": {"name": "tiny-random"}}')
    args = ["+games=[kuhn]", "--seats=human,model", f"model.name={tmp_path / 'run'}"]
    assert _play_main()(args) == 2
    err = capsys.readouterr().err
    assert "is not a model directory" in err
    assert f"model.name={tmp_path / 'run' / 'checkpoints' / 'step_000002'}" in err


@pytest.mark.slow  # a subprocess, a terminal or a training run
def test_human_against_the_expert_saves_each_game_and_the_one_left_unfinished(tmp_path):
    term = Terminal(
        "+games=[tictactoe]", "--seats=human,expert", "--episodes=2", f"--out={tmp_path}"
    )
    played, result = _play_to_the_end(term)
    assert re.match(r"Game over: (a draw|Player 1 \(expert\) wins)\.", result)
    term.expect(r"transcript: game saved to ")
    term.expect(r"tictactoe, game 2 of 2")
    term.expect(r"your move> ")
    term.type("0\n")
    term.expect(r"Player 1 \(expert\) played")
    term.expect(r"your move> ")
    term.type("\x04")  # Ctrl-D
    term.expect(r"The input ended \(Ctrl-D\): the unfinished game \(2 turns\) was saved to ")
    assert term.close() == 0
    path = tmp_path / "transcripts" / "tictactoe.jsonl"
    ends = [json.loads(line)["end"] for line in path.read_text().splitlines()]
    assert ends == ["finished", "abandoned"]
    assert _human_turns(path) == [played, ["[0]"]]


@pytest.mark.slow  # a subprocess, a terminal or a training run
def test_quitting_before_any_move_says_nothing_was_saved(tmp_path):
    term = Terminal("+games=[kuhn]", "--seats=human,expert", f"--out={tmp_path}")
    term.expect(r"your move> ")
    term.type("quit\n")
    term.expect(r"You quit: the unfinished game had no moves and was not saved\.")
    assert term.close() == 0
    assert not (tmp_path / "transcripts" / "kuhn.jsonl").exists()
