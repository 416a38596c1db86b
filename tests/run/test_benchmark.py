"""The benchmark entry point runs end to end at a tiny size (a smoke test: no speed asserts)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ..conftest import REPO
from ..tiny_run import tiny_overrides

# every test here starts Ray, vLLM, a DeepSpeed learner or a subprocess: not the fast lane
pytestmark = pytest.mark.slow


def run_benchmark(name, tmp_path, *extra, games=None, rollout=True):
    """launch/benchmark.py `name` on the tiny model (its own default game unless `games`)."""
    overrides = tiny_overrides(
        *extra, games=games, output_dir=tmp_path, rollout=rollout, trainer=False
    )
    out = subprocess.run(
        [sys.executable, "launch/benchmark.py", name, *overrides],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout, json.loads((tmp_path / f"benchmark_{name}.json").read_text())


def test_rollout_benchmark_prints_a_table_and_writes_json(tiny, tmp_path):
    stdout, result = run_benchmark(
        "rollout", tmp_path, "rollout.concurrent_games=4", "rollout.episodes_per_step=8"
    )
    assert "(b) rollout worker" in stdout and "ratio b/a" in stdout
    from spiral_games.config.hardware import this_machine

    assert f"hardware: {this_machine().describe()}" in stdout  # every table names its machine
    assert result["hardware"]["isa"] == this_machine().isa
    assert result["engine"] == result["runtime"]["engine"] == "hf"
    assert result["b_rollout_worker"]["episodes"] == 8
    assert result["a_raw_engine"]["tokens"] > 0 and result["c_naive_hf_loop"]["tokens"] > 0
    assert result["ratio_b_over_a"] > 0
    assert result["d_stream_vs_round"] is None and "(d) stream vs round: n/a" in stdout


@pytest.mark.vllm
def test_rollout_benchmark_compares_streamed_games_with_rounds_on_vllm(tiny, tmp_path):
    pytest.importorskip("vllm")
    stdout, result = run_benchmark(
        "rollout",
        tmp_path,
        "rollout.engine=vllm",
        "rollout.concurrent_games=4",
        "rollout.episodes_per_step=8",
        games="tictactoe",
    )
    d = result["d_stream_vs_round"]
    assert "ratio stream/round" in stdout
    for mode in ("stream", "round"):
        assert d[mode]["tokens"] > 0 and d[mode]["turns_per_game"] >= 1
        assert 0 <= d[mode]["capped_share"] <= 1
    assert d["ratio"] == pytest.approx(d["stream"]["tokens_per_s"] / d["round"]["tokens_per_s"])


def test_unknown_benchmark_prints_usage():
    out = subprocess.run(
        [sys.executable, "launch/benchmark.py", "nonsense"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2 and "usage" in out.stderr


def test_learner_benchmark_compares_deepspeed_with_plain_torch(tiny, tmp_path):
    stdout, result = run_benchmark(
        "learner",
        tmp_path,
        "learner.batch_size=4",
        "learner.minibatch_size=4",
        "learner.micro_batch_size=2",
        "rollout.max_tokens=32",
        rollout=False,
    )
    assert "deepspeed tok/s" in stdout
    for precision in ("fp32", "bf16"):
        row = result["rows"][precision]
        assert row["deepspeed_tokens_per_s"] > 0 and row["torch_tokens_per_s"] > 0


def test_precision_benchmark_measures_fp32_and_bf16_for_engine_and_learner(tiny, tmp_path):
    stdout, result = run_benchmark(
        "precision",
        tmp_path,
        "rollout.max_tokens=8",
        "learner.batch_size=2",
        "learner.minibatch_size=2",
        "learner.micro_batch_size=2",
    )
    assert "generate, batch 32" in stdout and "learner update" in stdout
    assert "model.dtype=auto chose" in stdout and "hardware:" in stdout
    for precision in ("fp32", "bf16"):
        assert all(row["tokens_per_s"] > 0 for row in result["generate"][precision].values())
        assert result["update"][precision]["tokens"] > 0
    assert set(result["bf16_over_fp32"]) == {
        "generate_batch1",
        "generate_batch8",
        "generate_batch32",
        "update",
    }
    assert result["auto_dtype"] == result["runtime"]["dtype"]


@pytest.mark.parametrize(
    ("engine", "backends"),
    [("hf", {"file"}), pytest.param("vllm", {"file", "spiral_gloo"}, marks=pytest.mark.vllm)],
)
def test_sync_benchmark_compares_each_backend_with_an_in_process_copy(
    engine, backends, tiny, tmp_path
):
    stdout, result = run_benchmark(
        "sync", tmp_path, f"rollout.engine={engine}", "ray.num_cpus=2", rollout=False
    )
    assert stdout.count("ratio push/copy") == len(backends)
    assert set(result["backends"]) == backends
    assert result["copy_seconds"] > 0 and result["megabytes"] > 0 and result["workers"] == 1
    for row in result["backends"].values():
        assert row["engine"] == engine
        assert row["push_seconds"] > 0 and row["ratio_push_over_copy"] > 0
    if "spiral_gloo" in backends:
        parts = result["backends"]["spiral_gloo"]["parts"]
        assert set(parts) == {"receive_s", "load_s", "finalize_s"}
        assert all(v >= 0 for v in parts.values())


def test_iteration_benchmark_splits_a_real_step_into_phases(tiny, tmp_path):
    stdout, result = run_benchmark(
        "iteration",
        tmp_path,
        "train.steps=3",
        "eval.games=2",
        "ray.num_cpus=2",
    )
    assert "push + orchestration + logging" in stdout and "step time k=1 / k=0" in stdout
    assert result["steps_measured"] == 1
    runs = result["runs"]
    assert set(runs) == {"k0", "k1"} and result["threads"] == {"rollout": 1, "learner": 1}
    from spiral_games.config.hardware import this_machine

    if this_machine().cores == 2:  # both runs pin the learner beside the rollout worker
        assert (
            runs["k0"]["learner_cpus"] == runs["k1"]["learner_cpus"] == [this_machine().cpu_ids[1]]
        )
    assert runs["k0"]["hidden_share"] is None and 0 <= runs["k1"]["hidden_share"] <= 1
    assert result["ratio_k1_over_k0"] == pytest.approx(
        runs["k1"]["step_seconds"] / runs["k0"]["step_seconds"]
    )
    for run in runs.values():  # the batches differ by chance: compared per trained token
        assert run["seconds_per_1k_tokens"] == pytest.approx(
            1000 * run["step_seconds"] / run["train_tokens"]
        )
    assert result["ratio_per_token_k1_over_k0"] > 0
    assert set(result["shares"]) == {
        "rollout",
        "advantage",
        "update",
        "push",
        "eval",
        "checkpoint",
        "other",
    }
    assert sum(result["shares"].values()) == pytest.approx(1.0)
    assert all(result["seconds"][p] > 0 for p in ("rollout", "update", "checkpoint"))
    assert result["seconds"]["eval"] == 0  # alike in both modes: left out of the comparison
