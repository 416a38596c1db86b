"""The words each config choice accepts: one `StrEnum` per choice.

Members are named by the words themselves (`EngineKind.hf == "hf"`): OmegaConf turns a YAML or
command-line string into a member by its name, so `rollout.engine=hf` needs a member named `hf`.
A member is also the string it names, so it prints, compares and serialises as that word.
"""

from __future__ import annotations

from enum import StrEnum


class Switch(StrEnum):
    """A setting the hardware decides unless forced (`learner.bf16`)."""

    auto = "auto"
    true = "true"
    false = "false"


class EngineKind(StrEnum):
    """The inference engine (`rollout.engine`, `league.engine`); a resolved one is vllm or hf."""

    auto = "auto"  # vLLM where it imports and starts, else transformers
    vllm = "vllm"
    hf = "hf"  # transformers


class Dtype(StrEnum):
    """The inference dtype (`model.dtype`); a resolved one is never auto."""

    auto = "auto"
    bfloat16 = "bfloat16"
    float32 = "float32"
    float16 = "float16"


class WeightSync(StrEnum):
    """How new weights reach the engines (`rollout.weight_sync`), as configured."""

    auto = "auto"
    file = "file"
    gloo = "gloo"
    nccl = "nccl"


class SyncBackend(StrEnum):
    """How new weights reach the engines, as resolved: the values are vLLM's backend names."""

    file = "file"  # a safetensors file in /dev/shm, reloaded by every engine
    gloo = "spiral_gloo"  # vLLM's weight-transfer protocol over gloo (our registered engine)
    nccl = "nccl"  # vLLM's NCCL weight-transfer engine


class OpponentMode(StrEnum):
    """The `rollout.opponents` words that name no fixed opponent (any other word names one)."""

    self_play = "self_play"  # the policy in both seats
    league = "league"  # past checkpoints and fixed opponents, drawn by rating


class Batching(StrEnum):
    """How games wait on the engine (`rollout.batching`)."""

    auto = "auto"
    stream = "stream"
    round = "round"


class PromptStyle(StrEnum):
    """How an observation is put to the model (`model.prompt_style`, `games.<g>.prompt_style`)."""

    chat = "chat"
    raw = "raw"
    short = "short"


class ActionFormat(StrEnum):
    """How a reply is read as a move (`model.action_format`, `games.<g>.action_format`)."""

    boxed = "boxed"
    lenient = "lenient"
    choice = "choice"


class InvalidMove(StrEnum):
    """What an invalid move does (`games.<g>.invalid_move`)."""

    penalty = "penalty"  # SPIRAL: the game ends, the offender loses
    retry = "retry"  # TextArena: the offender tries again, up to the allowance


class PolicyLoss(StrEnum):
    """The learner's loss (`learner.loss`): a policy gradient, or imitation's likelihood."""

    ppo = "ppo"
    reinforce = "reinforce"
    sft = "sft"  # the imitation baseline (launch/sft.py): mean NLL per response token


class KeepTurns(StrEnum):
    """Which turns of a demonstration game the imitation baseline trains on (`sft.keep`,
    `games.<g>.sft_keep`)."""

    winner = "winner"  # the expert's turns in the seats that won (and drew, with sft.keep_draws)
    all = "all"  # every turn the expert played


class ContextOverflow(StrEnum):
    """What a prompt beyond the context does (`rollout.on_context_overflow`)."""

    draw = "draw"
    truncate = "truncate"


# What a rollout worker's lost node does (`rollout.on_node_loss`): go on with the other workers,
# or stop. The functional form, since `continue` is a keyword and OmegaConf finds members by name.
NodeLoss = StrEnum("NodeLoss", [("continue", "continue"), ("stop", "stop")])


class PlacementStrategy(StrEnum):
    """Ray's placement-group strategy for the rollout workers (`rollout.placement_strategy`)."""

    PACK = "PACK"
    SPREAD = "SPREAD"
    STRICT_SPREAD = "STRICT_SPREAD"
    STRICT_PACK = "STRICT_PACK"


class WandbMode(StrEnum):
    """Where metrics also go (`train.wandb_mode`)."""

    offline = "offline"
    online = "online"
    disabled = "disabled"


class LeagueSampling(StrEnum):
    """How a league opponent is drawn (`league.sampling`)."""

    pfsp = "pfsp"
    uniform = "uniform"
