"""TicTacToe move quality against minimax: perfect, random, garbage and first-empty-cell players
on the real game, checked against an independent solver; the fixed positions; the config."""

from __future__ import annotations

import dataclasses
import math
from functools import cache

import pytest

from games.tictactoe import (
    TicTacToeGame,
    TicTacToeMinimaxPolicy,
    TicTacToeMoveQuality,
    ask_fixed_positions,
    cluster_rate,
    fixed_positions,
    play_against_minimax,
    position_text,
)
from spiral_games.config.compose import compose_run_config
from spiral_games.config.schema import GameConfig
from spiral_games.errors import ConfigError, GameError
from spiral_games.play.loop import GameJob, play_games
from spiral_games.play.policy import RandomPolicy
from spiral_games.play.registry import build_analysis, build_rules
from spiral_games.types import PolicyOutput

from ..conftest import REPO
from .recording import Recording


@pytest.fixture(scope="module")
def games():
    return compose_run_config(REPO / "conf", ["+games=[tictactoe]"]).games


@pytest.fixture(scope="module")
def rules(games):
    return build_rules("tictactoe", games["tictactoe"])


# An independent solver: boards as 9-character strings of '.', 'O' and 'X'.

WINS = ("012", "345", "678", "036", "147", "258", "048", "246")


def board(cells) -> str:
    return "".join(c or "." for c in cells)


def mover(b: str) -> str:
    return "O" if b.count("O") == b.count("X") else "X"


def won(b: str, mark: str) -> bool:
    return any(all(b[int(i)] == mark for i in line) for line in WINS)


def over(b: str) -> bool:
    return won(b, "O") or won(b, "X") or "." not in b


def play(b: str, i: int) -> str:
    return b[:i] + mover(b) + b[i + 1 :]


@cache
def value(b: str) -> int:
    """+1, 0 or -1 for the side to move, by exhaustive search."""
    if won(b, "O" if mover(b) == "X" else "X"):
        return -1
    if "." not in b:
        return 0
    return max(-value(play(b, i)) for i, c in enumerate(b) if c == ".")


def optimal(b: str) -> set[int]:
    return {i for i, c in enumerate(b) if c == "." and -value(play(b, i)) == value(b)}


def empty(b: str) -> list[int]:
    return [i for i, c in enumerate(b) if c == "."]


# Scripted players and a recorder.


class Saying:
    """Answers every observation with the same text."""

    def __init__(self, text: str) -> None:
        self.text = text

    def act(self, observations):
        return [PolicyOutput(text=self.text) for _ in observations]


class FirstEmpty:
    """Always the lowest-numbered empty cell."""

    def act(self, observations):
        return [PolicyOutput(text=f"\\boxed{{{o.legal_actions[0]}}}") for o in observations]


def test_minimax_expert_keeps_the_value_everywhere_and_never_loses(rules):
    result = TicTacToeMoveQuality().measure(TicTacToeMinimaxPolicy(seed=1), rules, seed=0)
    assert result == {
        "optimal_move_rate": 1.0,
        "optimal_move_rate_se": 0.0,
        "optimal_move_rate_fixed": 1.0,
        "optimal_move_rate_fixed_se": 0.0,
        "loss_rate_minimax": 0.0,
        "loss_rate_minimax_se": 0.0,
        "draw_rate_minimax": 1.0,  # perfect against perfect
        "invalid_share": 0.0,
    }


def test_random_policy_fixed_rate_is_exact_when_stated_and_within_4_se_when_sampled(rules):
    """RandomPolicy states its probabilities: the fixed-set rate is then exactly the expected
    share of optimal moves (SE 0); asked for replies only (Recording hides the statement), one
    sampled reply per position lands within 4 SE of it."""
    positions = 400
    expected = (
        sum(
            len(optimal(board(p.cells))) / len(empty(board(p.cells)))
            for p in fixed_positions(positions)
        )
        / positions
    )
    measure = TicTacToeMoveQuality(games=20, positions=positions).measure
    stated = measure(RandomPolicy(seed=0), rules, seed=0)
    assert stated["optimal_move_rate_fixed"] == pytest.approx(expected, abs=1e-12)
    assert stated["optimal_move_rate_fixed_se"] == 0.0
    result = measure(Recording(RandomPolicy(seed=0)), rules, seed=0)
    assert 0 < result["optimal_move_rate_fixed_se"] < 0.03
    assert (
        abs(result["optimal_move_rate_fixed"] - expected) < 4 * result["optimal_move_rate_fixed_se"]
    )
    assert result["loss_rate_minimax"] > 0 and result["loss_rate_minimax_se"] > 0
    assert 0 < result["optimal_move_rate"] < 1 and result["optimal_move_rate_se"] > 0
    assert result["invalid_share"] == 0


def test_garbage_replies_never_keep_the_value_and_lose_every_game(rules):
    result = TicTacToeMoveQuality(games=6, positions=10).measure(Saying("no idea"), rules, seed=3)
    assert result == {
        "optimal_move_rate": 0.0,
        "optimal_move_rate_se": 0.0,
        "optimal_move_rate_fixed": 0.0,
        "optimal_move_rate_fixed_se": 0.0,
        "loss_rate_minimax": 1.0,
        "loss_rate_minimax_se": 0.0,
        "draw_rate_minimax": 0.0,
        "invalid_share": 1.0,
    }


def first_empty_always_loses(b: str, mark: str) -> bool:
    """Whether the first-empty player (`mark`) loses whichever optimal move minimax picks."""
    if over(b):
        return won(b, "X" if mark == "O" else "O")
    if mover(b) == mark:
        return first_empty_always_loses(play(b, empty(b)[0]), mark)
    return all(first_empty_always_loses(play(b, i), mark) for i in optimal(b))


def test_first_empty_cell_scores_match_an_independent_count(rules):
    games, positions = 8, 64
    asked = Recording(FirstEmpty())
    result = TicTacToeMoveQuality(games=games, positions=positions).measure(asked, rules, seed=5)
    fixed = [o for batch in asked.batches if len(batch) == positions for o in batch]
    reached = [o for batch in asked.batches if len(batch) < positions for o in batch]
    assert len(fixed) == positions and len(reached) + positions == sum(map(len, asked.batches))

    def hits(observations):
        return [
            empty(board(o.state["cells"]))[0] in optimal(board(o.state["cells"]))
            for o in observations
        ]

    assert result["optimal_move_rate_fixed"] == sum(hits(fixed)) / positions
    assert result["optimal_move_rate"] == sum(hits(reached)) / len(reached)
    assert 0 < result["optimal_move_rate"] < 1  # it keeps the value in some positions only
    # minimax wins against it from either seat, whatever it breaks ties with
    assert first_empty_always_loses("." * 9, "O") and first_empty_always_loses("." * 9, "X")
    assert result["loss_rate_minimax"] == 1.0 and result["invalid_share"] == 0


def test_games_alternate_seats_against_minimax(rules):
    episodes = play_against_minimax(FirstEmpty(), rules, games=6, seed=0)
    assert [e.trained_roles for e in episodes] == [(0,), (1,)] * 3
    assert {e.opponent for e in episodes} == {"minimax"}


def test_under_retry_an_invalid_reply_counts_as_a_move_that_loses_value(rules):
    """A player that first answers nonsense, and the first empty cell on its retry, plays the
    first-empty games with twice the replies, half of them invalid (never optimal); on the fixed
    set, asked once, it is always invalid."""

    class Stammering(FirstEmpty):
        def act(self, observations):
            firsts = super().act(observations)
            return [
                first if "previous move was invalid" in o.text else PolicyOutput(text="hmm")
                for o, first in zip(observations, firsts, strict=True)
            ]

    retry = dataclasses.replace(
        rules, config=dataclasses.replace(rules.config, invalid_move="retry")
    )
    measure = TicTacToeMoveQuality(games=4, positions=6)
    plain = measure.measure(FirstEmpty(), retry, seed=2)
    asked = Recording(Stammering())
    stammering = measure.measure(asked, retry, seed=2)
    replies = sum(map(len, asked.batches))
    assert stammering["optimal_move_rate"] == pytest.approx(plain["optimal_move_rate"] / 2)
    assert stammering["optimal_move_rate_fixed"] == 0.0
    assert stammering["loss_rate_minimax"] == plain["loss_rate_minimax"]
    assert stammering["invalid_share"] == pytest.approx((6 + (replies - 6) / 2) / replies)


def test_fixed_set_is_distinct_informative_balanced_and_the_same_for_every_seed(rules):
    positions = fixed_positions(64)
    boards = [board(p.cells) for p in positions]
    assert len(set(boards)) == 64
    assert [mover(b) for b in boards] == ["O"] * 32 + ["X"] * 32
    for p, b in zip(positions, boards, strict=True):
        assert not over(b) and optimal(b) != set(empty(b)), b  # in play, some move loses value
        replayed = "." * 9
        for move in p.moves:
            assert replayed[move] == "." and not over(replayed)
            replayed = play(replayed, move)
        assert replayed == b
    assert set(positions) < set(fixed_positions(128))  # more positions only add to the set

    def asked_at(seed):
        asked = Recording(RandomPolicy(seed=seed))
        TicTacToeMoveQuality(games=2, positions=64).measure(asked, rules, seed=seed)
        return [o for batch in asked.batches if len(batch) == 64 for o in batch]

    assert asked_at(0) == asked_at(1)


class Replaying:
    """Plays `moves` from both seats, then keeps the observation it is shown and resigns."""

    def __init__(self, moves) -> None:
        self.moves = moves
        self.shown = []

    def act(self, observations):
        outputs = []
        for o in observations:
            k = sum(bool(c) for c in o.state["cells"])
            if k < len(self.moves):
                outputs.append(PolicyOutput(text=f"\\boxed{{[{self.moves[k]}]}}"))
            else:
                self.shown.append(o)
                outputs.append(PolicyOutput(text="I resign"))
        return outputs


def test_fixed_observations_are_the_ones_play_shows_asked_in_one_batch(rules):
    asked = Recording(RandomPolicy(seed=0))
    ask_fixed_positions(asked, rules, 64)
    assert len(asked.batches) == 1 and len(asked.batches[0]) == 64
    players = [Replaying(p.moves) for p in fixed_positions(64)]
    play_games([GameJob(rules, seed, (p, p)) for seed, p in enumerate(players)])
    for position, player, built in zip(fixed_positions(64), players, asked.batches[0], strict=True):
        assert player.shown == [built]  # text, legal actions, state and position
        assert built.state["cells"] == position.cells and built.state["mark"] == position.mark
        assert built.position == position_text(position.cells, built.role)


def test_fixed_replies_are_parsed_with_the_games_action_format(rules):
    """'[4]' without a box is played only under action_format=lenient, where cell 4 is empty."""
    say = Saying("I take the centre, [4].")
    boxed = dataclasses.replace(rules, action_format="boxed")
    assert all(r.invalid for r in ask_fixed_positions(say, boxed, 20))
    lenient = ask_fixed_positions(say, dataclasses.replace(rules, action_format="lenient"), 20)
    for p, reply in zip(fixed_positions(20), lenient, strict=True):
        b = board(p.cells)
        assert reply.invalid == (b[4] != ".")
        assert reply.optimal == (b[4] == "." and 4 in optimal(b))


def test_cluster_rate_by_hand():
    """Games [1, 1], [0, 1, 0], [1]: r = 4/6; residuals y - r n = 2/3, -1, 1/3, whose squares
    sum to 14/9; SE^2 = 3/2 * 14/9 / 6^2 = 7/3 / 36."""
    rate, se = cluster_rate([[True, True], [False, True, False], [True]])
    assert rate == pytest.approx(2 / 3)
    assert se == pytest.approx(math.sqrt(7 / 3) / 6)
    assert cluster_rate([[True], [True, True]]) == (1.0, 0.0)
    with pytest.raises(ValueError, match="2 clusters"):
        cluster_rate([[True, False]])


def test_config_entry_builds_through_build_analysis(games):
    analysis = build_analysis("tictactoe", games["tictactoe"], "move_quality")
    assert isinstance(analysis, TicTacToeMoveQuality)
    assert (analysis.games, analysis.positions) == (20, 64)  # conf/games/tictactoe.yaml
    cfg = compose_run_config(
        REPO / "conf", ["+games=[tictactoe]", "games.tictactoe.analyses.move_quality.games=4"]
    )
    assert build_analysis("tictactoe", cfg.games["tictactoe"], "move_quality").games == 4


def test_another_game_or_too_many_positions_is_a_clear_error(rules):
    kuhn = GameConfig(env={"_target_": "games.kuhn.KuhnPokerGame"}, action_format="boxed")
    with pytest.raises(GameError, match="not TicTacToe"):
        TicTacToeMoveQuality().measure(RandomPolicy(0), build_rules("kuhn", kuhn), seed=0)
    with pytest.raises(ValueError, match="informative positions"):
        TicTacToeMoveQuality(positions=4000)


def test_the_lines_board_writes_every_line_and_is_what_the_fixed_positions_ask():
    """games.tictactoe.env.board=lines: the grid, then each row, column and diagonal as its
    three cells; play and the fixed positions both show it, and a typo names the choices."""
    text = position_text(("O", "", "X", "", "X", "", "", "", ""), 0, "lines")
    grid, _, listed = text.partition("\n\nRows, columns, diagonals:\n")
    assert grid == position_text(("O", "", "X", "", "X", "", "", "", ""), 0)
    assert listed.splitlines() == ["O 1 X", "3 X 5", "6 7 8", "O 3 6", "1 X 7", "X 5 8", "O X 8",
                                   "X X 6"]  # fmt: skip
    cfg = compose_run_config(
        REPO / "conf", ["+games=[tictactoe]", "+games.tictactoe.env.board=lines"]
    )
    lines = build_rules("tictactoe", cfg.games["tictactoe"])
    asked = Recording(RandomPolicy(seed=0))
    ask_fixed_positions(asked, lines, 8)
    for position, built in zip(fixed_positions(8), asked.batches[0], strict=True):
        assert built.position == position_text(position.cells, built.role, "lines")
    with pytest.raises(ConfigError, match=r"board='rows'.*grid, lines"):
        TicTacToeGame(board="rows")
