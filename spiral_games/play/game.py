"""The env interface (`GameEnv`), the only thing the library knows about games, and its
adapter over any registered TextArena env id."""

from __future__ import annotations

import html
import random
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from spiral_games.errors import GameError
from spiral_games.play.parsing import parse_boxed_action
from spiral_games.types import ParsedAction, StepResult

# One turn of a saved game, as a transcript holds it (`Episode.to_json`): "role", "prompt" (the
# observation shown), "response", "action", "valid", ...
SavedTurn = Mapping[str, Any]

TEXT_TAIL_LINES = 8
TEXT_TAIL_CHARS = 600


def text_boards(turns: Sequence[SavedTurn]) -> list[str]:
    """The last lines of each observation, as escaped HTML text: for text games that is usually
    the current state. What `GameEnv.draw_boards` draws unless a game draws its own."""
    out: list[str] = []
    for turn in turns:
        lines = [line for line in str(turn.get("prompt", "")).splitlines() if line.strip()]
        tail = "\n".join(lines[-TEXT_TAIL_LINES:])[-TEXT_TAIL_CHARS:]
        out.append(f'<pre class="board text">{html.escape(tail)}</pre>' if tail else "")
    return out


class GameEnv(ABC):
    """A two-player zero-sum text game. Create one object per episode.

    Subclass it directly for a game of your own (see games/nim.py), or use `TextArenaGame`.
    After an invalid move (`step` returns `valid=False`) the state is unchanged and the same
    role is still to act.
    """

    name: str = "game"
    # CSS for the classes the HTML of `draw_boards` uses; a replay page adds it once
    board_css: str = ""

    @abstractmethod
    def reset(self, seed: int) -> None:
        """Start a new game; the same seed must give the same game."""

    @property
    @abstractmethod
    def current_role(self) -> int:
        """The role (0 or 1) to act next."""

    @abstractmethod
    def observation(self, role: int) -> str:
        """The text `role` sees now (called once per turn, for the current role)."""

    def legal_actions(self, role: int) -> list[str] | None:
        """Legal action strings for `role`, or None if the game cannot enumerate them."""
        return None

    def current_state(self, role: int) -> str | None:
        """The rules and the present position as `role` sees them, without the move history;
        None if the game has no such view. The `short` prompt (small models) shows it instead
        of the full observation, which in TextArena games repeats every past board."""
        return None

    def reply_prefix(self, role: int) -> str | None:
        """Text the reply of a masked choice (action_format=choice) starts with, written by the
        game, not the model: e.g. Kuhn's private card, so that the choice, the next token, is
        made right after the fact it should depend on. None (the default): the choice is the
        reply's first token. Free-text replies ignore it."""
        return None

    @abstractmethod
    def step(self, action: str) -> StepResult:
        """Apply the current role's action."""

    @property
    @abstractmethod
    def done(self) -> bool:
        """Whether the game is over."""

    @abstractmethod
    def returns(self) -> tuple[float, float]:
        """Final return of each role (zero-sum); only meaningful once `done`."""

    @property
    def outcome_reason(self) -> str:
        """Why the game ended, in words."""
        return ""

    def policy_state(self, role: int) -> Any:
        """A structured view of what `role` knows, for scripted opponents (None if unused)."""
        return None

    def parse_action(self, response: str, role: int) -> ParsedAction:
        """Turn a raw model response into an env action (default: last \\boxed{}, legal match)."""
        return parse_boxed_action(response, self.legal_actions(role))

    def draw_boards(self, turns: Sequence[SavedTurn]) -> list[str]:
        """One HTML drawing of the game's state per turn of a saved game, for the replay page.

        Rebuilt from the saved turns alone (the page has transcripts, not a live env): replay
        the valid actions, or read the observations. Escape every text taken from a turn.
        Default: the last lines of each observation as plain text (`text_boards`).
        """
        return text_boards(turns)


LegalActionsFn = Callable[[Any, int], list[str]]
StateFn = Callable[[Any, int], Any]


class TextArenaGame(GameEnv):
    """Adapts any registered TextArena env id (TextArena 0.7.4 API) to `GameEnv`.

    TextArena seeds the global `random` module; this adapter keeps a private RNG state per
    episode so concurrent games stay reproducible. Invalid-move handling is left to the game
    loop: TextArena's own error allowance is disabled so it never ends a game by itself.
    """

    def __init__(
        self,
        env_id: str,
        name: str | None = None,
        legal_actions: LegalActionsFn | None = None,
        policy_state: StateFn | None = None,
        **env_kwargs: Any,
    ) -> None:
        import textarena as ta

        if env_id not in ta.envs.registration.ENV_REGISTRY:
            raise GameError(
                f"TextArena has no env {env_id!r}. Use a registered id such as "
                "'TicTacToe-v0', or register yours with textarena.envs.registration.register."
            )
        self.env_id = env_id
        self.name = name or env_id
        self._make = lambda: ta.make(env_id, **env_kwargs)
        self._legal_fn = legal_actions
        self._state_fn = policy_state
        self._env: Any = None
        self._rng_state: Any = None
        self._rewards: dict[int, float] | None = None
        self._reason = ""

    @property
    def raw(self) -> Any:
        """The unwrapped TextArena env (its `.state` holds the game state)."""
        env = self._env
        while hasattr(env, "env"):
            env = env.env
        return env

    def _isolated(self, fn: Callable[[], Any]) -> Any:
        outer = random.getstate()
        random.setstate(self._rng_state)
        try:
            return fn()
        finally:
            self._rng_state = random.getstate()
            random.setstate(outer)

    def reset(self, seed: int) -> None:
        self._env = self._make()  # a new object per episode: wrappers keep history across reset
        self._rng_state = random.Random(seed).getstate()
        self._isolated(lambda: self._env.reset(num_players=2, seed=seed))
        self.raw.state.error_allowance = 1 << 30  # the game loop owns the invalid-move policy
        self._rewards, self._reason = None, ""

    @property
    def current_role(self) -> int:
        return int(self.raw.state.current_player_id)

    def observation(self, role: int) -> str:
        if role != self.current_role:
            raise GameError(
                f"Role {role} asked for an observation, but role {self.current_role} is to "
                "act; TextArena only serves the current player."
            )
        _, obs = self._env.get_observation()
        if isinstance(obs, str):
            return obs
        return "\n".join(message for _, message, _ in obs)

    def legal_actions(self, role: int) -> list[str] | None:
        return self._legal_fn(self.raw, role) if self._legal_fn else None

    def policy_state(self, role: int) -> Any:
        return self._state_fn(self.raw, role) if self._state_fn else None

    def step(self, action: str) -> StepResult:
        state = self.raw.state
        logged, errors = len(state.logs), state.error_count
        done, _ = self._isolated(lambda: self._env.step(action=action))
        if state.error_count > errors:  # TwoPlayerState.set_invalid_move under our allowance
            messages = [m for _, m in state.logs[logged:] if "invalid move" in m.lower()]
            return StepResult(False, messages[-1] if messages else "invalid move")
        if done:
            rewards, info = self._env.close()
            self._rewards = {int(k): float(v) for k, v in (rewards or {}).items()}
            self._reason = str(info.get(0, {}).get("reason", "")) if isinstance(info, dict) else ""
        return StepResult(True)

    @property
    def done(self) -> bool:
        return self._rewards is not None

    def returns(self) -> tuple[float, float]:
        if self._rewards is None:
            raise GameError("returns() was called before the game ended.")
        return (self._rewards.get(0, 0.0), self._rewards.get(1, 0.0))

    @property
    def outcome_reason(self) -> str:
        return self._reason
