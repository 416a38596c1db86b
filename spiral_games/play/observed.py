"""Any registered two-player TextArena game, with no module of its own: its moves are the
bracketed actions its observation names (`[roll]`, `[col 4]`), each tried on a copy of the env
before it is offered or played; and the random opponent that plays from them."""

from __future__ import annotations

import copy
import itertools
import random
import re
from collections.abc import Collection, Sequence
from typing import Any

from spiral_games.play.game import TextArenaGame
from spiral_games.play.parsing import extract_boxed, parse_boxed_action
from spiral_games.play.policy import RandomPolicy
from spiral_games.types import Observation, ParsedAction, PolicyOutput, StepResult

_TOKEN = re.compile(r"\[([^\[\]\n]{1,60})\]")
_NUMBER = re.compile(r"\d+")
_SPACES = re.compile(r"\s+")
_DEFAULT_SPEAKERS = re.compile(r"GAME|Player \d+")
# A token with one or two numbers is a pattern ('[col 4]', '[Bid: 3, 4]'): it is also tried
# with each number replaced by 0-9. Three or more numbers would be 1000+ tries a turn.
NUMBER_VALUES = range(10)
MAX_NUMBERS = 2
# Tried each turn: a game that takes this takes any text (a conversation turn).
FREE_TEXT_PROBE = "[~]"
# A conversation turn's message is the reply's first this many characters (after its spaces
# are joined): a reply that hit its token budget is still a message.
MAX_MESSAGE_CHARS = 2000
# What the random opponent says on a turn that takes any text, or names no move it can read.
FREE_TEXT_REPLY = "I pass."
GAME_ID = -1  # TextArena's sender id of the game's own messages (textarena.core.GAME_ID)


def bracketed_tokens(text: str, speakers: Collection[str] | None = None) -> list[str]:
    """Every `[...]` token of an observation, in order of first appearance, less the speaker
    tag that opens each message (`[GAME] ...`, `[Player 0] [col 3]`).

    Args:
        text: an observation as TextArena's LLMObservationWrapper writes it.
        speakers: the names that tag messages (the env's role mapping); None: GAME and
            `Player <n>`.
    """
    found: list[str] = []
    for line in text.splitlines():
        for match in _TOKEN.finditer(line):
            name = match.group(1)
            is_speaker = name in speakers if speakers else _DEFAULT_SPEAKERS.fullmatch(name)
            if match.start() == 0 and is_speaker:
                continue
            if name.strip() and match.group(0) not in found:
                found.append(match.group(0))
    return found


def number_variants(token: str) -> list[str]:
    """`token` with each of its numbers replaced by every value of NUMBER_VALUES ('[col 4]' ->
    '[col 0]' ... '[col 9]'); a token with no number, or more than MAX_NUMBERS, as it is."""
    spans = [m.span() for m in _NUMBER.finditer(token)]
    if not spans or len(spans) > MAX_NUMBERS:
        return [token]
    out = []
    for values in itertools.product(NUMBER_VALUES, repeat=len(spans)):
        text, end = "", 0
        for (start, stop), value in zip(spans, values, strict=True):
            text += token[end:start] + str(value)
            end = stop
        out.append(text + token[end:])
    return out


def observed_actions(text: str, speakers: Collection[str] | None = None) -> list[str]:
    """The candidate actions an observation names: its bracketed tokens (`bracketed_tokens`)
    and their number variants (`number_variants`), each once, in order of first appearance."""
    out: list[str] = []
    for token in bracketed_tokens(text, speakers):
        out += [v for v in number_variants(token) if v not in out]
    return out


def refusal(state: Any, errors: int, logged: int) -> str | None:
    """Why the env refused the move just made, or None if it took it: TextArena's invalid-move
    count rose (`set_invalid_move`), or the game said 'invalid move' in a message of its own
    (Snake kills the snake instead)."""
    new = [m for sender, m in state.logs[logged:] if sender == GAME_ID]
    if state.error_count > errors:
        said = [m for m in new if "invalid" in m.lower()]
        return said[-1] if said else "invalid move"
    said = [m for m in new if "invalid move" in m.lower()]
    return said[-1] if said else None


class ObservedTextArenaGame(TextArenaGame):
    """A registered two-player TextArena env read from its observations alone.

    Legal actions: the bracketed actions the observation names (`observed_actions`), each
    tried on a copy of the env and kept if the env takes it; None where the turn takes any text
    (it takes FREE_TEXT_PROBE: a conversation turn) or nothing it names is taken. A reply is
    read as its last \\boxed{} answer: a listed action, else the boxed text itself, judged by
    the env; on a conversation turn, a reply without a box is the message, whole.
    Every move is tried on a copy first: a move the env refuses (or that makes TextArena
    raise) is an invalid move and leaves the game as it was.
    """

    def __init__(self, env_id: str, name: str | None = None, **env_kwargs: Any) -> None:
        super().__init__(env_id, name=name, **env_kwargs)
        # the state it was read at -> (legal actions, whether the turn takes any text)
        self._legal: tuple[tuple[int, ...], tuple[list[str] | None, bool]] | None = None

    def legal_actions(self, role: int) -> list[str] | None:
        return self._read(role)[0]

    def takes_any_text(self, role: int) -> bool:
        """Whether this turn takes any text (a conversation turn: TruthAndDeception's)."""
        return self._read(role)[1]

    def _read(self, role: int) -> tuple[list[str] | None, bool]:
        state = self.raw.state
        key = (len(state.logs), int(state.current_player_id), int(state.turn), state.error_count)
        if self._legal is None or self._legal[0] != key:
            self._legal = (key, self._read_legal(role))
        return self._legal[1]

    def _read_legal(self, role: int) -> tuple[list[str] | None, bool]:
        if self._probe(FREE_TEXT_PROBE) is None:
            return None, True
        candidates = self._shown_actions(role)
        return [a for a in candidates if self._probe(a) is None] or None, False

    def current_state(self, role: int) -> str | None:
        """The rules (the game's first message to `role`) and every message since its latest
        board, the game's own untagged and a player's as `Player 0: [move]`; None for a game
        that draws no board (then the short prompt shows the full observation)."""
        self.observation(role)  # moves the env's new messages into the wrapper's history
        history = self._history(role)
        boards = [i for i, (_, _, kind) in enumerate(history) if kind.name == "GAME_BOARD"]
        if not history or not boards:
            return None
        names = self.raw.state.role_mapping
        shown = [history[0], *history[max(boards[-1], 1) :]]
        return "\n".join(
            m.strip("\n") if s == GAME_ID else f"{names.get(s, f'Player {s}')}: {m}"
            for s, m, _ in shown
        )

    def _history(self, role: int) -> list[tuple[int, str, Any]]:
        env = self._env
        while env is not None:
            full = getattr(env, "full_observations", None)
            if isinstance(full, dict):
                return list(full.get(role, []))
            env = getattr(env, "env", None)
        return []

    def parse_action(self, response: str, role: int) -> ParsedAction:
        legal = self.legal_actions(role)
        if legal:
            parsed = parse_boxed_action(response, legal)
            if parsed.action is not None or extract_boxed(response) is None:
                return parsed
        if self.takes_any_text(role):
            return self._message(response, role)
        return parse_boxed_action(response, None)  # the env judges it (step tries it first)

    def _message(self, response: str, role: int) -> ParsedAction:
        """A conversation turn's move: a boxed answer as on any turn (`\\boxed{x}` is played as
        `[x]`, so `\\boxed{Accept}` is the action `[Accept]`); a reply without one is the
        message, whole, its spaces joined."""
        if extract_boxed(response) is not None:
            return parse_boxed_action(response, None)
        message = _SPACES.sub(" ", response).strip()
        if not message:
            return ParsedAction(None, "an empty message")
        return ParsedAction(message[:MAX_MESSAGE_CHARS])

    def _shown_actions(self, role: int) -> list[str]:
        """The candidate actions the observation shows (`observed_actions`)."""
        speakers = [str(s) for s in self.raw.state.role_mapping.values()]
        return observed_actions(self.observation(role), speakers)

    def step(self, action: str) -> StepResult:
        refused = self._probe(action)
        if refused is not None:
            return StepResult(False, refused)
        return super().step(action)

    def _probe(self, action: str) -> str | None:
        """Why the env would refuse `action` now, tried on a copy; None if it would take it.
        The copy draws from this episode's random state, which the try leaves as it was."""
        for wrapper in self._wrappers():
            action = wrapper.action(action)
        env = copy.deepcopy(self.raw)
        errors, logged = env.state.error_count, len(env.state.logs)
        outer = random.getstate()
        random.setstate(self._rng_state)
        try:
            env.step(action=action)
        except Exception as exc:  # TextArena code that breaks on odd input: not a move it takes
            return f"TextArena could not play {action[:40]!r}: {type(exc).__name__}: {exc}"
        finally:
            random.setstate(outer)
        return refusal(env.state, errors, logged)

    def _wrappers(self) -> list[Any]:
        """The env's action wrappers, outermost first (the order they rewrite an action in)."""
        import textarena as ta

        out, env = [], self._env
        while hasattr(env, "env"):
            if isinstance(env, ta.ActionWrapper):
                out.append(env)
            env = env.env
        return out


class ObservedRandomPolicy:
    """The random opponent of an `ObservedTextArenaGame`: uniform over the legal actions the
    observation lists (`RandomPolicy`); FREE_TEXT_REPLY where it lists none (a conversation
    turn, or a game whose moves cannot be read: then the env refuses it, and the game counts
    the opponent's invalid move)."""

    def __init__(self, seed: int = 0) -> None:
        self.uniform = RandomPolicy(seed)

    def reseed(self, seed: int) -> None:
        """Restart its choices from `seed`."""
        self.uniform.reseed(seed)

    def act(self, observations: Sequence[Observation]) -> list[PolicyOutput]:
        return [
            self.uniform.act([obs])[0]
            if obs.legal_actions
            else PolicyOutput(text=f"\\boxed{{{FREE_TEXT_REPLY}}}")
            for obs in observations
        ]
