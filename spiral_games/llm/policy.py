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
    ) -> None:
        """`prompt_styles`: each game's style (`default_style` for a game not listed; None:
        every game played must be listed). `max_model_len` and `on_context_overflow` are the
        run's (`rollout.*`): this class declares no defaults of its own. `stream`: answer games
        one at a time through the engine's request queue (rollout.batching=stream); the engine
        must have one (`StreamingEngine`). `choice_games`: the games whose reply is a masked
        choice among the legal actions (`action_format=choice`); this policy then states its
        exact action probabilities there (`action_probabilities`). `text_params`: how its
        free-text replies (a state without a one-token choice) are sampled; None: `params`
        (held-out evaluation samples a choice at 2 and free text at 0.6)."""
        if stream and not isinstance(engine, StreamingEngine):
            raise ConfigError(
                f"rollout.batching=stream needs an engine with a request queue (vLLM); "
                f"{type(engine).__name__} has none. Use rollout.batching=auto or round."
            )
        self.stream = stream
        self._tickets = itertools.count()
        self._open: dict[str, tuple[bool, int]] = {}  # ticket -> (history cut, version)
        self._ready: dict[str, PolicyOutput] = {}  # answered without the engine (overflow)
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

    def act(self, observations: Sequence[Observation]) -> list[PolicyOutput]:
        choices = [self.encoder.choices(obs) for obs in observations]
        encoded = [
            self.encoder.encode(obs, c) for obs, c in zip(observations, choices, strict=True)
        ]
        fits = [i for i, (ids, _) in enumerate(encoded) if self.encoder.fits(ids, choices[i])]
        free = [i for i in fits if not choices[i]]
        chosen = [i for i in fits if choices[i]]
        version = self.engine.version
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
        return outputs

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
        ids, cut = self.encoder.encode(observation, choices)
        if not self.encoder.fits(ids, choices):
            ticket = f"overflow-{next(self._tickets)}"
            self._ready[ticket] = PolicyOutput(text="", context_overflow=True)
            return ticket
        submit = cast("StreamingEngine", self.engine).submit
        ticket = submit(ids, self.params, choices) if choices else submit(ids, self.text_params)
        self._open[ticket] = (cut, self.engine.version)
        return ticket

    def poll(self, tickets: Collection[str]) -> dict[str, PolicyOutput]:
        """The outputs of `tickets` that are done: waits until at least one is."""
        wanted = set(tickets)
        done = {t: self._ready.pop(t) for t in wanted & self._ready.keys()}
        if done:
            return done
        poll = cast("StreamingEngine", self.engine).poll
        for ticket, gen in poll(wanted & self._open.keys()).items():
            cut, version = self._open.pop(ticket)
            done[ticket] = _output(gen, cut, version)
        return done

    def abort(self, tickets: Collection[str]) -> None:
        """Drop `tickets`: the engine stops generating for them."""
        wanted = set(tickets)
        for ticket in wanted & self._ready.keys():
            del self._ready[ticket]
        mine = wanted & self._open.keys()
        for ticket in mine:
            del self._open[ticket]
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
