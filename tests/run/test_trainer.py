"""The learning loop end to end on the CPU: real Ray, vLLM, DeepSpeed and a tiny model."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from spiral_games.config.schema import RolloutConfig
from spiral_games.learn.advantage import RoleBaselines
from spiral_games.learn.learner import Learner, LearnerSpec
from spiral_games.types import Sample, TrainBatch

from ..conftest import REPO
from ..tiny_run import tiny_config

# every test here starts Ray, vLLM, a DeepSpeed learner or a subprocess: not the fast lane
pytestmark = pytest.mark.slow

TINY = [
    "rollout.max_tokens=24",
    "rollout.episodes_per_step=8",
    "rollout.concurrent_games=8",
    "learner.batch_size=8",
    "learner.minibatch_size=4",
    "learner.micro_batch_size=4",
    "learner.lr=1e-3",
]


def run_cfg(tmp_path, *extra):
    """A tiny training run on both games; rollout.engine is left to the caller."""
    return tiny_config(*TINY, *extra, games="kuhn,tictactoe", output_dir=tmp_path, rollout=False)


@pytest.fixture
def ray_shutdown():
    yield
    import ray

    ray.shutdown()


def read_metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.vllm
def test_two_steps_with_vllm_and_deepspeed_learn_push_and_checkpoint(tiny, tmp_path, ray_shutdown):
    pytest.importorskip("vllm")
    from transformers import AutoModelForCausalLM

    from spiral_games.run.trainer import train

    run_dir = train(
        run_cfg(
            tmp_path,
            "rollout.engine=vllm",
            "model.dtype=float32",
            "train.steps=2",
            "train.transcripts_per_step=100",
        )
    )
    metrics = read_metrics(run_dir)
    assert [m["step"] for m in metrics] == [1, 2]
    assert [m["sync/version"] for m in metrics] == [1.0, 2.0]
    runtime = json.loads((run_dir / "config.json").read_text())["runtime"]
    assert runtime["engine"] == "vllm" and runtime["dtype"] == "float32"  # explicit: honoured
    for m in metrics:
        assert m["train/grad_norm"] > 0 and m["train/tokens"] > 0
        assert m["train/samples"] == m["rollout/samples"] >= 8  # every collected sample trained
        assert 0 <= m["rollout/invalid_move_rate"] <= 1
        assert any(k.startswith("rae/kuhn/") or k.startswith("rae/tictactoe/") for k in m)
    versions = {
        json.loads(line)["version"]
        for line in (run_dir / "transcripts" / "step_000002.jsonl").read_text().splitlines()
    }
    assert versions == {1}  # step 2 was played with the weights pushed after step 1

    ckpt = run_dir / "checkpoints" / "step_000002"
    before, after = (
        load_file(str(tiny.path / "model.safetensors")),
        load_file(str(ckpt / "model.safetensors")),
    )
    assert any(not torch.equal(before[k], after[k]) for k in before)
    reloaded = AutoModelForCausalLM.from_pretrained(str(ckpt))
    assert type(reloaded).__name__ == "LlamaForCausalLM"


@pytest.mark.vllm
def test_a_vllm_run_resumes_and_pushes_its_checkpoint_over_gloo(tiny, tmp_path, ray_shutdown):
    """The resumed run streams the checkpoint's weights (spiral_gloo) before it plays again."""
    pytest.importorskip("vllm")
    import ray

    from spiral_games.run.trainer import train

    common = ["rollout.engine=vllm", "train.checkpoint_every=1", "train.transcripts_per_step=100"]
    train(run_cfg(tmp_path, *common, "train.steps=1"))
    ray.shutdown()
    run_dir = train(run_cfg(tmp_path, *common, "train.steps=2", "train.resume=true"))
    runtime = json.loads((run_dir / "config.json").read_text())["runtime"]
    assert runtime["weight_sync"] == "spiral_gloo"
    assert [m["sync/version"] for m in read_metrics(run_dir)] == [1.0, 2.0]
    rows = (run_dir / "transcripts" / "step_000002.jsonl").read_text().splitlines()
    assert {json.loads(row)["version"] for row in rows} == {1}  # the checkpoint's weights


@pytest.mark.vllm
def test_one_step_off_policy_overlaps_bounds_staleness_and_resumes(tiny, tmp_path, ray_shutdown):
    """train.max_staleness=1 on vLLM (streamed games, gloo pushes): the workers play step t+1's
    games while the learner updates on step t's, no trained sample is more than one version
    behind the learner, and a resume loses only the batch that was in flight."""
    pytest.importorskip("vllm")
    import ray

    from spiral_games.run.trainer import train

    common = [
        "rollout.engine=vllm",
        "train.max_staleness=1",
        "train.checkpoint_every=1",
        "train.transcripts_per_step=100",
    ]
    run_dir = train(run_cfg(tmp_path, *common, "train.steps=2"))
    runtime = json.loads((run_dir / "config.json").read_text())["runtime"]
    assert runtime["overlap"] and runtime["rollout_threads"] == runtime["learner_threads"]
    ray.shutdown()
    train(run_cfg(tmp_path, *common, "train.steps=3", "train.resume=true"))
    metrics = read_metrics(run_dir)
    assert [m["step"] for m in metrics] == [1, 2, 3]
    first, second, third = metrics
    # step 1 starts synchronously (version 0 = the learner's); step 2 trains on games played
    # during update 1, by version 0; step 3 (resumed) starts synchronously again
    assert first["rollout/staleness_0"] == first["train/samples"]
    assert first["train/staleness_max"] == 0
    assert second["rollout/staleness_1"] == second["train/samples"]
    assert second["train/staleness_max"] == 1
    assert third["train/staleness_max"] == 0
    for m in metrics:
        assert m["rollout/dropped_samples"] == 0 and m["train/staleness_max"] <= 1
        assert m["train/tis_weight"] > 0  # the decoupled objective, k > 0's default
    assert 0 <= first["overlap/hidden_share"] <= 1 and first["overlap/collect_seconds"] > 0
    assert "overlap/hidden_share" not in third  # the last step launches nothing ahead
    rows = (run_dir / "transcripts" / "step_000002.jsonl").read_text().splitlines()
    turn_versions = {t["version"] for row in map(json.loads, rows) for t in row["turns"]}
    assert turn_versions == {0}  # played while update 1 ran


@pytest.mark.vllm
def test_collocated_sleep_mode_trains_and_pushes_every_step(tmp_path, ray_shutdown):
    """rollout.sleep_when_training=true (SPIRAL's collocated mode): the workers sleep during
    each update (a no-op on CPU, where vLLM has no sleep mode) and get the new weights after
    every update, whatever train.push_every says."""
    pytest.importorskip("vllm")
    from spiral_games.run.trainer import train

    run_dir = train(
        run_cfg(
            tmp_path,
            "rollout.engine=vllm",
            "rollout.sleep_when_training=true",
            "train.push_every=2",
            "train.steps=2",
        )
    )
    metrics = read_metrics(run_dir)
    assert [m["sync/version"] for m in metrics] == [1.0, 2.0]
    assert all(m["train/samples"] == m["rollout/samples"] >= 8 for m in metrics)
    rows = (run_dir / "transcripts" / "step_000002.jsonl").read_text().splitlines()
    assert {json.loads(row)["version"] for row in rows} == {1}


@pytest.mark.parametrize("engine", ["hf", pytest.param("vllm", marks=pytest.mark.vllm)])
def test_actor_logprobs_equal_learner_logprobs_after_a_push(engine, tiny, tmp_path, ray_shutdown):
    if engine == "vllm":
        pytest.importorskip("vllm")
    from spiral_games.actors.rollout_pool import RolloutPool
    from spiral_games.actors.rollout_worker import WorkerConfig
    from spiral_games.actors.runtime import init_ray

    cfg = run_cfg(
        tmp_path,
        f"rollout.engine={engine}",
        "model.dtype=float32",
        "learner.bf16=false",
        "rollout.num_workers=2",
    )
    learner = Learner(LearnerSpec.from_run(cfg, tiny.path))
    init_ray(cfg.ray)
    pool = RolloutPool(
        WorkerConfig.from_run(cfg, tiny.path), RolloutConfig(num_workers=2, worker_cpus=1)
    )
    try:
        prompts, responses = [[1, 50, 60, 70], [5, 6]], [[80, 90, 100], [7, 8, 9, 10]]
        samples = tuple(
            Sample(tuple(p), tuple(r), tuple([-10.0] * len(r)), adv, "kuhn", 0, 0)
            for p, r, adv in zip(prompts, responses, (1.0, -1.0), strict=True)
        )
        initial = learner.logprobs(prompts, responses)
        learner.update(TrainBatch(samples + samples, step=0))
        updated = learner.logprobs(prompts, responses)
        assert updated != initial
        path = learner.export_weights(tmp_path / "push" / "weights.safetensors")
        assert pool.push_weights(str(path), version=1) == [1, 1]
        for actor_scores in pool.score(prompts, responses):
            for actor, mine in zip(actor_scores, updated, strict=True):
                assert actor == pytest.approx(mine, abs=2e-3)
    finally:
        pool.shutdown()


def test_resume_continues_step_counter_and_rae_baselines_exactly(tiny, tmp_path, ray_shutdown):
    from spiral_games.run.trainer import train

    common = ["rollout.engine=hf", "train.checkpoint_every=1", "train.transcripts_per_step=1000"]
    train(
        run_cfg(
            tmp_path,
            *common,
            "train.steps=2",
            "eval.every=1",
            "eval.games=2",
            "train.wandb_mode=offline",
            "games.kuhn.analyses.exploitability.samples=2",
            "games.tictactoe.analyses.move_quality.games=2",
            "games.tictactoe.analyses.move_quality.positions=4",
        )
    )
    assert [m["step"] for m in read_metrics(tmp_path)] == [0, 1, 2]  # step 0: the baseline eval
    from spiral_games.config.hardware import this_machine

    record = json.loads((tmp_path / "config.json").read_text())  # the choices, saved
    assert record["learner"]["bf16"] == "auto" and record["rollout"]["cpu_threads"] == 0
    runtime = record["runtime"]
    assert runtime["hardware"]["isa"] == this_machine().isa and runtime["engine"] == "hf"
    machine = this_machine()  # bf16 on a GPU or a CPU with native bf16 (head in fp32), else fp32
    assert runtime["learner_bf16"] == (machine.gpus > 0 or machine.native_bf16)
    assert runtime["rollout_threads"] == runtime["learner_threads"] == this_machine().cores
    for m in read_metrics(tmp_path):  # every (game, opponent) is evaluated at every step
        for game in ("kuhn", "tictactoe"):
            for opponent in ("random", "expert"):
                assert 0 <= m[f"eval/{game}/{opponent}/win_rate"] <= 1
                assert m[f"eval/{game}/{opponent}/seat0/win_rate"] is not None
        # conf/games/kuhn.yaml's analysis: exact exploitability of the evaluated policy
        assert 0 <= m["eval/kuhn/exploitability"] <= 2 and m["eval/kuhn/exploitability_se"] >= 0
        assert 0 <= m["eval/kuhn/invalid_share"] <= 1
        # conf/games/tictactoe.yaml's: moves that keep the minimax value, losses to minimax
        for key in ("optimal_move_rate", "optimal_move_rate_fixed", "loss_rate_minimax"):
            assert 0 <= m[f"eval/tictactoe/{key}"] <= 1 and m[f"eval/tictactoe/{key}_se"] >= 0
        # reference lines: random and expert in the model's place, same games, same analyses
        for player in ("random", "expert"):
            for game in ("kuhn", "tictactoe"):
                for opponent in ("random", "expert"):
                    key = f"{game}/{opponent}/games"
                    assert m[f"ref/{player}/{key}"] == m[f"eval/{key}"] == 2
            assert 0 <= m[f"ref/{player}/tictactoe/optimal_move_rate_fixed"] <= 1
        assert m["ref/random/kuhn/exploitability"] == pytest.approx(11 / 24, abs=1e-12)
        assert m["ref/expert/kuhn/exploitability"] == pytest.approx(0.0, abs=1e-12)
    assert (tmp_path / "eval" / "step_000002.jsonl").is_file()
    assert list((tmp_path / "wandb").glob("offline-run-*"))
    # every run ends with its report: the before/after table with standard errors, and curves
    summary = json.loads((tmp_path / "summary.json").read_text())
    changes = {(c["game"], c["opponent"], c["metric"]): c for c in summary["changes"]}
    last = read_metrics(tmp_path)[-1]
    for game in ("kuhn", "tictactoe"):
        for opponent in ("random", "expert"):
            for metric in ("win_rate", "draw_rate", "loss_rate", "invalid_rate"):
                c = changes[(game, opponent, metric)]
                assert (c["before_step"], c["after_step"]) == (0, 2)
                after = last[f"eval/{game}/{opponent}/{metric}"]
                assert c["after"] == after
                assert c["after_se"] == pytest.approx((after * (1 - after) / 2) ** 0.5)
            assert (game, opponent, "response_length") in changes
    text = (tmp_path / "summary.md").read_text()
    assert ("kuhn", "exact", "exploitability") in changes
    assert ("tictactoe", "exact", "optimal_move_rate") in changes
    assert "| kuhn | random | win |" in text and "| step 0 | step 2 |" in text
    assert "| random | expert | vs random (in SEs) |" in text  # the reference columns
    png = (tmp_path / "curves.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    import ray

    ray.shutdown()
    train(run_cfg(tmp_path, *common, "train.steps=3", "train.resume=true"))
    assert [m["step"] for m in read_metrics(tmp_path)] == [0, 1, 2, 3]

    ckpts = tmp_path / "checkpoints"
    state2 = json.loads((ckpts / "step_000002" / "trainer_state.json").read_text())
    state3 = json.loads((ckpts / "step_000003" / "trainer_state.json").read_text())
    assert state3["step"] == 3 and state3["version"] == 3
    expected = RoleBaselines.from_state_dict(state2["baselines"])
    step3 = (tmp_path / "transcripts" / "step_000003.jsonl").read_text().splitlines()
    for row in map(json.loads, step3):
        for role in row["trained_roles"]:
            expected.advantage(row["game"], role, row["returns"][role])
    assert RoleBaselines.from_state_dict(state3["baselines"]) == expected


BAD = [
    ("+games=[chess]", "Unknown games option 'chess'"),
    ("learner.batch_size=-2", "learner.batch_size=-2 is out of range"),
    ("learner.minibatch_size=3", "not divisible"),
    ("model.name=no-such-model", "Unknown model 'no-such-model'"),
]


@pytest.mark.parametrize(("override", "message"), BAD)
def test_bad_override_is_one_clear_line(override, message):
    games = [] if override.startswith("+games") else ["+games=[kuhn]"]
    out = subprocess.run(
        [sys.executable, "launch/selfplay.py", *games, override],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    lines = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and message in lines[0]
