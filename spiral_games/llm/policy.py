"""The LLM policy: observations -> prompts -> one batched engine call -> outputs with tokens."""

from __future__ import annotations

import itertools
import math
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

from spiral_games.config.choices import ContextOverflow, Dtype, EngineKind, PromptStyle
from spiral_games.config.schema import EvalConfig, ModelConfig, RolloutConfig
from spiral_games.errors import ConfigError, GameError
from spiral_games.llm.choice import Spelling
from spiral_games.llm.encoder import PromptEncoder
from spiral_games.llm.engines.base import Engine, EngineSpec, StreamingEngine
from spiral_games.llm.engines.factory import build_engine
from spiral_games.llm.models import resolve_model
from spiral_games.types import Generation, Observation, PolicyOutput, SamplingParams


class LLMPolicy:
    """Plays with a language model; every observation of one `act` call is one generate batch."""

    def __init__(
        self,
        engine: Engine,
        tokenizer: Any,
        params: SamplingParams,
        prompt_styles: Mapping[str, PromptStyle],
        max_model_len: int,
        *,
        on_context_overflow: ContextOverflow,
        default_style: PromptStyle | None = None,
        stream: bool = False,
        choice_games: Collection[str] = (),
        text_params: SamplingParams | None = None,
        spell: bool = False,
    ) -> None:
        """`prompt_styles`: each game's style (`default_style` for a game not listed; None:
        every game played must be listed). `max_model_len` and `on_context_overflow` are the
        run's (`rollout.*`): this class declares no defaults of its own. `stream`: answer games
        one at a time through the engine's request queue (rollout.batching=stream); the engine
        must have one (`StreamingEngine`). `choice_games`: the games whose reply is a masked
        choice among the legal actions (`action_format=choice`); this policy then states its
        exact action probabilities there (`action_probabilities`). `text_params`: how its
        free-text replies (a state without a one-token choice) are sampled; None: `params`
        (held-out evaluation samples a choice at 2 and free text at 0.6). `spell`: a state of a
        choice game whose legal actions no one token tells apart (LiarsDice's bids) is
        answered by spelling one action's name (`Spelling`: a masked choice wherever the names
        branch) instead of free text; for evaluation only, as the learner trains such a
        reply's tokens as free text."""
        if stream and not isinstance(engine, StreamingEngine):
            raise ConfigError(
                f"rollout.batching=stream needs an engine with a request queue (vLLM); "
                f"{type(engine).__name__} has none. Use rollout.batching=auto or round."
            )
        self.stream = stream
        self._tickets = itertools.count()
        self._open: dict[str, tuple[bool, int]] = {}  # ticket -> (history cut, version)
        # answered, not yet collected by `poll`: an overflow (no engine call), a spelled reply
        self._ready: dict[str, PolicyOutput] = {}
        self.spell = spell
        # a streamed spelled reply: ticket -> (prompt, spelling, legal, history cut, version);
        # the engine request of its next choice -> its ticket
        self._spelling: dict[str, tuple[list[int], Spelling, tuple[str, ...], bool, int]] = {}
        self._asked: dict[str, str] = {}
        self.engine = engine
        self.params = params
        self.text_params = params if text_params is None else text_params
        # the prompts, exactly as the engine gets them (the imitation baseline renders its
        # demonstrations with the same encoder); on_context_overflow: draw ends the game,
        # truncate cuts the history
        self.encoder = PromptEncoder(
            tokenizer,
            prompt_styles,
            max_model_len,
            params.max_tokens,
            on_context_overflow=on_context_overflow,
            default_style=default_style,
            choice_games=choice_games,
        )

    @property
    def tokenizer(self) -> Any:
        return self.encoder.tokenizer

    @property
    def prompt_styles(self) -> dict[str, PromptStyle]:
        return self.encoder.prompt_styles

    @property
    def max_model_len(self) -> int:
        return self.encoder.max_model_len

    @property
    def default_style(self) -> PromptStyle | None:
        return self.encoder.default_style

    @property
    def choice_games(self) -> frozenset[str]:
        return self.encoder.choice_games

    @property
    def on_context_overflow(self) -> ContextOverflow:
        return self.encoder.on_context_overflow

    @property
    def streaming(self) -> bool:
        """Whether games submit to this policy one at a time (`submit`/`poll`) rather than in
        rounds (`act`): `stream=True` on an engine with a request queue (vLLM)."""
        return self.stream

    def _spelled(self, obs: Observation) -> tuple[tuple[int, ...], ...] | None:
        """The names to spell at `obs` (`PromptEncoder.spelling`), if this policy spells."""
        return self.encoder.spelling(obs) if self.spell else None

    def act(self, observations: Sequence[Observation]) -> list[PolicyOutput]:
        choices = [self.encoder.choices(obs) for obs in observations]
        names = [self._spelled(obs) for obs in observations]
        encoded = [
            self.encoder.encode(obs, c, n)
            for obs, c, n in zip(observations, choices, names, strict=True)
        ]
        fits = [
            i for i, (ids, _) in enumerate(encoded) if self.encoder.fits(ids, choices[i], names[i])
        ]
        spelled = {i: Spelling(n) for i in fits if (n := names[i]) is not None}
        free = [i for i in fits if not choices[i] and i not in spelled]
        chosen = [i for i in fits if choices[i]]
        version = self.engine.version
        self._spell(spelled, [ids for ids, _ in encoded])
        generations = self.engine.generate([encoded[i][0] for i in free], self.text_params)
        picks = (
            self.engine.choose(
                [encoded[i][0] for i in chosen], [choices[i] for i in chosen], self.params
            )
            if chosen
            else []
        )
        outputs = [PolicyOutput(text="", context_overflow=True) for _ in encoded]
        for i, gen in zip([*free, *chosen], [*generations, *picks], strict=True):
            outputs[i] = _output(gen, encoded[i][1], version)
        for i, spelling in spelled.items():
            legal = observations[i].legal_actions or ()
            outputs[i] = self._spelled_output(encoded[i], spelling, legal, version)
        return outputs

    def _spell(self, spellings: Mapping[int, Spelling], prompts: Sequence[list[int]]) -> None:
        """Spells every `spellings[i]` after `prompts[i]`: one batched masked choice a round,
        for every name still branching (LiarsDice's bids: the quantity, then the face)."""
        while asks := {i: c for i, s in spellings.items() if (c := s.next_choice())}:
            picks = self.engine.choose(
                [prompts[i] + spellings[i].path for i in asks], list(asks.values()), self.params
            )
            for i, pick in zip(asks, picks, strict=True):
                spellings[i].take(pick.token_ids[0], pick.logprobs[0])

    def _spelled_output(
        self,
        encoded: tuple[list[int], bool],
        spelling: Spelling,
        legal: Sequence[str],
        version: int,
    ) -> PolicyOutput:
        """The output of a spelled reply: its tokens, their log-probs, the action it names."""
        chosen = spelling.chosen
        return PolicyOutput(
            text=self.tokenizer.decode(spelling.path, skip_special_tokens=True),
            prompt_ids=tuple(encoded[0]),
            token_ids=tuple(spelling.path),
            logprobs=tuple(spelling.logprobs),
            context_truncated=encoded[1],
            version=version,
            action=None if chosen is None else legal[chosen],
        )

    def scores_game(self, game: str) -> bool:
        """Whether this policy states exact action probabilities in `game` (its reply there is
        a masked choice)."""
        return game in self.choice_games

    def action_probabilities(self, observations: Sequence[Observation]) -> list[dict[str, Any]]:
        """The probability of each legal action at each observation, exactly: the masked
        choice's distribution at this policy's temperature (`scores_game` games only)."""
        for obs in observations:
            if not self.scores_game(obs.game) or not self.encoder.choices(obs):
                raise GameError(
                    f"Exact action probabilities need a masked choice (games.{obs.game}."
                    "action_format=choice, legal actions named by distinct first tokens); "
                    f"this state of {obs.game!r} is answered in free text."
                )
        outputs = self.act(observations)
        return [
            # an observation too long for the context has no choice: all of it is invalid
            {
                a: math.exp(lp)
                for a, lp in zip(obs.legal_actions or (), out.choice_logprobs, strict=True)
            }
            if out.choice_logprobs
            else {}
            for obs, out in zip(observations, outputs, strict=True)
        ]

    def reseed(self, seed: int) -> None:
        """Restart the engine's sampling from `seed`."""
        self.engine.reseed(seed)

    def submit(self, observation: Observation) -> str:
        """Start answering one observation; returns the ticket `poll` answers it under."""
        choices = self.encoder.choices(observation)
        names = self._spelled(observation)
        ids, cut = self.encoder.encode(observation, choices, names)
        if not self.encoder.fits(ids, choices, names):
            ticket = f"overflow-{next(self._tickets)}"
            self._ready[ticket] = PolicyOutput(text="", context_overflow=True)
            return ticket
        if names is not None:
            ticket = f"spell-{next(self._tickets)}"
            legal = tuple(observation.legal_actions or ())
            self._spelling[ticket] = (ids, Spelling(names), legal, cut, self.engine.version)
            self._ask(ticket)
            return ticket
        submit = cast("StreamingEngine", self.engine).submit
        ticket = submit(ids, self.params, choices) if choices else submit(ids, self.text_params)
        self._open[ticket] = (cut, self.engine.version)
        return ticket

    def _ask(self, ticket: str) -> None:
        """Queues the next choice of the spelled reply `ticket`, or, once its name is whole,
        puts its output where `poll` collects it."""
        ids, spelling, legal, cut, version = self._spelling[ticket]
        options = spelling.next_choice()
        if not options:
            del self._spelling[ticket]
            self._ready[ticket] = self._spelled_output((ids, cut), spelling, legal, version)
            return
        submit = cast("StreamingEngine", self.engine).submit
        self._asked[submit(ids + spelling.path, self.params, options)] = ticket

    def poll(self, tickets: Collection[str]) -> dict[str, PolicyOutput]:
        """The outputs of `tickets` that are done: waits until at least one is. A spelled
        reply's next choice is queued as soon as its last one is answered."""
        wanted = set(tickets)
        done = {t: self._ready.pop(t) for t in wanted & self._ready.keys()}
        poll = cast("StreamingEngine", self.engine).poll
        while not done:
            asked = {r for r, t in self._asked.items() if t in wanted}
            requests = (wanted & self._open.keys()) | asked
            if not requests:
                raise GameError(f"poll: no ticket of {sorted(wanted)[:3]} is open.")
            for request, gen in poll(requests).items():
                if request in self._open:
                    cut, version = self._open.pop(request)
                    done[request] = _output(gen, cut, version)
                    continue
                ticket = self._asked.pop(request)
                self._spelling[ticket][1].take(gen.token_ids[0], gen.logprobs[0])
                self._ask(ticket)
                if ticket in self._ready:
                    done[ticket] = self._ready.pop(ticket)
        return done

    def abort(self, tickets: Collection[str]) -> None:
        """Drop `tickets`: the engine stops generating for them."""
        wanted = set(tickets)
        for ticket in wanted & self._ready.keys():
            del self._ready[ticket]
        mine = wanted & self._open.keys()
        for ticket in mine:
            del self._open[ticket]
        for ticket in wanted & self._spelling.keys():
            del self._spelling[ticket]
        for request in [r for r, t in self._asked.items() if t in wanted]:
            del self._asked[request]
            mine.add(request)
        if mine:
            cast("StreamingEngine", self.engine).abort(mine)


def _output(gen: Generation, cut: bool, version: int) -> PolicyOutput:
    return PolicyOutput(
        text=gen.text,
        prompt_ids=gen.prompt_ids,
        token_ids=gen.token_ids,
        logprobs=gen.logprobs,
        truncated=gen.truncated,
        context_truncated=cut,
        version=version,
        choice_ids=gen.choice_ids,
        choice_logprobs=gen.choice_logprobs,
    )


def llm_opponent(
    model: str,
    seed: int = 0,
    engine: str = "hf",
    dtype: str | None = None,
    temperature: float | None = None,
    top_p: float | None = None,
    max_tokens: int | None = None,
    max_model_len: int | None = None,
    prompt_style: str | None = None,
    cache_dir: str | None = None,
) -> LLMPolicy:
    """A fixed LLM opponent from any model name (a past checkpoint, a hub id, a builtin).

    Use it in a game's `opponents`, e.g. `{_target_: spiral_games.llm.policy.llm_opponent,
    model: runs/x/checkpoints/step_10}`. What is left unset comes from the config dataclasses:
    sampling from `EvalConfig` (an opponent plays like the evaluated policy), dtype, reply
    budget and prompt style from `ModelConfig`, context and overflow policy from
    `RolloutConfig`.
    """
    evaluation, model_cfg = EvalConfig(), ModelConfig()
    rollout = (
        RolloutConfig() if max_model_len is None else RolloutConfig(max_model_len=max_model_len)
    )
    resolved = resolve_model(model, Path(cache_dir) if cache_dir else None)
    spec = EngineSpec.from_rollout(
        EngineKind(engine), resolved.path, rollout, dtype=Dtype(dtype or model_cfg.dtype), seed=seed
    )
    params = SamplingParams(
        temperature=evaluation.temperature if temperature is None else temperature,
        top_p=evaluation.top_p if top_p is None else top_p,
        max_tokens=max_tokens or model_cfg.max_tokens,
    )
    return LLMPolicy(
        build_engine(spec),
        resolved.tokenizer,
        params,
        {},
        rollout.max_model_len,
        on_context_overflow=rollout.on_context_overflow,
        default_style=PromptStyle(prompt_style or model_cfg.prompt_style),
    )
