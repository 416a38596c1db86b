"""The Learner: a DeepSpeed engine that turns a TrainBatch into policy updates (thin adapter)."""

from __future__ import annotations

import os
import random
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

import torch

from spiral_games.config.hardware import RuntimePlan, plan_runtime, set_cpu_threads
from spiral_games.config.schema import RunConfig
from spiral_games.faults import kill_point
from spiral_games.learn.loss import LossOutput, policy_loss
from spiral_games.logprobs import pack_sequences, token_logprobs
from spiral_games.types import Sample, TrainBatch

if TYPE_CHECKING:
    from peft import PeftModel
    from transformers import PreTrainedModel

OPTIMIZER_FILE = "optimizer.pt"


@dataclass(frozen=True)
class LearnerSpec:
    """Everything the learner needs, and nothing else."""

    model_path: str
    lr: float
    zero_stage: int
    grad_clip: float
    epochs: int
    minibatch_size: int
    micro_batch_size: int
    loss: str  # ppo | reinforce
    clip: float
    kl_coef: float
    normalizer: int  # Dr.GRPO constant: the maximum generation length
    bf16: bool  # bf16 autocast (CPU) / bf16 weights (GPU)
    gradient_checkpointing: bool
    lora_rank: int  # 0: full fine-tuning; > 0: LoRA adapters (peft) on all linear layers
    lora_alpha: int
    seed: int
    cpu_threads: int = 1  # torch/OMP threads of this rank on a CPU

    @classmethod
    def from_run(
        cls, cfg: RunConfig, model_path: Path, plan: RuntimePlan | None = None
    ) -> LearnerSpec:
        """Cut the learner's slice out of the whole run config, with `auto` choices resolved
        by `plan` (default: planned for this machine)."""
        lc = cfg.learner
        plan = plan or plan_runtime(cfg)
        return cls(
            model_path=str(model_path),
            lr=lc.lr,
            zero_stage=lc.zero_stage,
            grad_clip=lc.grad_clip,
            epochs=lc.epochs,
            minibatch_size=lc.minibatch_size,
            micro_batch_size=lc.micro_batch_size,
            loss=lc.loss,
            clip=lc.clip,
            kl_coef=lc.kl_coef,
            normalizer=cfg.reply_budget(),
            bf16=plan.learner_bf16,
            gradient_checkpointing=lc.gradient_checkpointing,
            lora_rank=lc.lora_rank,
            lora_alpha=lc.lora_alpha,
            seed=cfg.seed,
            cpu_threads=plan.learner_threads,
        )


def _init_process_group(rank: int, world_size: int, master_addr: str, master_port: int | None):
    """DeepSpeed needs torch.distributed even for one rank: gloo on CPU, NCCL on GPU."""
    import deepspeed

    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return
    if master_port is None:
        master_port = free_port()
    os.environ.update(
        {
            "MASTER_ADDR": master_addr,
            "MASTER_PORT": str(master_port),
            "RANK": str(rank),
            "LOCAL_RANK": "0",  # every rank is its own process with its own (Ray-assigned) device
            "WORLD_SIZE": str(world_size),
        }
    )
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "gloo":
        # DeepSpeed JIT-builds a shared-memory allreduce kernel (~80 s on 2 cores) for CPU
        # jobs; one rank never communicates and several fall back to gloo's allreduce.
        deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
    deepspeed.init_distributed(dist_backend=backend, verbose=False)


def free_port() -> int:
    """A TCP port that is free on this host now."""
    with socket.socket() as sock:
        sock.bind(("", 0))
        return int(sock.getsockname()[1])


class Learner:
    """Holds the trainable model, its optimizer and the DeepSpeed engine."""

    def __init__(
        self,
        spec: LearnerSpec,
        rank: int = 0,
        world_size: int = 1,
        master_addr: str = "127.0.0.1",
        master_port: int | None = None,
    ) -> None:
        import deepspeed
        from transformers import AutoModelForCausalLM

        _init_process_group(rank, world_size, master_addr, master_port)
        self.spec = spec
        self.rank = rank
        self.world_size = world_size
        self.on_gpu = torch.cuda.is_available()
        if not self.on_gpu:  # a rank in a 1-CPU Ray actor would otherwise run on one core
            set_cpu_threads(spec.cpu_threads)
        dtype = torch.bfloat16 if (spec.bf16 and self.on_gpu) else torch.float32
        model = AutoModelForCausalLM.from_pretrained(spec.model_path, dtype=dtype)
        if spec.gradient_checkpointing:
            model.gradient_checkpointing_enable()
        self.tied = bool(getattr(model.config, "tie_word_embeddings", False))
        self.reference = None
        if spec.kl_coef > 0:  # a frozen copy of the starting policy for the KL penalty
            self.reference = AutoModelForCausalLM.from_pretrained(spec.model_path, dtype=dtype)
            self.reference.requires_grad_(False).eval()
        policy: torch.nn.Module = model  # what DeepSpeed trains: the model or its LoRA wrapper
        if spec.lora_rank > 0:
            from peft import LoraConfig, get_peft_model

            policy = get_peft_model(
                model,
                LoraConfig(
                    r=spec.lora_rank,
                    lora_alpha=spec.lora_alpha,
                    target_modules="all-linear",
                    task_type="CAUSAL_LM",
                ),
            )
        # A client AdamW: DeepSpeed's FusedAdam JIT-builds for ~84 s on CPU; this starts at once.
        trainable = [p for p in policy.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(trainable, lr=spec.lr, weight_decay=0.0)
        config = {
            "train_micro_batch_size_per_gpu": spec.micro_batch_size,
            "gradient_accumulation_steps": spec.minibatch_size
            // (spec.micro_batch_size * world_size),
            "gradient_clipping": spec.grad_clip,
            # update() accumulates micro-batches itself and calls step() once per minibatch,
            # so a last, partial minibatch is a step of its own instead of dropped samples
            "managed_gradient_accumulation": False,
            "zero_optimization": {"stage": spec.zero_stage},
            "bf16": {"enabled": spec.bf16 and self.on_gpu},
            "steps_per_print": 1 << 30,
            "wall_clock_breakdown": False,
        }
        self.engine, self.optimizer, _, _ = deepspeed.initialize(
            model=policy, optimizer=optimizer, config=config
        )
        self.rng = random.Random(spec.seed + rank)
        self.pad_id = int(model.config.pad_token_id or 0)

    @property
    def model(self) -> torch.nn.Module:
        return self.engine.module

    def _autocast(self) -> torch.autocast:
        device = "cuda" if self.on_gpu else "cpu"
        return torch.autocast(device, dtype=torch.bfloat16, enabled=self.spec.bf16)

    def update(self, batch: TrainBatch) -> dict[str, float]:
        """`epochs` passes over the batch in shuffled minibatches, one optimizer step each. Every
        sample is used: a last, smaller minibatch gets its own step, its loss the mean over its
        own samples (gradient accumulation is ours, not DeepSpeed's micro-step counter)."""
        spec = self.spec
        self.engine.train()
        losses, clips, kls, ref_kls, norms = [], [], [], [], []
        tokens, start = 0, time.perf_counter()
        samples = list(batch.samples)
        per_rank = max(spec.minibatch_size // self.world_size, 1)
        for _ in range(spec.epochs):
            self.rng.shuffle(samples)
            for mini in _chunks(samples, per_rank):
                for micro in _chunks(mini, spec.micro_batch_size):
                    out, n_tokens = self._loss(micro)
                    # the micro loss is a mean over its samples: weight it to the minibatch mean
                    self.engine.backward(out.loss * (len(micro) / len(mini)), scale_wrt_gas=False)
                    kill_point("update")
                    losses.append(out.loss.item())
                    clips.append(out.clip_fraction)
                    kls.append(out.approx_kl)
                    ref_kls.append(out.kl_to_ref)
                    tokens += n_tokens
                local_norm = self._grad_norm()
                self.engine.step()  # unmanaged accumulation: every step() is a boundary
                norm = self.engine.get_global_grad_norm()
                norms.append(float(norm) if norm is not None else local_norm or 0.0)
        seconds = time.perf_counter() - start
        return {
            "train/loss": sum(losses) / len(losses),
            "train/clip_fraction": sum(clips) / len(clips),
            "train/approx_kl": sum(kls) / len(kls),
            "train/kl_to_ref": sum(ref_kls) / len(ref_kls),
            "train/grad_norm": sum(norms) / len(norms) if norms else float("nan"),
            "train/optimizer_steps": float(len(norms)),
            "train/samples": float(len(samples)),
            "train/tokens": float(tokens),
            "train/tokens_per_s": tokens / seconds if seconds else 0.0,
            "train/seconds": seconds,
        }

    def _loss(self, micro: list[Sample]) -> tuple[LossOutput, int]:
        """The loss of one micro-batch (forward under bf16 autocast) and its token count."""
        spec = self.spec
        ids, attention, mask = pack_sequences(
            [s.prompt_ids for s in micro], [s.response_ids for s in micro], self.pad_id
        )
        device = self.engine.device
        ids, attention, mask = ids.to(device), attention.to(device), mask.to(device)
        old = torch.zeros_like(mask)
        for row, s in enumerate(micro):
            start_at = len(s.prompt_ids) - 1
            old[row, start_at : start_at + len(s.logprobs)] = torch.tensor(s.logprobs)
        with self._autocast():
            lp = token_logprobs(self.engine, ids, attention, mask)
            ref = None
            if self.reference is not None:
                with torch.no_grad():
                    ref = token_logprobs(self.reference.to(device), ids, attention, mask)
        advantages = torch.tensor([s.advantage for s in micro], device=device)
        out = policy_loss(
            lp,
            old,
            advantages,
            mask,
            normalizer=spec.normalizer,
            mode=spec.loss,
            clip=spec.clip,
            ref_logprobs=ref,
            kl_coef=spec.kl_coef,
        )
        return out, int(attention.sum())

    def _grad_norm(self) -> float | None:
        """Pre-clip gradient norm from local grads (None when ZeRO partitions them)."""
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        if not grads:
            return None
        return float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])))

    def full_model(self) -> PreTrainedModel:
        """The plain HF model: with LoRA, the base model with the adapters merged in a copy."""
        if self.spec.lora_rank <= 0:
            return cast("PreTrainedModel", self.model)
        import copy

        return cast("PeftModel", copy.deepcopy(self.model)).merge_and_unload()

    def state_dict_for_push(self) -> dict[str, torch.Tensor]:
        """Full weights as contiguous CPU tensors; the tied lm_head is left out, as HF saves."""
        model = self.full_model()
        state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
        if self.tied:
            state.pop("lm_head.weight", None)
        return state

    def export_weights(self, path: Path) -> Path:
        """Write the weights to one safetensors file (put it in /dev/shm for speed)."""
        from safetensors.torch import save_file

        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        save_file(self.state_dict_for_push(), str(tmp))
        os.replace(tmp, path)
        return path

    def save(self, directory: Path) -> None:
        """An HF checkpoint (safetensors; LoRA merged) plus the optimizer state in `directory`.

        Rank 0 writes the model; every rank writes its own optimizer state (ZeRO shards it).
        """
        if self.rank == 0:
            self.full_model().save_pretrained(str(directory), safe_serialization=True)
            if self.spec.lora_rank > 0:
                cast("PeftModel", self.model).save_pretrained(str(directory / "adapter"))
        torch.save(self.optimizer.state_dict(), directory / self._optimizer_file())

    def _optimizer_file(self) -> str:
        return OPTIMIZER_FILE if self.rank == 0 else f"optimizer_rank{self.rank}.pt"

    def load_optimizer(self, directory: Path) -> None:
        """Restore the optimizer state saved by `save` (tensors only: weights_only=True)."""
        state = torch.load(
            directory / self._optimizer_file(), weights_only=True, map_location="cpu"
        )
        self.optimizer.load_state_dict(state)

    def shutdown(self) -> None:
        """Nothing runs in the background of a single in-process rank."""

    def rng_state(self) -> object:
        """The minibatch-shuffling RNG state (saved in checkpoints)."""
        return self.rng.getstate()

    def set_rng_state(self, state: object) -> None:
        self.rng.setstate(state)  # type: ignore[arg-type]

    def logprobs(self, prompts: list[list[int]], responses: list[list[int]]) -> list[list[float]]:
        """Teacher-forced response log-probs under the current weights (for sync checks)."""
        from spiral_games.logprobs import response_logprobs

        self.engine.eval()
        return response_logprobs(self.model, prompts, responses, self.pad_id)


def _chunks(items: list[Sample], size: int) -> list[list[Sample]]:
    """`items` in consecutive pieces of `size` (the last may be shorter)."""
    return [items[lo : lo + size] for lo in range(0, len(items), size)]
