"""Training only the top decoder layers (learner.train_layers): what stays frozen, what moves,
what the checkpoint holds, and the configs it refuses."""

from __future__ import annotations

import pytest
import torch

from spiral_games.errors import ConfigError
from spiral_games.learn.learner import Learner

from ..tiny_run import tiny_config
from .test_learner import batch, spec

pytestmark = pytest.mark.slow  # a DeepSpeed learner


def snapshot(learner: Learner) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in learner.model.named_parameters()}


def test_only_the_top_layer_and_the_final_norm_move(tiny):
    learner = Learner(spec(tiny, "learner.train_layers=1", "learner.bf16=false"))
    before = snapshot(learner)
    metrics = learner.update(batch())
    assert metrics["train/loss"] == metrics["train/loss"]  # a number, not NaN
    after = snapshot(learner)
    moved = {name for name in before if not torch.equal(before[name], after[name])}
    # the 2-layer tiny model: layer 1 and the final norm train; the embeddings (the head is
    # tied to them) and layer 0 keep their exact values
    assert moved, "nothing trained"
    assert all(name.startswith(("model.layers.1.", "model.norm.")) for name in moved), moved
    assert any(name.startswith("model.layers.1.") for name in moved)
    frozen = [name for name in before if name.startswith(("model.layers.0.", "model.embed"))]
    assert frozen and not set(frozen) & moved
    # the optimizer holds the trained weights only, and no frozen weight got a gradient
    held = sum(p.numel() for group in learner.optimizer.param_groups for p in group["params"])
    trainable = sum(p.numel() for p in learner.model.parameters() if p.requires_grad)
    assert held == trainable < sum(p.numel() for p in learner.model.parameters())
    assert all(p.grad is None for p in learner.model.parameters() if not p.requires_grad)


def test_a_partly_trained_model_still_pushes_and_saves_every_weight(tiny, tmp_path):
    whole = Learner(spec(tiny, "learner.bf16=false"))
    part = Learner(spec(tiny, "learner.train_layers=1", "learner.bf16=false"))
    assert part.weight_shapes() == whole.weight_shapes()
    part.update(batch())
    part.save(tmp_path / "ckpt")
    from safetensors.torch import load_file

    saved = load_file(str(tmp_path / "ckpt" / "model.safetensors"))
    assert sorted(saved) == sorted(name for name, _ in whole.weight_shapes())
    live = dict(part.model.named_parameters())
    name = "model.layers.1.mlp.up_proj.weight"
    assert torch.equal(saved[name], live[name])


def test_a_model_with_no_more_layers_than_train_layers_trains_whole(tiny):
    """The CPU recipe's train_layers=10 on the 2-layer tiny model: nothing frozen."""
    learner = Learner(spec(tiny, "learner.train_layers=10"))
    assert all(p.requires_grad for p in learner.model.parameters())


def test_train_layers_refuses_a_negative_count():
    with pytest.raises(ConfigError, match=r"learner\.train_layers=-1 is out of range"):
        tiny_config("learner.train_layers=-1", rollout=False)


def test_with_lora_the_adapters_go_into_the_top_layers_only(tiny):
    learner = Learner(spec(tiny, "learner.train_layers=1", "learner.lora_rank=4"))
    adapted = {n for n, p in learner.model.named_parameters() if p.requires_grad}
    assert adapted and all("lora_" in n and ".layers.1." in n for n in adapted), adapted
