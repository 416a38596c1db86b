"""The learner benchmark: a DeepSpeed update step against plain PyTorch on the same model, batch,
optimizer and loss, in fp32 and with bf16 autocast."""

from __future__ import annotations

import dataclasses
import time

from spiral_games.config.schema import RunConfig
from spiral_games.learn.learner import LearnerSpec
from spiral_games.llm.models import resolve_configured
from spiral_games.types import Sample, TrainBatch


def synthetic_batch(
    cfg: RunConfig, vocab: int, samples_n: int | None = None, prompt: int = 128, length: int = 128
) -> TrainBatch:
    """`samples_n` (default `learner.batch_size`) samples of `prompt` prompt and `length`
    response tokens (fixed, so figures do not move with the model's reply budget)."""
    import torch

    g = torch.Generator().manual_seed(cfg.seed)
    samples = tuple(
        Sample(
            tuple(torch.randint(0, vocab, (prompt,), generator=g).tolist()),
            tuple(torch.randint(0, vocab, (length,), generator=g).tolist()),
            (-10.0,) * length,
            1.0 if i % 2 else -1.0,
            "bench",
            0,
            0,
        )
        for i in range(samples_n or cfg.learner.batch_size)
    )
    return TrainBatch(samples, step=0)


def _plain_torch_update(spec: LearnerSpec, batch: TrainBatch, bf16: bool) -> tuple[int, float]:
    """The learner's update without DeepSpeed: same loss, AdamW, clipping and batch shape."""
    import torch
    from transformers import AutoModelForCausalLM

    from spiral_games.learn.loss import policy_loss
    from spiral_games.logprobs import pack_sequences, token_logprobs

    model = AutoModelForCausalLM.from_pretrained(spec.model_path, dtype=torch.float32)
    optimizer = torch.optim.AdamW(model.parameters(), lr=spec.learner.lr, weight_decay=0.0)
    accumulate = spec.learner.minibatch_size // spec.learner.micro_batch_size
    tokens, start = 0, time.perf_counter()
    for i, lo in enumerate(range(0, len(batch.samples), spec.learner.micro_batch_size)):
        micro = batch.samples[lo : lo + spec.learner.micro_batch_size]
        ids, attention, mask = pack_sequences(
            [s.prompt_ids for s in micro], [s.response_ids for s in micro], 0
        )
        old = torch.full_like(mask, -10.0)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            lp = token_logprobs(model, ids, attention, mask)
        out = policy_loss(
            lp,
            old,
            torch.tensor([s.advantage for s in micro]),
            mask,
            normalizer=spec.normalizer,
            mode=spec.learner.loss,
            clip=spec.learner.clip,
        )
        (out.loss / accumulate).backward()
        if (i + 1) % accumulate == 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), spec.learner.grad_clip)
            optimizer.step()
            optimizer.zero_grad()
        tokens += int(attention.sum())
    return tokens, time.perf_counter() - start


def bench_learner(cfg: RunConfig) -> dict:
    """DeepSpeed Learner.update against plain torch, fp32 and bf16 autocast, one process."""
    from spiral_games.learn.learner import Learner

    model = resolve_configured(cfg.model)
    batch = synthetic_batch(cfg, len(model.tokenizer))
    rows = {}
    for precision in ("fp32", "bf16"):
        spec = dataclasses.replace(LearnerSpec.from_run(cfg, model.path), bf16=precision == "bf16")
        learner = Learner(spec)
        learner.update(batch)  # warm-up
        metrics = learner.update(batch)
        _plain_torch_update(spec, batch, spec.bf16)  # warm-up
        tokens, seconds = _plain_torch_update(spec, batch, spec.bf16)
        rows[precision] = {
            "deepspeed_tokens_per_s": metrics["train/tokens_per_s"],
            "torch_tokens_per_s": tokens / seconds,
            "ratio": metrics["train/tokens_per_s"] / (tokens / seconds),
        }
    return {
        "benchmark": "learner",
        "model": cfg.model.name,
        "samples": len(batch.samples),
        "micro_batch_size": cfg.learner.micro_batch_size,
        "rows": rows,
        "bf16_over_fp32": rows["bf16"]["deepspeed_tokens_per_s"]
        / rows["fp32"]["deepspeed_tokens_per_s"],
        "target_ratio": 0.95,
    }


def print_learner_table(result: dict) -> None:
    """A plain-text table of a learner benchmark result."""
    print(
        f"\nlearner benchmark: {result['model']}, {result['samples']} samples, micro batch "
        f"{result['micro_batch_size']}"
    )
    print(f"{'precision':<10}{'deepspeed tok/s':>17}{'torch tok/s':>13}{'ratio':>8}")
    for precision, row in result["rows"].items():
        verdict = (
            "ok"
            if row["ratio"] >= result["target_ratio"]
            else (f"MISSED by {result['target_ratio'] - row['ratio']:.2f}")
        )
        print(
            f"{precision:<10}{row['deepspeed_tokens_per_s']:>17.1f}"
            f"{row['torch_tokens_per_s']:>13.1f}{row['ratio']:>8.2f}  ({verdict})"
        )
    print(f"bf16 autocast over fp32 (DeepSpeed): {result['bf16_over_fp32']:.2f}x")
