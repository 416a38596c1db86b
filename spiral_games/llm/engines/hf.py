"""The transformers engine: batched `generate` with a KV cache and left padding (the fallback)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import cast

import torch

from spiral_games.errors import EngineError
from spiral_games.llm.choice import behaviour_logprob, choice_logprobs
from spiral_games.llm.engines.base import EngineSpec, check_context
from spiral_games.types import Generation, SamplingParams


class HFEngine:
    """Runs a causal LM with transformers; works on any CPU or GPU torch supports."""

    def __init__(self, spec: EngineSpec) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.max_model_len = spec.rollout.max_model_len
        self.version = 0
        torch.manual_seed(spec.seed)
        self.tokenizer = AutoTokenizer.from_pretrained(str(spec.model_path))
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        device = "cuda" if torch.cuda.is_available() else "cpu"
        model = AutoModelForCausalLM.from_pretrained(
            str(spec.model_path), dtype=getattr(torch, str(spec.dtype))
        )
        # transformers wraps PreTrainedModel.to in functools.wraps(nn.Module.to), whose typeshed
        # type does not bind `self`: mypy reads `device` as the model argument.
        self.model = model.to(device)  # type: ignore[arg-type]
        self.model.eval()

    def generate(
        self, prompts: Sequence[Sequence[int]], params: SamplingParams
    ) -> list[Generation]:
        """Sample one completion per prompt; logprobs are of the unscaled model distribution."""
        if not prompts:
            return []
        check_context(prompts, params.max_tokens, self.max_model_len)
        ids, mask = self._left_padded(prompts)
        longest = ids.shape[1]
        pad = self.tokenizer.pad_token_id
        greedy = params.temperature == 0
        if params.seed is not None:
            torch.manual_seed(params.seed)
        with torch.no_grad():
            out = self.model.generate(
                input_ids=ids.to(self.model.device),
                attention_mask=mask.to(self.model.device),
                do_sample=not greedy,
                temperature=None if greedy else params.temperature,
                top_p=None if greedy else params.top_p,
                top_k=None,
                max_new_tokens=params.max_tokens,
                stop_strings=list(params.stop) or None,
                tokenizer=self.tokenizer if params.stop else None,
                pad_token_id=pad,
                output_logits=True,
                return_dict_in_generate=True,
            )
        new = out.sequences[:, longest:].cpu()
        logprobs = torch.stack(out.logits, dim=1).float().log_softmax(-1).cpu()
        chosen = logprobs.gather(-1, new.unsqueeze(-1)).squeeze(-1)
        return [
            self._finish(tuple(prompts[row]), new[row].tolist(), chosen[row].tolist(), params)
            for row in range(len(prompts))
        ]

    def choose(
        self,
        prompts: Sequence[Sequence[int]],
        choices: Sequence[Sequence[int]],
        params: SamplingParams,
    ) -> list[Generation]:
        """A masked choice per prompt (`Engine.choose`): one forward pass, no generation."""
        if not prompts:
            return []
        check_context(prompts, 1, self.max_model_len)
        ids, mask = self._left_padded(prompts)
        if params.seed is not None:
            torch.manual_seed(params.seed)
        device = self.model.device
        positions = (mask.cumsum(-1) - 1).clamp(min=0)  # left padding: count from each start
        with torch.no_grad():
            logits = (
                self.model(
                    input_ids=ids.to(device),
                    attention_mask=mask.to(device),
                    position_ids=positions.to(device),
                    logits_to_keep=1,
                )
                .logits[:, -1]
                .float()
            )
        raw = logits.log_softmax(-1).cpu()
        out = []
        for row, (prompt, options) in enumerate(zip(prompts, choices, strict=True)):
            scores = raw[row, list(options)].tolist()
            policy = choice_logprobs(scores, params.temperature)
            pick = int(torch.multinomial(torch.tensor(policy).exp(), 1))
            token = int(options[pick])
            out.append(
                Generation(
                    prompt_ids=tuple(prompt),
                    token_ids=(token,),
                    logprobs=(behaviour_logprob(scores, params.temperature, pick),),
                    text=cast(str, self.tokenizer.decode([token])),
                    truncated=False,
                    choice_ids=tuple(int(t) for t in options),
                    choice_logprobs=tuple(policy),
                )
            )
        return out

    def _left_padded(self, prompts: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """`input_ids` and `attention_mask` [B, longest], each prompt right-aligned."""
        longest = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), longest), self.tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, prompt in enumerate(prompts):
            ids[row, longest - len(prompt) :] = torch.tensor(list(prompt))
            mask[row, longest - len(prompt) :] = 1
        return ids, mask

    def _finish(
        self,
        prompt: tuple[int, ...],
        tokens: list[int],
        logprobs: list[float],
        params: SamplingParams,
    ) -> Generation:
        eos = self.tokenizer.eos_token_id
        end, stopped = len(tokens), False
        if eos in tokens:
            end, stopped = tokens.index(eos) + 1, True
        if params.stop:  # generation halts on the token that completes a stop string
            for k in range(1, end + 1):
                if any(s in self.tokenizer.decode(tokens[:k]) for s in params.stop):
                    end, stopped = k, True
                    break
        tokens, logprobs = tokens[:end], logprobs[:end]
        # decode returns str for one id list (list[str] only for a batch of lists)
        text = cast(str, self.tokenizer.decode(tokens, skip_special_tokens=True))
        for stop in params.stop:
            if stop in text:
                text = text[: text.index(stop)]
        return Generation(
            prompt_ids=prompt,
            token_ids=tuple(tokens),
            logprobs=tuple(logprobs),
            text=text,
            truncated=not stopped and len(tokens) >= params.max_tokens,
        )

    def score(
        self, prompts: Sequence[Sequence[int]], responses: Sequence[Sequence[int]]
    ) -> list[list[float]]:
        """Teacher-forced log-probs of each response given its prompt, from the served weights."""
        from spiral_games.logprobs import response_logprobs

        return response_logprobs(self.model, prompts, responses, self.tokenizer.pad_token_id)

    def load_weights(self, safetensors_path: Path, version: int) -> None:
        """Load a full state dict from a safetensors file and start serving `version`."""
        from safetensors.torch import load_file

        state = load_file(str(safetensors_path), device=str(self.model.device))
        missing, unexpected = self.model.load_state_dict(state, strict=False)
        real_missing = [k for k in missing if k != "lm_head.weight"]  # tied embeddings
        if real_missing or unexpected:
            raise EngineError(
                f"Weights in {safetensors_path} do not fit the model: missing {real_missing[:3]}, "
                f"unexpected {unexpected[:3]}. Push weights saved from the same architecture."
            )
        self.version = version

    def reseed(self, seed: int) -> None:
        """Sampling draws from torch's global generator in this process: reseed it."""
        torch.manual_seed(seed)

    def sleep(self) -> None:
        """Nothing to release: the transformers engine keeps its weights."""

    def wake(self) -> None:
        """Nothing to restore."""

    def close(self) -> None:
        """Release the model (nothing runs in the background)."""
        self.model = None
