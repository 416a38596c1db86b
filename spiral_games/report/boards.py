"""Game states drawn turn by turn for the replay viewer, derived from transcript turns alone.

The viewer only sees transcripts (JSON rows), so each drawing is rebuilt from the turns' valid
actions and the observation text each player was shown. Drawings are keyed by game name in
`BOARDS`; any other game gets `text_boards`, the tail of each observation as plain text.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

Turn = dict[str, Any]  # one entry of a transcript row's "turns" (see Episode.to_json)
BoardFn = Callable[[Sequence[Turn]], list[str]]  # turns -> one escaped HTML drawing per turn

TEXT_TAIL_LINES = 8
TEXT_TAIL_CHARS = 600


def text_boards(turns: Sequence[Turn]) -> list[str]:
    """The last lines of each observation: for text games that is usually the current state."""
    out: list[str] = []
    for turn in turns:
        lines = [line for line in str(turn.get("prompt", "")).splitlines() if line.strip()]
        tail = "\n".join(lines[-TEXT_TAIL_LINES:])[-TEXT_TAIL_CHARS:]
        out.append(f'<pre class="board text">{html.escape(tail)}</pre>' if tail else "")
    return out


# TicTacToe (TextArena TicTacToe-v0): cells 0-8, moves '[4]'; Player 0 is 'O', Player 1 'X'.
_TTT_MOVE = re.compile(r"\[\s*(\d)\s*\]")
_TTT_MARK = re.compile(r"you will be '(\w)'")


def tictactoe_states(turns: Sequence[Turn]) -> list[tuple[tuple[str, ...], int | None]]:
    """The 9 cells after each turn (replaying the valid moves), and the cell that turn filled."""
    cells = [""] * 9
    marks = {0: "O", 1: "X"}
    out: list[tuple[tuple[str, ...], int | None]] = []
    for turn in turns:
        role = int(turn["role"])
        stated = _TTT_MARK.findall(str(turn.get("prompt", "")))
        if stated:
            marks[role] = stated[-1]
        move = _TTT_MOVE.fullmatch(str(turn.get("action") or "").strip())
        filled = None
        if turn.get("valid") and move and not cells[int(move[1])]:
            filled = int(move[1])
            cells[filled] = marks.get(role, str(role))
        out.append((tuple(cells), filled))
    return out


def _ttt_html(cells: tuple[str, ...], filled: int | None) -> str:
    rows = []
    for r in range(3):
        tds = []
        for i in range(3 * r, 3 * r + 3):
            cls = ("mark" if cells[i] else "empty") + (" last" if i == filled else "")
            tds.append(f'<td class="{cls}">{html.escape(cells[i]) or i}</td>')
        rows.append("<tr>" + "".join(tds) + "</tr>")
    return f'<table class="board ttt">{"".join(rows)}</table>'


def tictactoe_boards(turns: Sequence[Turn]) -> list[str]:
    """A 3x3 grid after each turn, the cell just filled highlighted."""
    return [_ttt_html(cells, filled) for cells, filled in tictactoe_states(turns)]


# Kuhn Poker (games/kuhn.py): each round both ante, one card each, '[bet]'/'[call]' add a chip.
_KUHN_DEAL = re.compile(
    r"Round (\d+)/(\d+)\. Your card: (\w+)\. Chips so far: you ([+-]?\d+), opponent ([+-]?\d+)"
)
_KUHN_OVER = re.compile(
    r"Round (\d+) over: cards were Player 0 (\w+), Player 1 (\w+)\. "
    r"Chips: Player 0 ([+-]?\d+), Player 1 ([+-]?\d+)"
)
_KUHN_ANTE = re.compile(r"ante (\d+) chip")
_KUHN_MOVE = re.compile(r"\[\s*(\w+)\s*\]")


@dataclass(frozen=True)
class KuhnView:
    """What one Kuhn turn looked like: the actor's card as shown to it, and the chips."""

    round: int  # 0 when the observation named no round
    rounds: int
    card: str  # the acting role's card ("" if never shown)
    chips: tuple[int, int]  # game totals (Player 0, Player 1) before this round
    pot: tuple[int, int]  # chips each role has put in this round, this turn's move included
    betting: tuple[str, ...]  # this round's moves so far, this turn's included
    showdown: str  # the previous round's revealed cards, on a round's first turn


def kuhn_views(turns: Sequence[Turn]) -> list[KuhnView]:
    """Replay a Kuhn game from its observations (round, card, chips) and valid moves (pot)."""
    cards: dict[int, str] = {}
    rnd, rounds, chips = 0, 0, (0, 0)
    ante = 1
    pot = [ante, ante]  # chips each role has put in this round
    betting: list[str] = []
    out: list[KuhnView] = []
    for turn in turns:
        role, prompt = int(turn["role"]), str(turn.get("prompt", ""))
        ante_stated = _KUHN_ANTE.findall(prompt)
        ante = int(ante_stated[-1]) if ante_stated else ante
        showdown = ""
        deals = _KUHN_DEAL.findall(prompt)
        if deals:
            number, total, card, mine, theirs = deals[-1]
            cards[role], rounds = card, int(total)
            chips = (int(mine), int(theirs)) if role == 0 else (int(theirs), int(mine))
            if int(number) > rnd:
                rnd, pot, betting = int(number), [ante, ante], []
                overs = _KUHN_OVER.findall(prompt)
                if overs and int(overs[-1][0]) == rnd - 1:
                    showdown = (
                        f"round {overs[-1][0]}: Player 0 {overs[-1][1]}, Player 1 {overs[-1][2]}"
                    )
        move = _KUHN_MOVE.fullmatch(str(turn.get("action") or "").strip())
        if turn.get("valid") and move:
            betting.append(move[1].lower())
            if move[1].lower() in ("bet", "call"):  # a bet is one chip, whatever the ante
                pot[role] += 1
        out.append(
            KuhnView(
                rnd, rounds, cards.get(role, ""), chips, (pot[0], pot[1]), tuple(betting), showdown
            )
        )
    return out


def _kuhn_html(view: KuhnView, role: int) -> str:
    card = html.escape(view.card) or "?"
    rounds = f"/{view.rounds}" if view.rounds else ""
    shown = (
        f'<div class="showdown">showdown {html.escape(view.showdown)}</div>'
        if view.showdown
        else ""
    )
    return (
        f'<div class="board kuhn">{shown}<span class="card" title="Player {role}\'s card">{card}'
        f"</span> round {view.round}{rounds} · pot {sum(view.pot)} (Player 0 put in "
        f"{view.pot[0]}, Player 1 {view.pot[1]}) · betting: {html.escape(', '.join(view.betting))}"
        f" · chips before this round: Player 0 {view.chips[0]:+d}, Player 1 {view.chips[1]:+d}"
        "</div>"
    )


def kuhn_boards(turns: Sequence[Turn]) -> list[str]:
    """The acting player's card and the pot after each turn."""
    return [
        _kuhn_html(view, int(turn["role"]))
        for view, turn in zip(kuhn_views(turns), turns, strict=True)
    ]


BOARDS: dict[str, BoardFn] = {"tictactoe": tictactoe_boards, "kuhn": kuhn_boards}


def draw_boards(game: str, turns: Sequence[Turn]) -> list[str]:
    """One HTML drawing per turn: the game's own drawing, or the observation text."""
    return BOARDS.get(game, text_boards)(turns)
