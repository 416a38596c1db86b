"""Data-parallel learner ranks on Ray (gloo on the CPU) match a single rank's update."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from spiral_games.actors.learner_group import LearnerGroup
from spiral_games.config.compose import compose_run_config
from spiral_games.learn.learner import Learner, LearnerSpec
from spiral_games.types import Sample, TrainBatch

from ..conftest import REPO
from ..tiny_run import tiny_config

# every test here starts Ray, vLLM, a DeepSpeed learner or a subprocess: not the fast lane
pytestmark = pytest.mark.slow


@pytest.fixture
def local_ray():
    import ray

    from spiral_games.actors.runtime import init_ray
    from spiral_games.config.schema import RayConfig

    init_ray(RayConfig(num_cpus=2))
    yield
    ray.shutdown()


def test_two_ranks_make_the_same_update_as_one(tiny, local_ray):
    spec = _zero_spec(tiny, 0)
    samples = tuple(
        Sample((1, 2, 3, i + 4), (10 + i, 20 + i), (-10.8, -10.8), adv, "kuhn", 0, 0)
        for i, adv in enumerate((1.0, -1.0, 0.5, 2.0))
    )
    batch = TrainBatch(samples, step=0)
    probe = ([[1, 2, 3]], [[4, 5, 6]])

    group = LearnerGroup(spec)
    try:
        before = group.logprobs(*probe)
        metrics = group.update(batch)
        assert metrics["train/optimizer_steps"] == 1.0
        first, second = group.checksums()
        assert first == pytest.approx(second, rel=1e-9)  # ranks stay in sync
        grouped = group.logprobs(*probe)
    finally:
        group.shutdown()
    single = Learner(spec)
    single.update(batch)
    alone = single.logprobs(*probe)
    assert grouped != before
    assert grouped[0] == pytest.approx(alone[0], abs=1e-4)


def test_minibatch_must_split_into_whole_micro_batches_per_rank():
    from spiral_games.errors import ConfigError

    with pytest.raises(ConfigError, match="Every rank needs whole micro batches"):
        compose_run_config(REPO / "conf", ["+games=[kuhn]", "learner.num_ranks=3"])


def test_training_with_two_learner_ranks_checkpoints_every_rank(tiny, tmp_path, local_ray):
    from spiral_games.run.trainer import train

    cfg = tiny_config(
        "train.steps=1",
        "train.wandb_mode=disabled",
        "eval.points=0",  # and no ray.num_cpus: local_ray has started Ray
        "learner.num_ranks=2",
        "learner.cpus_per_rank=0.5",
        "learner.micro_batch_size=2",
        output_dir=tmp_path,
        trainer=False,
    )
    train(cfg)
    ckpt = tmp_path / "checkpoints" / "step_000001"
    assert (ckpt / "optimizer.pt").is_file() and (ckpt / "optimizer_rank1.pt").is_file()
    assert (ckpt / "model.safetensors").is_file()


def _zero_spec(tiny, stage: int) -> LearnerSpec:
    cfg = tiny_config(
        "learner.lr=1e-2",
        "learner.bf16=false",
        "learner.batch_size=4",
        "learner.minibatch_size=4",
        "learner.micro_batch_size=1",
        "learner.num_ranks=2",
        f"learner.zero_stage={stage}",
        rollout=False,
        trainer=False,
    )
    return LearnerSpec.from_run(cfg, tiny.path)


def _batches() -> list[TrainBatch]:
    return [
        TrainBatch(
            tuple(
                Sample((1, 2, 3, i + step), (10 + i, 20 + step), (-10.8, -10.8), adv, "kuhn", 0, 0)
                for i, adv in enumerate((1.0, -1.0, 0.5, 2.0))
            ),
            step=step,
        )
        for step in range(3)
    ]


def test_zero3_ranks_match_zero0_and_resume_from_a_checkpoint_exactly(tiny, tmp_path, local_ray):
    """Two gloo ranks, ZeRO-3 (tiny-random's embedding, above DeepSpeed's persistence threshold,
    is split between them) against ZeRO-0: 3 updates, a checkpoint after the second."""
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from ..learn.test_learner import assert_same_training

    batches, probe = _batches(), ([[1, 2, 3]], [[4, 5, 6]])
    runs: dict[int, dict] = {}
    for stage in (3, 0):
        group = LearnerGroup(_zero_spec(tiny, stage))
        try:
            norm = group.update(batches[0])["train/grad_norm"]
            group.update(batches[1])
            group.save(tmp_path / f"zero{stage}")
            rng = group.rng_state()
            group.update(batches[2])
            weights = load_file(str(group.export_weights(tmp_path / f"w{stage}.safetensors")))
            first, second = group.checksums()  # every rank takes part in the gathers
            runs[stage] = {"norm": norm, "rng": rng, "weights": weights, "sums": (first, second)}
            runs[stage]["logprobs"] = group.logprobs(*probe)
        finally:
            group.shutdown()
    zero3, zero0 = runs[3], runs[0]
    assert zero3["sums"][0] == pytest.approx(zero3["sums"][1], rel=1e-12)
    assert zero3["logprobs"][0] == pytest.approx(zero0["logprobs"][0], abs=1e-4)
    # sorted: a file gives its tensors back in no set order (the stream's is pinned in
    # tests/learn/test_learner.py)
    assert_same_training(
        dict(sorted(zero3["weights"].items())), dict(sorted(zero0["weights"].items())), lr=1e-2
    )
    saved3, saved0 = (load_file(str(tmp_path / f"zero{s}" / "model.safetensors")) for s in (3, 0))
    assert_same_training(dict(sorted(saved3.items())), dict(sorted(saved0.items())), lr=1e-2)
    loaded = AutoModelForCausalLM.from_pretrained(str(tmp_path / "zero3")).state_dict()
    assert all(torch.equal(loaded[name], t) for name, t in saved3.items())
    # ZeRO-3's norm is the global one (ZeRO-0 reports rank-local norms): one rank on the whole
    # minibatch gets the same
    single = Learner(_zero_spec(tiny, 0))  # in this process: a world of one
    assert zero3["norm"] == pytest.approx(single.update(batches[0])["train/grad_norm"], rel=1e-5)

    resumed_spec = dataclasses.replace(_zero_spec(tiny, 3), model_path=str(tmp_path / "zero3"))
    group = LearnerGroup(resumed_spec)
    try:
        group.load_optimizer(tmp_path / "zero3")
        group.set_rng_state(zero3["rng"])
        group.update(batches[2])
        resumed = load_file(str(group.export_weights(tmp_path / "resumed.safetensors")))
    finally:
        group.shutdown()
    assert resumed.keys() == zero3["weights"].keys()
    assert all(torch.equal(t, zero3["weights"][name]) for name, t in resumed.items())
