"""The LLM policy: observations -> prompts -> one batched engine call -> outputs with tokens."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from spiral_games.engines.base import Engine, build_engine
from spiral_games.models import resolve_model
from spiral_games.prompting import encode_prompt
from spiral_games.types import Observation, PolicyOutput, SamplingParams


class LLMPolicy:
    """Plays with a language model; every observation of one `act` call is one generate batch."""

    def __init__(
        self,
        engine: Engine,
        tokenizer: Any,
        params: SamplingParams,
        prompt_styles: Mapping[str, str] | None = None,
        max_model_len: int = 2048,
        default_style: str = "chat",
    ) -> None:
        self.engine = engine
        self.tokenizer = tokenizer
        self.params = params
        self.prompt_styles = dict(prompt_styles or {})
        self.max_model_len = max_model_len
        self.default_style = default_style

    def act(self, observations: Sequence[Observation]) -> list[PolicyOutput]:
        prompts = [
            encode_prompt(
                self.tokenizer, obs.text, self.prompt_styles.get(obs.game, self.default_style)
            )
            for obs in observations
        ]
        budget = self.max_model_len - self.params.max_tokens
        fits = [i for i, p in enumerate(prompts) if len(p) <= budget]
        generations = self.engine.generate([prompts[i] for i in fits], self.params)
        outputs = [PolicyOutput(text="", context_overflow=True) for _ in prompts]
        for i, gen in zip(fits, generations, strict=True):
            outputs[i] = PolicyOutput(
                text=gen.text,
                prompt_ids=gen.prompt_ids,
                token_ids=gen.token_ids,
                logprobs=gen.logprobs,
                truncated=gen.truncated,
            )
        return outputs


def llm_opponent(
    model: str,
    seed: int = 0,
    engine: str = "hf",
    dtype: str = "bfloat16",
    temperature: float = 0.6,
    top_p: float = 0.95,
    max_tokens: int = 256,
    max_model_len: int = 2048,
    prompt_style: str = "chat",
    cache_dir: str | None = None,
) -> LLMPolicy:
    """A fixed LLM opponent from any model name (a past checkpoint, a hub id, a builtin).

    Use it in a game's `opponents`, e.g. `{_target_: spiral_games.llm_policy.llm_opponent,
    model: runs/x/checkpoints/step_10}`.
    """
    resolved = resolve_model(model, Path(cache_dir) if cache_dir else None)
    return LLMPolicy(
        build_engine(engine, resolved.path, dtype=dtype, max_model_len=max_model_len, seed=seed),
        resolved.tokenizer,
        SamplingParams(temperature=temperature, top_p=top_p, max_tokens=max_tokens),
        max_model_len=max_model_len,
        default_style=prompt_style,
    )
