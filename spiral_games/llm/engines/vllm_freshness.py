"""Fresh weights after a push, proven: a prompt whose prefix vLLM has cached is answered by the
pushed weights, with the log-probs a transformers fp32 forward pass on those weights gives.

vLLM keeps the keys and values of a prompt's full blocks across requests (prefix caching). A
push that left them in place would answer from the old weights' keys and values, so every push
path ends in `reset_prefix_cache()`. `perturb` changes what those keys and values are (the
embeddings and the attention's q/k/v projections, not only a final norm), so a stale cache shows
in the answer. Used by tests/llm/test_fresh_weights.py and launch/gpu_smoke.py.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from spiral_games.config.choices import SyncBackend
from spiral_games.llm.engines.vllm import VLLMEngine
from spiral_games.logprobs import response_logprobs
from spiral_games.types import SamplingParams

PERTURBED = ("embed_tokens", "q_proj", "k_proj", "v_proj")  # what a cached prompt's K/V depend on
LOGPROB_ATOL = 2e-2  # fp32 vLLM against fp32 transformers; stale K/V are off by far more


def perturb(model: torch.nn.Module, seed: int, scale: float) -> None:
    """Add Gaussian noise of `scale` times each tensor's own std to the embeddings and the
    attention's q/k/v projections of `model`, in place (a tied LM head moves with the
    embeddings). How much changes the greedy answer depends on the model: 0.3 does for
    SmolLM2-135M; the 2-layer `tiny-random`, whose tied embeddings make it repeat its last
    token, needs about 30."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if any(part in name for part in PERTURBED):
                noise = torch.randn(param.shape, generator=generator)
                param.add_((noise * param.float().std() * scale).to(param.device, param.dtype))


def export(model: torch.nn.Module, path: Path) -> Path:
    """`model`'s weights under their HF names in one safetensors file (a tied head once)."""
    from safetensors.torch import save_file

    save_file({n: p.detach().cpu().contiguous() for n, p in model.named_parameters()}, path)
    return path


def streamed(model: torch.nn.Module, dtype: torch.dtype) -> Any:
    """`model`'s weights as the `WeightSource` the learner pushes (`vllm_sync.StreamedWeights`)."""
    from spiral_games.llm.engines.vllm_sync import StreamedWeights

    params = list(model.named_parameters())
    return StreamedWeights(
        [(n, tuple(p.shape)) for n, p in params],
        lambda: ((n, p.detach()) for n, p in model.named_parameters()),
        dtype,
    )


class LocalClient:
    """vLLM's `VLLMWeightSyncClient` over one in-process `VLLMEngine` (the run's client,
    `actors.trainer_side.WorkerClient`, reaches rollout-worker actors through Ray)."""

    def __init__(self, engine: VLLMEngine, version: int) -> None:
        self.engine = engine
        self.version = version  # what the next `finish_weight_update` serves

    def init_weight_transfer_engine(self, init_info: dict[str, Any]) -> None:
        self.engine.init_weight_transfer(init_info)

    def start_weight_update(self) -> None:
        self.engine.start_weight_update()

    def update_weights(self, update_info: Any) -> None:
        self.engine.update_weights(update_info)

    def finish_weight_update(self, weight_version: str | None = None) -> None:
        version = int(weight_version) if weight_version is not None else self.version
        self.engine.finish_weight_update(version)


def push_file(engine: VLLMEngine, model: torch.nn.Module, version: int, directory: Path) -> None:
    """The `file` path: one safetensors file, reloaded by the engine (`load_weights`)."""
    engine.load_weights(export(model, directory / f"weights_v{version}.safetensors"), version)


def push_streamed(
    engine: VLLMEngine,
    model: torch.nn.Module,
    version: int,
    backend: SyncBackend = SyncBackend.gloo,
) -> None:
    """A streamed path (`spiral_gloo`): this process is the trainer (rank 0) of a transfer group
    with the engine's one worker process, through vLLM's trainer engine, as a run's learner is."""
    from spiral_games.llm.engines.vllm_sync import trainer_engine

    with socket.socket() as probe:  # a free port for the group's rendezvous
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    dtype = getattr(torch, engine.served_dtype())
    trainer = trainer_engine(
        backend,
        address="127.0.0.1",
        port=port,
        world_size=2,
        rank=0,
        client=LocalClient(engine, version),
        source=streamed(model, dtype),
    )
    try:
        trainer.send_weights()
    finally:
        trainer.shutdown()
        engine.shutdown_weight_transfer()


@dataclass(frozen=True)
class Freshness:
    """One push path's check. `cached_before`: prompt tokens vLLM served from its prefix cache
    just before the push (> 0: the prompt was cached). `answers_after`: two greedy answers after
    the push, the first computed afresh, the second from the refilled cache."""

    path: str
    cached_before: int
    answer_before: tuple[int, ...]
    answers_after: tuple[tuple[int, ...], ...]
    expected: tuple[int, ...]  # transformers' greedy token at each position of the answer
    max_logprob_error: float  # vLLM's log-probs against transformers fp32, after the push
    push_s: float

    @property
    def passed(self) -> bool:
        after = self.answers_after
        return (
            self.cached_before > 0
            and all(a == after[0] for a in after)
            and after[0] == self.expected
            and after[0] != self.answer_before
            and self.max_logprob_error <= LOGPROB_ATOL
        )

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed}


def cached_tokens(engine: VLLMEngine, prompt: Sequence[int]) -> int:
    """How many of `prompt`'s tokens vLLM serves from its prefix cache now (a 1-token request)."""
    from vllm import SamplingParams as VLLMSampling
    from vllm.inputs import TokensPrompt

    request = TokensPrompt(prompt_token_ids=list(prompt))
    out = engine.llm.generate(
        [request], VLLMSampling(max_tokens=1, temperature=0.0), use_tqdm=False
    )
    return int(out[0].num_cached_tokens or 0)


def reference(
    model: torch.nn.Module, prompt: Sequence[int], answer: Sequence[int], pad_id: int
) -> tuple[tuple[int, ...], list[float]]:
    """transformers' greedy token at each position of `answer` (given the prompt and the answer
    before it), and the log-probs `logprobs.response_logprobs` gives `answer`."""
    device = next(model.parameters()).device
    ids = torch.tensor([[*prompt, *answer]], device=device)
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, len(prompt) - 1 : -1]
    greedy = tuple(int(t) for t in logits.argmax(-1).tolist())
    return greedy, response_logprobs(model, [list(prompt)], [list(answer)], pad_id)[0]


def check_push(
    engine: VLLMEngine,
    model: torch.nn.Module,
    prompt: Sequence[int],
    push: Callable[[], object],
    path: str,
    pad_id: int,
    max_tokens: int = 8,
) -> Freshness:
    """Cache `prompt`, `push` the weights of `model` (fp32, already changed) into `engine`,
    and compare the next greedy answers with `model`'s own."""
    greedy = SamplingParams.greedy(max_tokens)
    before = engine.generate([prompt], greedy)[0].token_ids
    cached = cached_tokens(engine, prompt)
    t0 = time.perf_counter()
    push()
    push_s = time.perf_counter() - t0
    after = [engine.generate([prompt], greedy)[0] for _ in range(2)]
    expected, logprobs = reference(model, prompt, after[0].token_ids, pad_id)
    error = max(abs(a - b) for a, b in zip(after[0].logprobs, logprobs, strict=True))
    return Freshness(
        path=path,
        cached_before=cached,
        answer_before=before,
        answers_after=tuple(g.token_ids for g in after),
        expected=expected,
        max_logprob_error=float(error),
        push_s=push_s,
    )
