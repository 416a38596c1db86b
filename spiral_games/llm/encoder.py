"""The prompt a policy sends its engine for an observation: its token ids, cut to fit the context
when configured, and the tokens of a masked choice. `LLMPolicy` plays with it; the imitation
baseline renders its demonstrations with it, so both train and play one format."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, TypeVar

from spiral_games.config.choices import ContextOverflow, PromptStyle
from spiral_games.config.schema import GameConfig
from spiral_games.errors import ConfigError, GameError
from spiral_games.llm.choice import masked_choice, spelled_names
from spiral_games.llm.prompting import encode_prompt
from spiral_games.types import Observation

SPLITS_KEPT = 4096  # sets of legal actions whose masked choice an encoder keeps
T = TypeVar("T")


class PromptEncoder:
    """Encodes observations as one model sees them; every value comes from the caller's config."""

    def __init__(
        self,
        tokenizer: Any,
        prompt_styles: Mapping[str, PromptStyle],
        max_model_len: int,
        max_tokens: int,
        *,
        on_context_overflow: ContextOverflow,
        default_style: PromptStyle | None = None,
        choice_games: Collection[str] = (),
    ) -> None:
        """`prompt_styles`: each game's style (`default_style` for a game not listed);
        `max_tokens`: the reply budget of a free-text reply; `choice_games`: the games whose
        reply is a masked choice among the legal actions (`action_format=choice`)."""
        self.tokenizer = tokenizer
        self.prompt_styles = dict(prompt_styles)
        self.max_model_len = max_model_len
        self.max_tokens = max_tokens
        self.on_context_overflow = on_context_overflow
        self.default_style = default_style
        self.choice_games = frozenset(choice_games)
        # each set of legal actions is tokenized once (`choices` and `encode` both need it, at
        # every decision; the sets repeat: Kuhn has four), at most SPLITS_KEPT sets at a time
        self._splits: dict[tuple[str, ...], tuple[str, tuple[int, ...]] | None] = {}
        self._spelled: dict[tuple[str, ...], tuple[tuple[int, ...], ...] | None] = {}

    def choices(self, obs: Observation) -> tuple[int, ...]:
        """The tokens of a masked choice at `obs` (in `obs.legal_actions`' order); () when it
        is answered in free text, read as action_format=lenient reads it: its game is not a
        choice game, it lists no legal actions, or no one token tells them apart
        (`masked_choice`)."""
        choice = self._choice(obs)
        return choice[1] if choice else ()

    def _choice(self, obs: Observation) -> tuple[str, tuple[int, ...]] | None:
        """(the text a masked choice's reply starts with, its tokens): `masked_choice`."""
        if obs.game not in self.choice_games or not obs.legal_actions:
            return None
        return _kept(self._splits, tuple(obs.legal_actions), self.tokenizer, masked_choice)

    def spelling(self, obs: Observation) -> tuple[tuple[int, ...], ...] | None:
        """The legal actions' names as tokens (`spelled_names`), for a choice spelled token by
        token, at a state of a choice game that lists actions no one token tells apart
        (`choices` is empty); None elsewhere."""
        if obs.game not in self.choice_games or not obs.legal_actions or self.choices(obs):
            return None
        return _kept(self._spelled, tuple(obs.legal_actions), self.tokenizer, spelled_names)

    def reply_budget(
        self, choices: tuple[int, ...], spelled: tuple[tuple[int, ...], ...] | None = None
    ) -> int:
        """Tokens a reply may take: one for a masked choice (`choices`), the longest name for
        a spelled one (`spelled`, `spelling`'s names), else `max_tokens`."""
        if choices:
            return 1
        return max(len(n) for n in spelled) if spelled else self.max_tokens

    def fits(
        self,
        ids: Sequence[int],
        choices: tuple[int, ...],
        spelled: tuple[tuple[int, ...], ...] | None = None,
    ) -> bool:
        """Whether a prompt of `ids` leaves room in the context for its reply."""
        return len(ids) <= self.max_model_len - self.reply_budget(choices, spelled)

    def encode(
        self,
        obs: Observation,
        choices: tuple[int, ...],
        spelled: tuple[tuple[int, ...], ...] | None = None,
    ) -> tuple[list[int], bool]:
        """The prompt of `obs` (answered by a masked choice among `choices`, if any, after the
        game's `reply_prefix`; or by a choice spelled among the names `spelled`), and whether
        its history was cut to fit the context."""
        budget = self.max_model_len - self.reply_budget(choices, spelled)
        style = self.prompt_styles.get(obs.game, self.default_style)
        if style is None:
            raise GameError(
                f"No prompt style for game {obs.game!r}: pass it in prompt_styles "
                "(RunConfig resolves games.<g>.prompt_style) or set default_style."
            )
        short = style == PromptStyle.short
        text = obs.position if short and obs.position is not None else obs.text
        choice = bool(choices) or bool(spelled)
        split = self._choice(obs) if choices else None
        # the game's reply prefix (Kuhn's card), then the tokens every action's name shares
        prefix = (obs.reply_prefix or "") + (split[0] if split else "") if choice else ""
        ids = encode_prompt(self.tokenizer, text, style, obs.legal_actions, choice, prefix)
        shortened = len(ids) > budget and self.on_context_overflow == ContextOverflow.truncate
        if shortened:
            ids = self._truncated(text, style, budget, obs.legal_actions, ids, choice, prefix)
        return ids, shortened

    def _truncated(
        self,
        text: str,
        style: PromptStyle,
        budget: int,
        legal: Sequence[str] | None,
        prompt: list[int],
        choice: bool,
        prefix: str,
    ) -> list[int]:
        """`prompt` (the full encoding of `text`) with the middle of the observation removed
        until it fits `budget`. The head keeps the game's rules, the tail the latest moves.
        """
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        keep = len(ids)
        while len(prompt) > budget and keep > 0:
            keep = max(0, keep - (len(prompt) - budget) - 16)
            head, tail = keep // 3, keep - keep // 3
            shortened = (
                self.tokenizer.decode(ids[:head])
                + "\n[... earlier game history truncated to fit the context ...]\n"
                + (self.tokenizer.decode(ids[-tail:]) if tail else "")
            )
            prompt = encode_prompt(self.tokenizer, shortened, style, legal, choice, prefix)
        return prompt


def _kept(
    kept: dict[tuple[str, ...], T],
    legal: tuple[str, ...],
    tokenizer: Any,
    make: Callable[[Any, Sequence[str]], T],
) -> T:
    """`make(tokenizer, legal)`, computed once per set of legal actions and kept in `kept`, at
    most SPLITS_KEPT sets at a time."""
    if legal not in kept:
        if len(kept) >= SPLITS_KEPT:
            kept.clear()
        kept[legal] = make(tokenizer, legal)
    return kept[legal]


def game_prompt_styles(games: Mapping[str, GameConfig]) -> dict[str, PromptStyle]:
    """Each game's prompt style, which RunConfig resolved from model.prompt_style."""
    styles = {}
    for name, game in games.items():
        if game.prompt_style is None:
            raise ConfigError(
                f"games.{name}.prompt_style is unset: RunConfig fills it from "
                "model.prompt_style when it is built."
            )
        styles[name] = game.prompt_style
    return styles
