"""TicTacToe: TextArena's TicTacToe-v0 as shipped, its legal moves, its board drawn for the
replay page, a perfect minimax player and the quality of a policy's moves measured against
minimax.

In TicTacToe-v0 Player 0 plays 'O' and moves first; Player 1 plays 'X'. Cells are numbered 0-8
and a move is written '[4]'.
"""

from __future__ import annotations

import html
import math
import random
import re
from collections.abc import Sequence
from functools import cache
from typing import Any, NamedTuple, cast

from spiral_games.errors import ConfigError, GameError
from spiral_games.play.game import SavedTurn, TextArenaGame
from spiral_games.play.loop import GameRules, GameSession, play_games, replayed
from spiral_games.play.policy import Policy, ScoringPolicy, scores_actions
from spiral_games.play.rollout import evaluation_jobs
from spiral_games.types import Episode, GameEnd, Observation, PolicyOutput

BOARDS = ("grid", "lines")  # how the short prompt draws the position (TicTacToeGame's `board`)
LINES = ((0, 1, 2), (3, 4, 5), (6, 7, 8), (0, 3, 6), (1, 4, 7), (2, 5, 8), (0, 4, 8), (2, 4, 6))


def _cells(env: Any) -> tuple[str, ...]:
    return tuple(cell for row in env.state.game_state["board"] for cell in row)


def _legal(env: Any, role: int) -> list[str]:
    return [f"[{i}]" for i, cell in enumerate(_cells(env)) if cell == ""]


def _cell(action: str) -> int:
    """The cell of a legal action, as `_legal` writes it ('[4]' -> 4)."""
    return int(action.strip("[]"))


def mark_of(role: int) -> str:
    """The mark `role` plays: 'O' for Player 0, who moves first, 'X' for Player 1."""
    return "O" if role == 0 else "X"


def _policy_state(env: Any, role: int) -> dict[str, Any]:
    return {"cells": _cells(env), "mark": mark_of(role)}


# The replay page's drawing, rebuilt from a saved game's turns: its valid moves ('[4]') and the
# mark each player was told it plays.
_MOVE = re.compile(r"\[\s*(\d)\s*\]")
_MARK = re.compile(r"you will be '(\w)'")
BOARD_CSS = """
table.ttt{border-collapse:collapse;margin:.3em 0}
table.ttt td{width:1.6em;height:1.6em;border:1px solid #999;text-align:center;font-weight:bold}
table.ttt td.empty{color:#ccc;font-weight:normal;font-size:.7em}
table.ttt td.last{background:#ffe9a8}
"""


class TicTacToeGame(TextArenaGame):
    """The `tictactoe` game: TextArena's TicTacToe-v0 with its default wrappers."""

    board_css = BOARD_CSS

    def __init__(self, env_id: str = "TicTacToe-v0", board: str = "grid") -> None:
        """`board`: how the short prompt draws the position (`position_text`): `grid`, as
        TextArena draws it, or `lines`, the grid and then each of the eight lines' cells."""
        if board not in BOARDS:
            raise ConfigError(
                f"games.tictactoe.env.board={board!r} is not a board drawing: choose one of "
                f"{', '.join(BOARDS)}."
            )
        super().__init__(env_id, name="tictactoe", legal_actions=_legal, policy_state=_policy_state)
        self.board = board

    def current_state(self, role: int) -> str:
        """One line of rules and the board now, without TextArena's board history."""
        return position_text(_cells(self.raw), role, self.board)

    def draw_boards(self, turns: Sequence[SavedTurn]) -> list[str]:
        """A 3x3 grid after each turn, the cell just filled highlighted."""
        return [_grid_html(cells, filled) for cells, filled in tictactoe_states(turns)]


def tictactoe_states(turns: Sequence[SavedTurn]) -> list[tuple[tuple[str, ...], int | None]]:
    """The 9 cells after each turn (replaying the valid moves), and the cell that turn filled."""
    cells = [""] * 9
    marks = {0: "O", 1: "X"}
    out: list[tuple[tuple[str, ...], int | None]] = []
    for turn in turns:
        role = int(turn["role"])
        stated = _MARK.findall(str(turn.get("prompt", "")))
        if stated:
            marks[role] = stated[-1]
        move = _MOVE.fullmatch(str(turn.get("action") or "").strip())
        filled = None
        if turn.get("valid") and move and not cells[int(move[1])]:
            filled = int(move[1])
            cells[filled] = marks.get(role, str(role))
        out.append((tuple(cells), filled))
    return out


def _grid_html(cells: tuple[str, ...], filled: int | None) -> str:
    rows = []
    for r in range(3):
        tds = []
        for i in range(3 * r, 3 * r + 3):
            cls = ("mark" if cells[i] else "empty") + (" last" if i == filled else "")
            tds.append(f'<td class="{cls}">{html.escape(cells[i]) or i}</td>')
        rows.append("<tr>" + "".join(tds) + "</tr>")
    return f'<table class="board ttt">{"".join(rows)}</table>'


def position_text(cells: Sequence[str], role: int, board: str = "grid") -> str:
    """One line of rules for `role`, and the board `cells` drawn as TextArena draws it; with
    `board="lines"`, then each row, column and diagonal as its three cells (an empty cell by its
    number), so that two marks and an empty cell of one line stand side by side in the text."""
    mark, other = ("O", "X") if role == 0 else ("X", "O")
    rows = [" " + " | ".join(cells[i] or str(i) for i in range(r, r + 3)) + " " for r in (0, 3, 6)]
    text = (  # the short prompt lists the legal moves after it
        f"Tic Tac Toe: you are '{mark}', your opponent '{other}'. Three in a row wins. Pick an "
        "empty square by its number.\n\n" + "\n---+---+---\n".join(rows)
    )
    if board == "lines":
        lines = [" ".join(cells[i] or str(i) for i in line) for line in LINES]
        text += "\n\nRows, columns, diagonals:\n" + "\n".join(lines)
    return text


def _place(cells: tuple[str, ...], index: int, mark: str) -> tuple[str, ...]:
    return (*cells[:index], mark, *cells[index + 1 :])


def winner(cells: Sequence[str]) -> str:
    """'O' or 'X' if that mark has three in a row, else ''."""
    for a, b, c in LINES:
        if cells[a] and cells[a] == cells[b] == cells[c]:
            return cells[a]
    return ""


@cache
def minimax_value(cells: tuple[str, ...], to_move: str) -> int:
    """Game value for `to_move` under perfect play: +1 win, 0 draw, -1 loss."""
    other = "X" if to_move == "O" else "O"
    if winner(cells):
        return -1  # the previous mover (other) just completed a line
    empty = [i for i, c in enumerate(cells) if not c]
    if not empty:
        return 0
    return max(-minimax_value(_place(cells, i, to_move), other) for i in empty)


def best_moves(cells: tuple[str, ...], mark: str) -> list[int]:
    """All cells that keep the optimal value for `mark`."""
    other = "X" if mark == "O" else "O"
    scored = {
        i: -minimax_value(_place(cells, i, mark), other) for i, c in enumerate(cells) if not c
    }
    best = max(scored.values())
    return [i for i, v in scored.items() if v == best]


class TicTacToeMinimaxPolicy:
    """Perfect play: never loses; breaks ties among optimal moves at random (seeded)."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = random.Random(seed)

    def reseed(self, seed: int) -> None:
        """Restart its choices from `seed` (a collect or evaluation replays identically)."""
        self.rng.seed(seed)

    def act(self, observations: Sequence[Observation]) -> list[PolicyOutput]:
        outputs = []
        for obs in observations:
            state = cast(dict[str, Any], obs.state)  # _policy_state's view
            move = self.rng.choice(best_moves(state["cells"], state["mark"]))
            outputs.append(PolicyOutput(text=f"\\boxed{{[{move}]}}"))
        return outputs


# Move quality (docs/evaluation.md): how often the policy keeps the minimax value of its position,
# in games against minimax and on a fixed set of positions, every reply parsed exactly as play
# parses it.

FIXED_SET_SEED = 17  # the fixed positions come from this constant, never from a run's seed
EMPTY: tuple[str, ...] = ("",) * 9


def to_move(cells: Sequence[str]) -> str:
    """The mark to move on a legal board: 'O' moves first, so it moves when the counts are equal."""
    return "O" if cells.count("O") == cells.count("X") else "X"


def is_informative(cells: tuple[str, ...]) -> bool:
    """A position still in play where at least one legal move loses value: only there does a
    reply say anything about the policy's play beyond its validity."""
    if winner(cells) or all(cells):
        return False
    return len(best_moves(cells, to_move(cells))) < cells.count("")


@cache
def informative_positions() -> tuple[tuple[str, ...], ...]:
    """Every informative position reachable in play (3,191 of them), sorted."""
    seen = {EMPTY}
    frontier = [EMPTY]
    while frontier:
        cells = frontier.pop()
        if winner(cells) or all(cells):
            continue
        for i in (i for i, c in enumerate(cells) if not c):
            child = _place(cells, i, to_move(cells))
            if child not in seen:
                seen.add(child)
                frontier.append(child)
    return tuple(sorted(c for c in seen if is_informative(c)))


class FixedPosition(NamedTuple):
    """One position of the fixed set and the moves (cells, O first) that reach it in play."""

    cells: tuple[str, ...]
    moves: tuple[int, ...]

    @property
    def mark(self) -> str:
        return to_move(self.cells)


def _reaching_moves(cells: tuple[str, ...]) -> tuple[int, ...]:
    """Moves (O first) that reach `cells`, each mark's cells in an order drawn from a generator
    seeded by FIXED_SET_SEED and the board. Any order is legal: a line completed on the way
    would still be on the board."""
    rng = random.Random(f"{FIXED_SET_SEED}/{''.join(c or '.' for c in cells)}")
    o_cells = [i for i, c in enumerate(cells) if c == "O"]
    x_cells = [i for i, c in enumerate(cells) if c == "X"]
    rng.shuffle(o_cells)
    rng.shuffle(x_cells)
    moves = [0] * (len(o_cells) + len(x_cells))
    moves[0::2], moves[1::2] = o_cells, x_cells
    return tuple(moves)


@cache
def fixed_positions(count: int) -> tuple[FixedPosition, ...]:
    """`count` distinct informative positions: the first (count + 1) // 2 with 'O' to move and
    the first count // 2 with 'X', each mark's positions shuffled by FIXED_SET_SEED. The same in
    every run, whatever its seed; a larger count only adds positions."""
    positions = []
    for mark, k in (("O", (count + 1) // 2), ("X", count // 2)):
        pool = [c for c in informative_positions() if to_move(c) == mark]
        if k > len(pool):
            raise ValueError(f"only {len(pool)} informative positions have {mark!r} to move")
        random.Random(FIXED_SET_SEED).shuffle(pool)
        positions += [FixedPosition(cells, _reaching_moves(cells)) for cells in pool[:k]]
    return tuple(positions)


class Reply(NamedTuple):
    """One reply of the measured policy: whether it kept the minimax value, whether play
    rejected it (an invalid reply never keeps the value)."""

    optimal: bool
    invalid: bool


def _score(cells: tuple[str, ...], action: str | None) -> Reply:
    """How a reply at `cells` scores: `action` is the legal action play took from it, None if
    play rejected it."""
    if action is None:
        return Reply(optimal=False, invalid=True)
    return Reply(optimal=_cell(action) in best_moves(cells, to_move(cells)), invalid=False)


def session_at(rules: GameRules, moves: Sequence[int]) -> GameSession:
    """A game of `rules` played through GameSession along `moves`, waiting for the next move."""
    return replayed(rules, FIXED_SET_SEED, [f"[{move}]" for move in moves])


def ask_fixed_positions(policy: Policy, rules: GameRules, count: int) -> list[Reply]:
    """`policy`'s reply at each of the `count` fixed positions, all asked in one `act` call.

    Each observation is the one play shows there: a real game of `rules` is played through
    `GameSession` along the position's moves and asked for its `pending()` observation. The
    reply is submitted to that same session, so it is parsed as in play (`rules.action_format`,
    the env's legality check); a rejected reply, or none (context overflow), is invalid.
    """
    positions = fixed_positions(count)
    sessions = [session_at(rules, p.moves) for p in positions]
    asked = [cast(Observation, s.pending()) for s in sessions]
    replies = policy.act(asked)
    if len(replies) != len(asked):
        raise GameError(f"{type(policy).__name__} answered {len(replies)} of {len(asked)}")
    scored = []
    for position, session, observation, reply in zip(
        positions, sessions, asked, replies, strict=True
    ):
        session.submit(observation, reply)
        played = session.turns[len(position.moves) :]  # empty after a context overflow
        action = played[0].action if played and played[0].valid else None
        scored.append(_score(position.cells, action))
    return scored


def stated_fixed_positions(
    policy: ScoringPolicy, rules: GameRules, count: int
) -> list[tuple[float, float]]:
    """At each of the `count` fixed positions, asked as play asks them (`ask_fixed_positions`),
    the probability `policy` states (`action_probabilities`) of a move that keeps the minimax
    value, and of an invalid reply (what its legal moves' probabilities leave of 1)."""
    positions = fixed_positions(count)
    asked = [cast(Observation, session_at(rules, p.moves).pending()) for p in positions]
    stated = policy.action_probabilities(asked)
    out = []
    for position, probs in zip(positions, stated, strict=True):
        best = best_moves(position.cells, to_move(position.cells))
        optimal = sum(float(p) for a, p in probs.items() if _cell(a) in best)
        out.append((optimal, max(0.0, 1.0 - sum(float(p) for p in probs.values()))))
    return out


def play_against_minimax(policy: Policy, rules: GameRules, games: int, seed: int) -> list[Episode]:
    """`games` games of `policy` against `TicTacToeMinimaxPolicy(seed)`, all at once through
    `play_games` as evaluation plays them (batched, or streamed to a streaming policy);
    `policy` moves first in the even-numbered games."""
    expert = TicTacToeMinimaxPolicy(seed=seed)
    opponents = {(rules.name, "minimax"): expert}
    return play_games(evaluation_jobs({rules.name: rules}, opponents, games, seed, policy))


def game_replies(episode: Episode) -> list[Reply]:
    """The replies of the episode's trained seat, each scored at the position it was asked in
    (replayed from the valid moves before it). A context overflow, which ends the game with
    no turn recorded, counts as one invalid reply at the final position."""
    role = episode.trained_roles[0]
    cells = EMPTY
    replies = []
    for turn in episode.turns:
        if turn.role == role:
            replies.append(_score(cells, turn.action if turn.valid else None))
        if turn.valid:
            cells = _place(cells, _cell(cast(str, turn.action)), mark_of(turn.role))
    if episode.end is GameEnd.CONTEXT_OVERFLOW and to_move(cells) == mark_of(role):
        replies.append(Reply(optimal=False, invalid=True))
    return replies


def cluster_rate(hits: Sequence[Sequence[bool]]) -> tuple[float, float]:
    """(share of hits over all clusters, its standard error with clusters as the unit).

    The ratio estimator's variance (Cochran 1977, Sampling Techniques, ch. 6): with y_g hits of
    n_g in cluster g, r = sum y / sum n and SE^2 = G / (G - 1) * sum (y_g - r n_g)^2 / (sum n)^2.
    Clusters are games: a game's positions follow from its earlier moves (one mistake leaves
    only lost positions), so its moves are not independent draws and a binomial SE over moves
    would be too small.
    """
    total = sum(len(h) for h in hits)
    if len(hits) < 2 or total == 0:
        raise ValueError(f"need >= 2 clusters and >= 1 trial, got {len(hits)}, {total}")
    rate = sum(sum(h) for h in hits) / total
    spread = sum((sum(h) - rate * len(h)) ** 2 for h in hits)
    return rate, math.sqrt(len(hits) / (len(hits) - 1) * spread) / total


def _binomial_se(rate: float, n: int) -> float:
    return math.sqrt(rate * (1 - rate) / n)


class TicTacToeMoveQuality:
    """Measures how well a policy plays TicTacToe, for `eval/tictactoe/*`, from `games` games
    against minimax and one reply at each of `positions` fixed positions.

    A move is optimal when it keeps the minimax value of its position (`best_moves`); an invalid
    reply never is. The reached positions include uninformative ones (the opening, forced last
    moves, lost positions where every move loses alike), so a uniform random player scores about
    0.74 there but 0.41 on the default fixed set, where some move always loses value.

    Cost per evaluation, in policy replies: `positions` in one `act` call, plus about 4.5 per
    game (5 as first player and 4 as second until a draw, fewer after a loss or an invalid
    reply), the games played all at once through `play_games`. The defaults, 20 games and 64
    positions, ask about 150 replies, a sixth of the ~900 of a default evaluation (200 games
    against random and 32 against expert). Their standard errors, for policies between minimax
    and uniform random: 0.03-0.04 for the rate over reached positions, at most 0.0625 (0.04-0.06)
    for the fixed-set rate, and at most 0.11 for the loss rate.
    """

    def __init__(self, games: int = 20, positions: int = 64) -> None:
        if games < 2 or positions < 2:
            raise ValueError(f"need games >= 2 and positions >= 2, got {games}, {positions}")
        fixed_positions(positions)  # fail here, not at the first evaluation, when too many
        self.games = games
        self.positions = positions

    def measure(self, policy: Policy, rules: GameRules, seed: int) -> dict[str, float]:
        """optimal_move_rate over the positions reached against minimax (SE: games as clusters,
        `cluster_rate`), optimal_move_rate_fixed over the fixed positions (exact, SE 0, for a
        policy that states its action probabilities there (`scores_actions`): the mean
        probability of an optimal move; else from one sampled reply each, SE binomial, an
        upper bound since the positions are fixed: sum p_i (1 - p_i) <= n p (1 - p)),
        loss_rate_minimax (an invalid-move ending is a loss; binomial SE over games),
        draw_rate_minimax, and the invalid share of all replies."""
        if not isinstance(rules.make_env(), TicTacToeGame):
            raise GameError(f"game {rules.name!r} is not TicTacToe (games.tictactoe)")
        if scores_actions(policy, rules.name):  # exact at the fixed positions: SE 0
            stated = stated_fixed_positions(policy, rules, self.positions)
            fixed_rate, fixed_se = sum(o for o, _ in stated) / len(stated), 0.0
            fixed_invalid = [i for _, i in stated]
        else:
            fixed = ask_fixed_positions(policy, rules, self.positions)
            fixed_rate = sum(r.optimal for r in fixed) / len(fixed)
            fixed_se = _binomial_se(fixed_rate, len(fixed))
            fixed_invalid = [float(r.invalid) for r in fixed]
        episodes = play_against_minimax(policy, rules, self.games, seed)
        played = [game_replies(e) for e in episodes]
        rate, rate_se = cluster_rate([[r.optimal for r in replies] for replies in played])
        outcomes = [
            (e.returns[e.trained_roles[0]], e.returns[1 - e.trained_roles[0]]) for e in episodes
        ]
        loss = sum(mine < theirs for mine, theirs in outcomes) / len(episodes)
        invalid = fixed_invalid + [float(r.invalid) for replies in played for r in replies]
        return {
            "optimal_move_rate": rate,
            "optimal_move_rate_se": rate_se,
            "optimal_move_rate_fixed": fixed_rate,
            "optimal_move_rate_fixed_se": fixed_se,
            "loss_rate_minimax": loss,
            "loss_rate_minimax_se": _binomial_se(loss, len(episodes)),
            "draw_rate_minimax": sum(mine == theirs for mine, theirs in outcomes) / len(episodes),
            "invalid_share": sum(invalid) / len(invalid),
        }
