"""The Learner: a DeepSpeed engine that turns a TrainBatch into policy updates (thin adapter)."""

from __future__ import annotations

import os
import random
import socket
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch

from spiral_games.config.hardware import RuntimePlan, plan_runtime
from spiral_games.config.schema import LearnerConfig, RunConfig
from spiral_games.errors import ConfigError
from spiral_games.faults import kill_point
from spiral_games.learn import weights
from spiral_games.learn.loss import LossOutput, policy_loss
from spiral_games.logprobs import (
    pack_sequences,
    shared_choice_logprobs,
    shared_choice_logprobs_and_magnet,
    token_logprobs,
    token_logprobs_and_magnet,
)
from spiral_games.process_setup import pin_process, set_cpu_threads, unpin_process
from spiral_games.types import Sample, TrainBatch

if TYPE_CHECKING:
    from peft import PeftModel
    from transformers import PreTrainedModel

OPTIMIZER_FILE = "optimizer.pt"
WEIGHTS_FILE = "model.safetensors"  # the name save_pretrained gives one unsharded file


@dataclass(frozen=True)
class LearnerSpec:
    """What the learner needs: its config, passed whole (never copied field by field), and the
    values resolved for this run and machine."""

    learner: LearnerConfig  # optimisation, loss, batch shape, LoRA, ZeRO stage
    model_path: str  # the weights to start from
    tis_cap: float  # learner.tis_cap as RunConfig resolved it; 0: off
    normalizer: int  # Dr.GRPO's constant: the reply budget (rollout.max_tokens, resolved)
    bf16: bool  # resolved from learner.bf16: bf16 autocast (CPU) / bf16 weights (GPU)
    seed: int  # the run's; rank r shuffles with seed + r
    # the rollout temperature: a masked choice's log-prob is taken at it (the policy that played)
    choice_temperature: float
    steps: int  # train.steps: the magnet's schedule (learner.magnet_coef_final) spans them
    cpu_threads: int  # resolved from learner.cpu_threads: torch/OMP threads of this rank on a CPU
    cpu_ids: tuple[int, ...]  # the CPUs an in-process learner binds to (empty: unpinned)

    @classmethod
    def from_run(
        cls, cfg: RunConfig, model_path: Path, plan: RuntimePlan | None = None
    ) -> LearnerSpec:
        """The learner's config of the whole run config, with `auto` choices resolved by `plan`
        (default: planned for this machine)."""
        plan = plan or plan_runtime(cfg)
        return cls(
            learner=cfg.learner,
            model_path=str(model_path),
            tis_cap=cfg.importance_cap(),
            normalizer=cfg.reply_budget(),
            bf16=plan.learner_bf16,
            seed=cfg.seed,
            # greedy rollouts (0) have no distribution to train: the model's own (1) then
            choice_temperature=cfg.rollout.temperature or 1.0,
            steps=cfg.train.steps,
            cpu_threads=plan.learner_threads,
            cpu_ids=plan.learner_cpus,
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


def keep_head_fp32(model: torch.nn.Module) -> None:
    """Run the output head outside bf16 autocast, on fp32 hidden states: the log-probs of a
    choice then keep differences far below bf16's step near the logits' size (0.125), where
    the card of a Kuhn hand lives. The layers below still run their matrices in bf16."""
    head = model.get_output_embeddings()  # type: ignore[operator]
    forward = head.forward

    def fp32_forward(hidden: torch.Tensor) -> torch.Tensor:
        with torch.autocast(hidden.device.type, enabled=False):
            return forward(hidden.float())

    head.forward = fp32_forward


def top_layers(model: torch.nn.Module, train_layers: int) -> list[int] | None:
    """The indices of the top `train_layers` decoder layers; None (every layer trains) when 0
    or when the model has no more layers than that."""
    if train_layers <= 0:
        return None
    layers = getattr(model.get_decoder(), "layers", None)  # type: ignore[operator]
    if layers is None:
        raise ConfigError(
            f"learner.train_layers={train_layers}: {type(model).__name__} keeps no `layers` "
            "list in its decoder. Set learner.train_layers=0 to train every weight."
        )
    if train_layers >= len(layers):  # a model this shallow trains whole
        return None
    return list(range(len(layers) - train_layers, len(layers)))


def layer_linears(model: torch.nn.Module) -> list[str]:
    """The names of the linear modules inside the decoder layers (q_proj, ..., down_proj)."""
    return sorted(
        {
            name.rsplit(".", 1)[-1]
            for name, module in model.named_modules()
            if isinstance(module, torch.nn.Linear) and ".layers." in name
        }
    )


def freeze_below_top(model: torch.nn.Module, train_layers: int) -> None:
    """Leave only the `top_layers` and the final norm trainable: the token embeddings (and a
    head tied to them) and every layer below stay frozen, so autograd keeps no graph below the
    first trained layer and the backward pass stops there. An untied head trains with the top
    layers. A model of `train_layers` layers or fewer trains whole."""
    indices = top_layers(model, train_layers)
    if indices is None:
        return
    decoder = model.get_decoder()  # type: ignore[operator]
    model.requires_grad_(False)
    for index in indices:
        decoder.layers[index].requires_grad_(True)
    norm = getattr(decoder, "norm", None)
    if norm is not None:
        norm.requires_grad_(True)
    head = model.get_output_embeddings()  # type: ignore[operator]
    if head is not None and not getattr(model.config, "tie_word_embeddings", False):
        head.requires_grad_(True)


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
        self._unpinned: dict[int, set[int]] = {}  # the threads' CPUs before pinning
        if not self.on_gpu:  # a rank in a 1-CPU Ray actor would otherwise run on one core
            set_cpu_threads(spec.cpu_threads)
            self._unpinned = pin_process(spec.cpu_ids)
        dtype = torch.bfloat16 if (spec.bf16 and self.on_gpu) else torch.float32

        def load() -> PreTrainedModel:
            """The starting weights, in the learner's precision: under CPU bf16 autocast with
            the head in fp32 (the policy and the KL reference alike)."""
            loaded = AutoModelForCausalLM.from_pretrained(spec.model_path, dtype=dtype)
            if spec.bf16 and not self.on_gpu:
                keep_head_fp32(loaded)
            return loaded

        model = load()
        if spec.learner.lora_rank == 0:
            freeze_below_top(model, spec.learner.train_layers)
        if spec.learner.gradient_checkpointing:
            # with frozen layers below, non-reentrant: a reentrant checkpoint whose input needs
            # no grad would give the layers inside it no gradient
            frozen = spec.learner.train_layers > 0
            model.gradient_checkpointing_enable({"use_reentrant": False} if frozen else None)
        self.tied = bool(getattr(model.config, "tie_word_embeddings", False))
        self.reference = None
        if spec.learner.kl_coef > 0:  # a frozen copy of the starting policy for the KL penalty
            self.reference = load()
            self.reference.requires_grad_(False).eval()
        policy: torch.nn.Module = model  # what DeepSpeed trains: the model or its LoRA wrapper
        if spec.learner.lora_rank > 0:
            from peft import LoraConfig, get_peft_model

            layers = top_layers(model, spec.learner.train_layers)
            policy = get_peft_model(
                model,
                LoraConfig(
                    r=spec.learner.lora_rank,
                    lora_alpha=spec.learner.lora_alpha,
                    # peft takes a layer list with module names only, not "all-linear"
                    target_modules="all-linear" if layers is None else layer_linears(model),
                    task_type="CAUSAL_LM",
                    layers_to_transform=layers,
                ),
            )
        # A client AdamW: DeepSpeed's FusedAdam JIT-builds for ~84 s on CPU; this starts at once.
        trainable = [p for p in policy.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(trainable, lr=spec.learner.lr, weight_decay=0.0)
        config = {
            "train_micro_batch_size_per_gpu": spec.learner.micro_batch_size,
            "gradient_accumulation_steps": spec.learner.minibatch_size
            // (spec.learner.micro_batch_size * world_size),
            "gradient_clipping": spec.learner.grad_clip,
            # update() accumulates micro-batches itself and calls step() once per minibatch,
            # so a last, partial minibatch is a step of its own instead of dropped samples
            "managed_gradient_accumulation": False,
            # ZeRO-3's default memory_efficient_linear swaps torch.nn.functional.linear for its own
            # for the whole process, for good (other models, other stages, other rounding); its
            # gather-before-backward hooks keep training correct without it
            "zero_optimization": {
                "stage": spec.learner.zero_stage,
                "memory_efficient_linear": False,
            },
            "bf16": {"enabled": spec.bf16 and self.on_gpu},
            "steps_per_print": 1 << 30,
            "wall_clock_breakdown": False,
        }
        self.engine, self.optimizer, _, _ = deepspeed.initialize(
            model=policy, optimizer=optimizer, config=config
        )
        self.rng = random.Random(spec.seed + rank)
        self._magnet_coef = spec.learner.magnet_at(0, spec.steps)  # update() sets it per step
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
        self._magnet_coef = spec.learner.magnet_at(batch.step, spec.steps)
        losses, clips, kls, ref_kls, magnet_kls, norms = [], [], [], [], [], []
        tokens, start = 0, time.perf_counter()
        samples = list(batch.samples)
        per_rank = max(spec.learner.minibatch_size // self.world_size, 1)
        # TIS: the learner's own log-probs before any step of this update, and token weights
        importance, tis_metrics = self._importance(samples) if spec.tis_cap > 0 else (None, {})
        for _ in range(spec.learner.epochs):
            self.rng.shuffle(samples)
            for mini in _chunks(samples, per_rank):
                # one rank alone may share forward passes between choices; ranks must run as
                # many forward passes as each other (ZeRO-3's are collectives), so several
                # ranks keep one micro-batch per micro_batch_size samples
                size = spec.learner.micro_batch_size
                micros = _micro_batches(mini, size) if self.world_size == 1 else _chunks(mini, size)
                for micro in micros:
                    out, n_tokens = self._loss(micro, importance)
                    # the micro loss is a mean over its samples: weight it to the minibatch mean
                    self.engine.backward(out.loss * (len(micro) / len(mini)), scale_wrt_gas=False)
                    kill_point("update")
                    losses.append(out.loss.item())
                    clips.append(out.clip_fraction)
                    kls.append(out.approx_kl)
                    ref_kls.append(out.kl_to_ref)
                    magnet_kls.append(out.kl_to_magnet)
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
            "train/kl_to_magnet": sum(magnet_kls) / len(magnet_kls),
            "train/magnet_coef": self._magnet_coef,
            "train/grad_norm": sum(norms) / len(norms) if norms else float("nan"),
            "train/optimizer_steps": float(len(norms)),
            "train/samples": float(len(samples)),
            "train/tokens": float(tokens),
            "train/tokens_per_s": tokens / seconds if seconds else 0.0,
            "train/seconds": seconds,
            # versions between the weights that generated a sample and the learner's (batch.step
            # updates so far): at most train.max_staleness; the test of the bound reads this
            "train/staleness_max": float(max(batch.step - s.version for s in batch.samples)),
            **tis_metrics,
        }

    def _importance(
        self, samples: list[Sample]
    ) -> tuple[dict[int, tuple[torch.Tensor, torch.Tensor]], dict[str, float]]:
        """Truncated importance sampling: per sample (keyed by `id`), its response log-probs
        under the weights before this update (no grad) and its token weights
        min(exp(those - behaviour), tis_cap); plus the token-weighted mean weight and capped
        share. Under ZeRO-3 each forward is a collective, like the update itself."""
        cap = self.spec.tis_cap
        out: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        tokens, weight_sum, capped = 0, 0.0, 0
        for micro in _chunks(samples, self.spec.learner.micro_batch_size):
            ids, attention, mask = pack_sequences(
                [s.prompt_ids for s in micro], [s.response_ids for s in micro], self.pad_id
            )
            device = self.engine.device
            with torch.no_grad(), self._autocast():
                lp = token_logprobs(
                    self.engine,
                    ids.to(device),
                    attention.to(device),
                    mask.to(device),
                    [s.choice_ids for s in micro],
                    self.spec.choice_temperature,
                ).cpu()
            for row, s in enumerate(micro):
                start_at, n = len(s.prompt_ids) - 1, len(s.response_ids)
                proximal = lp[row, start_at : start_at + n].float()
                raw = torch.exp(proximal - torch.tensor(s.logprobs, dtype=torch.float32))
                weights = raw.clamp(max=cap)
                out[id(s)] = (proximal, weights)
                tokens, weight_sum = tokens + n, weight_sum + float(weights.sum())
                capped += int((raw > cap).sum())
        metrics = {
            "train/tis_weight": weight_sum / max(tokens, 1),
            "train/tis_capped_fraction": capped / max(tokens, 1),
        }
        return out, metrics

    def _loss(
        self,
        micro: list[Sample],
        importance: dict[int, tuple[torch.Tensor, torch.Tensor]] | None = None,
    ) -> tuple[LossOutput, int]:
        """The loss of one micro-batch (forward under bf16 autocast) and its token count. The
        ratio is to the behaviour log-probs, or with `importance` (TIS) to the learner's own
        log-probs before the update, each token weighted as `_importance` says."""
        spec = self.spec
        if all(_is_choice(s) for s in micro):
            return self._choice_loss(micro, importance)
        ids, attention, mask = pack_sequences(
            [s.prompt_ids for s in micro], [s.response_ids for s in micro], self.pad_id
        )
        old = torch.zeros(mask.shape, dtype=torch.float32)  # built here, moved once
        weights = torch.ones(mask.shape, dtype=torch.float32) if importance else None
        for row, s in enumerate(micro):
            start_at, n = len(s.prompt_ids) - 1, len(s.response_ids)
            if len(s.logprobs) != n:
                raise ValueError(
                    f"A sample has {len(s.logprobs)} behaviour log-probs for {n} response tokens."
                )
            if importance is None:
                old[row, start_at : start_at + n] = torch.tensor(s.logprobs)
            else:
                assert weights is not None
                old[row, start_at : start_at + n], weights[row, start_at : start_at + n] = (
                    importance[id(s)]
                )
        device = self.engine.device
        ids, attention, mask = ids.to(device), attention.to(device), mask.to(device)
        old = old.to(device=device, dtype=mask.dtype)
        weights = weights.to(device) if weights is not None else None
        choices, temperature = [s.choice_ids for s in micro], spec.choice_temperature
        with self._autocast():
            lp, magnet = token_logprobs_and_magnet(
                self.engine, ids, attention, mask, choices, temperature
            )
            ref = None
            if self.reference is not None:
                with torch.no_grad():
                    reference = self.reference.to(device)
                    ref = token_logprobs(reference, ids, attention, mask, choices, temperature)
        out = self._surrogate(micro, lp, old, mask, ref, weights, magnet)
        return out, int(attention.sum())

    def _choice_loss(
        self,
        micro: list[Sample],
        importance: dict[int, tuple[torch.Tensor, torch.Tensor]] | None = None,
    ) -> tuple[LossOutput, int]:
        """`_loss` of a micro-batch of masked choices: one forward pass per distinct prompt,
        whatever the number of choices made there, and the same loss as `_loss` computes."""
        spec = self.spec
        rows: dict[tuple[tuple[int, ...], tuple[int, ...]], int] = {}
        for s in micro:
            rows.setdefault(_choice_key(s), len(rows))
        prompts = [prompt for prompt, _ in rows]
        choices = [options for _, options in rows]
        picks = [(rows[_choice_key(s)], s.response_ids[0]) for s in micro]
        device = self.engine.device
        if importance is None:
            old = torch.tensor([[s.logprobs[0]] for s in micro], dtype=torch.float32)
            weights = None
        else:
            old = torch.stack([importance[id(s)][0] for s in micro]).reshape(-1, 1)
            weights = torch.stack([importance[id(s)][1] for s in micro]).reshape(-1, 1).to(device)
        temperature = spec.choice_temperature
        with self._autocast():
            lp, magnet = shared_choice_logprobs_and_magnet(
                self.engine, prompts, choices, picks, self.pad_id, temperature
            )
            lp, magnet = lp.unsqueeze(-1), magnet.unsqueeze(-1)
            ref = None
            if self.reference is not None:
                with torch.no_grad():
                    ref = shared_choice_logprobs(
                        self.reference.to(device), prompts, choices, picks, self.pad_id, temperature
                    ).unsqueeze(-1)
        old = old.to(device=device, dtype=lp.dtype)
        out = self._surrogate(micro, lp, old, torch.ones_like(lp), ref, weights, magnet)
        return out, sum(len(p) for p in prompts)

    def _surrogate(
        self,
        micro: list[Sample],
        lp: torch.Tensor,
        old: torch.Tensor,
        mask: torch.Tensor,
        ref: torch.Tensor | None,
        weights: torch.Tensor | None,
        magnet: torch.Tensor,
    ) -> LossOutput:
        """The configured policy loss of `micro` from its log-probs [B, T] (`_loss` and
        `_choice_loss` differ only in how they compute them)."""
        lc = self.spec.learner
        return policy_loss(
            lp,
            old,
            torch.tensor([s.advantage for s in micro], device=lp.device),
            mask,
            normalizer=self.spec.normalizer,
            mode=lc.loss,
            clip=lc.clip,
            ref_logprobs=ref,
            kl_coef=lc.kl_coef,
            token_weights=weights,
            magnet_kl=magnet,
            magnet_coef=self._magnet_coef,
        )

    def _grad_norm(self) -> float | None:
        """Pre-clip gradient norm from local grads; None when ZeRO partitions them (ZeRO-3 always:
        its parameters keep no `.grad`), and the engine's global norm is reported instead."""
        if self.spec.learner.zero_stage == 3:
            return None
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        if not grads:
            return None
        return float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])))

    def named_weights(self, dtype: torch.dtype | None = None) -> Iterator[tuple[str, torch.Tensor]]:
        """The full weights as `(name, tensor)`, streamed one module at a time in `state_dict`
        order, under the plain HF model's `state_dict` names (what vLLM's `load_weights` and
        `save_pretrained` use); the tied lm_head is left out, as `save_pretrained` leaves it.
        With LoRA, each adapted layer yields its merged weight, W + scale * B @ A, under the base
        name. Tensors are detached, contiguous and on the CPU; floating ones cast to `dtype`.

        Under ZeRO-3 each module's parameters are gathered (`GatheredParameters`, a collective)
        just long enough to copy them out, so one module at most is ever whole and no extra copy
        of the model is built. So EVERY rank must iterate this generator, to the end and in
        lock-step with the others; only rank 0's tensors need be used (the others may drop
        them). Without ZeRO-3 no rank waits for another; a tensor that needs no move or cast
        then shares storage with the live weight: use it before the next update, or clone it.
        """
        zero3 = self.spec.learner.zero_stage == 3
        yield from weights.stream(self._hf_model(), self._lora_layer(), dtype, _gathered, zero3)

    def weight_shapes(self) -> list[tuple[str, tuple[int, ...]]]:
        """The names and full shapes `named_weights` yields, in its order, read without gathering
        (no collective: any rank may call it alone)."""
        return [(name, shape) for name, shape, _ in self._weight_layout(None)]

    def _weight_layout(self, dtype: torch.dtype | None) -> weights.Layout:
        return weights.layout(self._hf_model(), self._lora_layer(), dtype, _full_shape)

    def _hf_model(self) -> PreTrainedModel:
        """The HF model inside the engine (with LoRA: the base model, adapters injected)."""
        if self.spec.learner.lora_rank > 0:
            return cast("PeftModel", self.model).get_base_model()  # type: ignore[return-value]
        return cast("PreTrainedModel", self.model)

    def _lora_layer(self) -> type | None:
        if self.spec.learner.lora_rank <= 0:
            return None
        from peft.tuners.lora import LoraLayer

        return LoraLayer

    def state_dict_for_push(self) -> dict[str, torch.Tensor]:
        """`named_weights` as one dict (every rank must call it under ZeRO-3; use rank 0's)."""
        return dict(self.named_weights())

    def export_weights(self, path: Path) -> Path:
        """Write the weights to one safetensors file (put it in /dev/shm for speed), streamed
        from `named_weights`: one tensor at a time in memory, never the whole dict.

        Every rank must call it under ZeRO-3 (the gathers are collectives); rank 0 writes the
        file and every rank returns `path`.
        """
        self._write_weights(path)
        return path

    def _write_weights(self, path: Path) -> None:
        """Rank 0 streams `named_weights` into `path` (through a temporary file); under ZeRO-3
        the other ranks iterate alongside, for the gathers."""
        if self.rank != 0:
            if self.spec.learner.zero_stage == 3:
                for _ in self.named_weights():
                    pass
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        weights.write_safetensors(tmp, self._weight_layout(None), self.named_weights())
        os.replace(tmp, path)

    def save(self, directory: Path) -> None:
        """An HF checkpoint in `directory`: config and `model.safetensors` (LoRA merged; the
        adapter itself in `adapter/`) as `save_pretrained` writes them, plus optimizer state.

        Every rank must call it: under ZeRO-3 they gather the weights together and rank 0 writes
        them. Every rank writes its own optimizer state (ZeRO shards it).
        """
        directory.mkdir(parents=True, exist_ok=True)
        self._write_weights(directory / WEIGHTS_FILE)
        if self.rank == 0:
            model = self._hf_model()
            # what save_pretrained records next to the weights
            model.config.dtype = str(model.dtype).split(".")[1]
            model.config.architectures = [type(model).__name__]
            model.config.save_pretrained(str(directory))
            if model.can_generate():
                model.generation_config.save_pretrained(str(directory))
        if self.spec.learner.lora_rank > 0:
            self._save_adapter(directory / "adapter")
        torch.save(self._optimizer_state(), directory / self._optimizer_file())

    def _save_adapter(self, directory: Path) -> None:
        """peft's adapter files by rank 0, from adapters gathered on every rank under ZeRO-3."""
        adapters = [p for n, p in self.model.named_parameters() if "lora_" in n]
        with _gathered(adapters):
            if self.rank == 0:
                cast("PeftModel", self.model).save_pretrained(str(directory))

    def _optimizer_file(self) -> str:
        return OPTIMIZER_FILE if self.rank == 0 else f"optimizer_rank{self.rank}.pt"

    def _optimizer_state(self) -> dict[str, Any]:
        """This rank's optimizer state, as `torch.load(weights_only=True)` can read it back.

        A ZeRO optimizer's state holds this rank's shard (moments and fp32 master weights) next
        to a loss-scaler object and a stage enum, which weights-only loading refuses, and
        (stages 1-2) a map for universal checkpoints; `load_optimizer` restores the first two
        from the running optimizer (fp32 and bf16 use a static scale of 1) and needs no map.
        """
        state = self.optimizer.state_dict()
        if self.spec.learner.zero_stage == 0:
            return state
        from deepspeed.checkpoint.constants import LOSS_SCALER, PARAM_SLICE_MAPPINGS, ZERO_STAGE

        state = {k: v for k, v in state.items() if k not in (LOSS_SCALER, PARAM_SLICE_MAPPINGS)}
        state[ZERO_STAGE] = int(state[ZERO_STAGE])
        return state

    def load_optimizer(self, directory: Path) -> None:
        """Restore the optimizer state saved by `save` (tensors only: weights_only=True): every
        rank its own file, saved by as many ranks as there are now.

        Under ZeRO this also restores the rank's fp32 master weights and refreshes the model's
        shard from them, as DeepSpeed's own `load_checkpoint` does; every rank must call it.
        """
        state = torch.load(
            directory / self._optimizer_file(), weights_only=True, map_location="cpu"
        )
        if self.spec.learner.zero_stage == 0:
            self.optimizer.load_state_dict(state)
            return
        from deepspeed.checkpoint.constants import LOSS_SCALER, PARTITION_COUNT, ZERO_STAGE
        from deepspeed.runtime.zero.config import ZeroStageEnum

        if state[PARTITION_COUNT] != self.optimizer.partition_count:
            raise ConfigError(
                f"The optimizer state in {directory} is sharded over {state[PARTITION_COUNT]} "
                f"ranks, not {self.optimizer.partition_count}: resume with the learner.num_ranks "
                "it was saved with."
            )
        state[LOSS_SCALER] = self.optimizer.loss_scaler
        state[ZERO_STAGE] = ZeroStageEnum(state[ZERO_STAGE])
        # ZeRO's loader takes every rank's state, by rank, and reads this rank's own entry
        states: list[dict[str, Any] | None] = [None] * self.world_size
        states[self.rank] = state
        if self.spec.learner.zero_stage == 3:
            self.optimizer.checkpoint_event_prologue()  # partition all, as load_checkpoint does
        self.optimizer.load_state_dict(states, load_from_fp32_weights=True)
        if self.spec.learner.zero_stage == 3:
            self.optimizer.checkpoint_event_epilogue()  # re-gather the persistent parameters

    def shutdown(self) -> None:
        """Nothing runs in the background of a single in-process rank; give back the cores it
        was pinned to."""
        unpin_process(self._unpinned)
        self._unpinned = {}

    def rng_state(self) -> object:
        """The minibatch-shuffling RNG state (saved in checkpoints)."""
        return self.rng.getstate()

    def set_rng_state(self, state: object) -> None:
        self.rng.setstate(state)  # type: ignore[arg-type]

    def logprobs(self, prompts: list[list[int]], responses: list[list[int]]) -> list[list[float]]:
        """Teacher-forced response log-probs under the current weights (for sync checks). Under
        ZeRO-3 the forward gathers each layer (a collective): every rank must call it alike."""
        from spiral_games.logprobs import response_logprobs

        self.engine.eval()
        return response_logprobs(self.model, prompts, responses, self.pad_id)

    def probe_scores(
        self, prompt: list[int], response: list[int]
    ) -> tuple[list[float], list[float]]:
        """The learner's own forward pass on one sequence, in its training precision (bf16
        autocast where it trains so): each response token's log-prob and the top log-prob at
        its position, for the start-up agreement check. A collective under ZeRO-3, like
        `logprobs`."""
        from spiral_games.logprobs import response_scores

        self.engine.eval()
        with self._autocast():
            return response_scores(self.engine, prompt, response)


def _gathered(params: Sequence[torch.Tensor]) -> AbstractContextManager[object]:
    """ZeRO-3 parameters made whole on every rank inside the context, read-only (a collective:
    every rank enters it with the same parameters); a no-op for parameters ZeRO-3 does not own."""
    from deepspeed.runtime.zero.partition_parameters import GatheredParameters

    return GatheredParameters(params, modifier_rank=None)


def _full_shape(t: torch.Tensor) -> tuple[int, ...]:
    """A tensor's shape; a partitioned ZeRO-3 parameter's `.shape` is (0,), its own `ds_shape`."""
    return tuple(getattr(t, "ds_shape", t.shape))


def _is_choice(sample: Sample) -> bool:
    return bool(sample.choice_ids) and len(sample.response_ids) == 1


def _micro_batches(mini: list[Sample], size: int) -> list[list[Sample]]:
    """`mini` in micro-batches of at most `size` forward rows: masked choices made at the same
    prompt share a row (`Learner._choice_loss`), so they go to the same micro-batch; other
    samples take a row each. Deterministic in `mini`'s order, like the shuffle before it."""
    groups: dict[tuple[tuple[int, ...], tuple[int, ...]], list[Sample]] = {}
    for s in mini:
        if _is_choice(s):
            groups.setdefault(_choice_key(s), []).append(s)
    chunks = _chunks(list(groups.values()), size)
    shared = [[s for group in chunk for s in group] for chunk in chunks]
    return shared + _chunks([s for s in mini if not _is_choice(s)], size)


def _choice_key(sample: Sample) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Masked choices with one key are made at the same prompt among the same tokens."""
    return tuple(sample.prompt_ids), tuple(sample.choice_ids)


def _chunks(items: list[Any], size: int) -> list[list[Any]]:
    """`items` in consecutive pieces of `size` (the last may be shorter)."""
    return [items[lo : lo + size] for lo in range(0, len(items), size)]
