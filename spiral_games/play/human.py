"""Interactive play: a person at a terminal as a policy, and the one-game loop that tells them
what the other seat did and how the game ended. Pure: the standard library and our own types."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import TextIO

from spiral_games.play.loop import GameJob, GameSession
from spiral_games.play.parsing import match_action, normalize
from spiral_games.types import Episode, GameEnd, Observation, ParsedAction, PolicyOutput, Turn

QUIT_WORDS = ("quit", "q", "exit")
HELP_WORDS = ("help", "?")
REPLY_SHOWN_CHARS = 200  # a model's reply is shown up to this many characters

ParseFn = Callable[[str], ParsedAction]  # the game's own parser of a reply, for the acting role


class HumanQuit(Exception):
    """The person ended the session: typed `quit`, closed the input (Ctrl-D) or pressed Ctrl-C."""

    def __init__(self, message: str, interrupted: bool = False) -> None:
        super().__init__(message)
        self.message = message  # what happened, in words
        self.interrupted = interrupted  # Ctrl-C, not a request to stop


def _key(action: str) -> str:
    return normalize(action).strip("[]").strip()


def choose_move(
    entry: str, legal: Sequence[str] | None, parse: ParseFn | None = None
) -> tuple[str | None, str]:
    """(the move a typed `entry` names, ""), or (None, what is wrong with the entry).

    A legal move is accepted in the game's syntax (`[4]`, `[bet]`, any case and spacing), bare
    (`4`, `bet`) or by a prefix that fits exactly one legal move (`b` for `[bet]`). Anything
    else is offered to the game's own parser (`parse`: free-form moves such as negotiation
    offers, whose legal list is only a sample); with neither a list nor a parser, the entry is
    sent as typed.
    """
    if not entry:
        return None, "Type a move" + (f" ({', '.join(legal)})" if legal else "") + ", or quit."
    if legal:
        exact = match_action(entry, legal)
        if exact is not None:
            return exact, ""
        wanted = _key(entry)
        starts = [action for action in legal if wanted and _key(action).startswith(wanted)]
        if len(starts) == 1:
            return starts[0], ""
        if len(starts) > 1:
            return None, f"{entry!r} could be {' or '.join(starts)}: type more of it."
    if parse is not None:
        parsed = parse(f"\\boxed{{{entry}}}")
        if parsed.action is not None:
            return entry, ""
        if not legal:
            return None, f"{entry!r} is not a move this game accepts: {parsed.reason}."
    if legal:
        return None, f"{entry!r} is not a legal move here. Legal moves: {', '.join(legal)}."
    return entry, ""


class HumanPolicy:
    """A person playing through text streams (a terminal in `launch/play.py`).

    For each observation it shows what the game tells that seat (the part not shown before
    when the game repeats its history) and the legal moves, then reads lines until one names
    a move (`choose_move`); it answers `\\boxed{<move>}`, which play parses like any reply.
    `quit`, `q` or `exit` and the end of the input raise `HumanQuit`; `help` lists the moves.
    """

    def __init__(self, stdin: TextIO, stdout: TextIO) -> None:
        self.stdin = stdin
        self.stdout = stdout
        self._seen: dict[tuple[str, int], str] = {}  # (game, role) -> observation last shown

    def act(self, observations: Sequence[Observation]) -> list[PolicyOutput]:
        return [self.answer(obs) for obs in observations]

    def answer(self, obs: Observation, parse: ParseFn | None = None) -> PolicyOutput:
        """Show `obs`, read a move (checked against the legal moves and `parse`) and answer."""
        self._show(obs)
        while True:
            entry = self._read()
            if entry.lower() in HELP_WORDS:
                self._say(_moves_line(obs.legal_actions))
                continue
            move, problem = choose_move(entry, obs.legal_actions, parse)
            if move is not None:
                return PolicyOutput(text=f"\\boxed{{{move}}}")
            self._say(f"Not played: {problem} Try again (help lists the moves, quit stops).")

    def _show(self, obs: Observation) -> None:
        seen = self._seen.get((obs.game, obs.role), "")
        fresh = obs.text.startswith(seen) and len(obs.text) > len(seen) and bool(seen)
        self._seen[(obs.game, obs.role)] = obs.text
        self._say(f"\n=== {obs.game}: your turn (Player {obs.role}) ===")
        self._say((obs.text[len(seen) :] if fresh else obs.text).strip("\n"))
        self._say(_moves_line(obs.legal_actions))

    def _read(self) -> str:
        self.stdout.write("your move> ")
        self.stdout.flush()
        line = self.stdin.readline()
        if not line:
            raise HumanQuit("The input ended (Ctrl-D)")
        entry = line.strip()
        if entry.lower() in QUIT_WORDS:
            raise HumanQuit("You quit")
        return entry

    def _say(self, text: str) -> None:
        _say(self.stdout, text)


def _say(out: TextIO, text: str) -> None:
    out.write(text + "\n")
    out.flush()


def _moves_line(legal: Sequence[str] | None) -> str:
    if not legal:
        return "This game lists no moves: type one in its own syntax (see above), or quit."
    return (
        f"Legal moves: {', '.join(legal)} (type one, e.g. {legal[0]} or {_key(legal[0])}; "
        "quit to stop)"
    )


def play_watched(
    job: GameJob, labels: tuple[str, str], out: TextIO
) -> tuple[Episode, HumanQuit | None]:
    """Play `job` one turn at a time, telling `out` each seat's move and the result.

    `labels` name the seats ("you", "model", ...). A `HumanPolicy` seat is asked with the
    game's own parser, so its move is checked before it is played. When the person quits or
    presses Ctrl-C the game so far is returned, abandoned (`GameEnd.ABANDONED`, no result),
    with the `HumanQuit` that stopped it; otherwise the finished episode and None.
    """
    session = GameSession(job)
    try:
        while (obs := session.pending()) is not None:
            seat = job.seats[obs.role]
            if isinstance(seat, HumanPolicy):
                parse = functools.partial(session.env.parse_action, role=obs.role)
                output = seat.answer(obs, parse)
            else:
                _say(out, f"{_who(obs.role, labels)} is choosing a move...")
                output = seat.act([obs])[0]
            played = len(session.turns)
            session.submit(obs, output)
            if len(session.turns) > played:
                person = isinstance(seat, HumanPolicy)
                _say(out, _turn_text(session.turns[-1], labels, person))
    except (HumanQuit, KeyboardInterrupt) as exc:
        stop = exc if isinstance(exc, HumanQuit) else HumanQuit("Interrupted (Ctrl-C)", True)
        return session.abandon(f"abandoned before the end: {stop.message}"), stop
    episode = session.episode()
    people = [role for role in (0, 1) if isinstance(job.seats[role], HumanPolicy)]
    final = session.env.current_state(people[0]) if people else None
    if final is not None:  # the last move is not in any observation the person was shown
        _say(out, f"\nFinal position (Player {people[0]}):\n{final}")
    _say(out, result_text(episode, labels))
    return episode, None


def _who(role: int, labels: tuple[str, str]) -> str:
    return f"Player {role} ({labels[role]})"


def _turn_text(turn: Turn, labels: tuple[str, str], person: bool) -> str:
    who = _who(turn.role, labels)
    if turn.valid:
        line = f"{who} played {turn.action}."
    elif person:
        line = f"{who}: the game refused {turn.action}: {turn.invalid_reason}"
    else:
        line = f"{who} made an invalid move: {turn.invalid_reason}"
    if not person and turn.response.strip() != f"\\boxed{{{turn.action}}}":
        reply = " ".join(turn.response.split())  # a scripted seat's bare answer is not repeated
        if len(reply) > REPLY_SHOWN_CHARS:
            reply = reply[: REPLY_SHOWN_CHARS - 3] + "..."
        line += f"\n  its reply: {reply!r}"
    return line


def result_text(episode: Episode, labels: tuple[str, str]) -> str:
    """Who won, each seat's return and the reason, in two lines."""
    first, second = episode.returns
    if episode.end is GameEnd.ABANDONED:
        verdict = "Game abandoned: no result."
    elif first == second:
        verdict = "Game over: a draw."
    else:
        verdict = f"Game over: {_who(0 if first > second else 1, labels)} wins."
    return (
        f"{verdict}\nReturns: Player 0 {first:+g}, Player 1 {second:+g}. "
        f"Reason: {episode.reason or 'none given'}"
    )
