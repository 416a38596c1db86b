"""The LLM policy: observations -> prompts -> one batched engine call -> outputs with tokens."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from spiral_games.config.schema import RolloutConfig
from spiral_games.llm.engines.base import Engine, EngineSpec
from spiral_games.llm.engines.factory import build_engine
from spiral_games.llm.models import resolve_model
from spiral_games.llm.prompting import encode_prompt
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
        on_context_overflow: str = "draw",
    ) -> None:
        self.engine = engine
        self.on_context_overflow = on_context_overflow  # draw: end the game; truncate: history
        self.tokenizer = tokenizer
        self.params = params
        self.prompt_styles = dict(prompt_styles or {})
        self.max_model_len = max_model_len
        self.default_style = default_style

    def act(self, observations: Sequence[Observation]) -> list[PolicyOutput]:
        budget = self.max_model_len - self.params.max_tokens
        prompts, cut = [], []
        for obs in observations:
            style = self.prompt_styles.get(obs.game, self.default_style)
            text = obs.position if style == "short" and obs.position is not None else obs.text
            ids = encode_prompt(self.tokenizer, text, style, obs.legal_actions)
            shortened = len(ids) > budget and self.on_context_overflow == "truncate"
            if shortened:
                ids = self._truncated(text, style, budget, obs.legal_actions, ids)
            prompts.append(ids)
            cut.append(shortened)
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
                context_truncated=cut[i],
            )
        return outputs

    def _truncated(
        self,
        text: str,
        style: str,
        budget: int,
        legal: Sequence[str] | None,
        prompt: list[int],
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
            prompt = encode_prompt(self.tokenizer, shortened, style, legal)
        return prompt


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

    Use it in a game's `opponents`, e.g. `{_target_: spiral_games.llm.policy.llm_opponent,
    model: runs/x/checkpoints/step_10}`.
    """
    resolved = resolve_model(model, Path(cache_dir) if cache_dir else None)
    return LLMPolicy(
        build_engine(
            EngineSpec.from_rollout(
                engine,
                resolved.path,
                RolloutConfig(max_model_len=max_model_len),
                dtype=dtype,
                seed=seed,
            )
        ),
        resolved.tokenizer,
        SamplingParams(temperature=temperature, top_p=top_p, max_tokens=max_tokens),
        max_model_len=max_model_len,
        default_style=prompt_style,
    )
