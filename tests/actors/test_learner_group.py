"""Data-parallel learner ranks on Ray (gloo on the CPU) match a single rank's update."""

from __future__ import annotations

import pytest

from spiral_games.actors.learner_group import LearnerGroup
from spiral_games.config.compose import compose_run_config
from spiral_games.config.schema import LearnerConfig
from spiral_games.learn.learner import Learner, LearnerSpec
from spiral_games.types import Sample, TrainBatch

from ..conftest import REPO


@pytest.fixture
def local_ray():
    import ray

    from spiral_games.actors.runtime import init_ray
    from spiral_games.config.schema import RayConfig

    init_ray(RayConfig(num_cpus=2))
    yield
    ray.shutdown()


def test_two_ranks_make_the_same_update_as_one(tiny, local_ray):
    overrides = [
        "+games=[kuhn]",
        "model=tiny-random",
        "learner.lr=1e-2",
        "learner.bf16=false",
        "learner.batch_size=4",
        "learner.minibatch_size=4",
        "learner.micro_batch_size=1",
        "learner.num_ranks=2",
    ]
    spec = LearnerSpec.from_run(compose_run_config(REPO / "conf", overrides), tiny.path)
    samples = tuple(
        Sample((1, 2, 3, i + 4), (10 + i, 20 + i), (-10.8, -10.8), adv, "kuhn", 0, 0)
        for i, adv in enumerate((1.0, -1.0, 0.5, 2.0))
    )
    batch = TrainBatch(samples, step=0)
    probe = ([[1, 2, 3]], [[4, 5, 6]])

    group = LearnerGroup(spec, LearnerConfig(num_ranks=2))
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

    cfg = compose_run_config(
        REPO / "conf",
        [
            "+games=[kuhn]",
            "model=tiny-random",
            "rollout.engine=hf",
            "rollout.max_tokens=16",
            "train.steps=1",
            "train.wandb_mode=disabled",
            "eval.points=0",
            "learner.num_ranks=2",
            "learner.cpus_per_rank=0.5",
            "learner.micro_batch_size=2",
            f"output_dir={tmp_path}",
        ],
    )
    train(cfg)
    ckpt = tmp_path / "checkpoints" / "step_000001"
    assert (ckpt / "optimizer.pt").is_file() and (ckpt / "optimizer_rank1.pt").is_file()
    assert (ckpt / "model.safetensors").is_file()
