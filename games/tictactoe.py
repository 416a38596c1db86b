"""TicTacToe: TextArena's TicTacToe-v0 as shipped, its legal moves and a perfect minimax player.

In TicTacToe-v0 Player 0 plays 'O' and moves first; Player 1 plays 'X'. Cells are numbered 0-8
and a move is written '[4]'.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from functools import cache
from typing import Any, cast

from spiral_games.play.game import TextArenaGame
from spiral_games.types import Observation, PolicyOutput

LINES = ((0, 1, 2), (3, 4, 5), (6, 7, 8), (0, 3, 6), (1, 4, 7), (2, 5, 8), (0, 4, 8), (2, 4, 6))


def _cells(env: Any) -> tuple[str, ...]:
    return tuple(cell for row in env.state.game_state["board"] for cell in row)


def _legal(env: Any, role: int) -> list[str]:
    return [f"[{i}]" for i, cell in enumerate(_cells(env)) if cell == ""]


def _policy_state(env: Any, role: int) -> dict[str, Any]:
    return {"cells": _cells(env), "mark": "O" if role == 0 else "X"}


class TicTacToeGame(TextArenaGame):
    """The `tictactoe` game: TextArena's TicTacToe-v0 with its default wrappers."""

    def __init__(self, env_id: str = "TicTacToe-v0") -> None:
        super().__init__(env_id, name="tictactoe", legal_actions=_legal, policy_state=_policy_state)

    def current_state(self, role: int) -> str:
        """One line of rules and the board now, without TextArena's board history."""
        return position_text(_cells(self.raw), role)


def position_text(cells: Sequence[str], role: int) -> str:
    """One line of rules for `role`, and the board `cells` drawn as TextArena draws it."""
    mark, other = ("O", "X") if role == 0 else ("X", "O")
    rows = [" " + " | ".join(cells[i] or str(i) for i in range(r, r + 3)) + " " for r in (0, 3, 6)]
    return (  # the short prompt lists the legal moves after it
        f"Tic Tac Toe: you are '{mark}', your opponent '{other}'. Three in a row wins. Pick an "
        "empty square by its number.\n\n" + "\n---+---+---\n".join(rows)
    )


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

    def act(self, observations: Sequence[Observation]) -> list[PolicyOutput]:
        outputs = []
        for obs in observations:
            state = cast(dict[str, Any], obs.state)  # _policy_state's view
            move = self.rng.choice(best_moves(state["cells"], state["mark"]))
            outputs.append(PolicyOutput(text=f"\\boxed{{[{move}]}}"))
        return outputs
