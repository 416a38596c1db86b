"""Config composition: the design-card command parses; bad overrides fail with one clear line."""

from __future__ import annotations

import os

import pytest

from spiral_games.compose import compose_run_config
from spiral_games.config import GameConfig, RunConfig
from spiral_games.errors import ConfigError

from .conftest import REPO

CONF = REPO / "conf"


def test_multi_select_games_compose_into_typed_config():
    cfg = compose_run_config(CONF, ["+games=[kuhn,tictactoe]"])
    assert isinstance(cfg, RunConfig)
    assert set(cfg.games) == {"kuhn", "tictactoe"}
    assert all(isinstance(g, GameConfig) for g in cfg.games.values())
    assert cfg.games["kuhn"].env["_target_"] == "games.kuhn.KuhnPokerGame"
    assert cfg.model.name == "smollm2-135m" and cfg.rollout.engine == "auto"
    # the hardware decides these at run time (spiral_games.hardware, tests/test_hardware.py)
    assert (cfg.model.dtype, cfg.learner.bf16, cfg.rollout.cpu_threads) == ("auto", "auto", 0)


@pytest.mark.parametrize(
    ("value", "expected"), [("true", "true"), ("False", "false"), ("auto", "auto")]
)
def test_learner_bf16_takes_booleans_and_auto(value, expected):
    cfg = compose_run_config(CONF, ["+games=[kuhn]", f"learner.bf16={value}"])
    assert cfg.learner.bf16 == expected


def test_overrides_reach_nested_values():
    cfg = compose_run_config(
        CONF, ["+games=[kuhn]", "games.kuhn.env.num_rounds=3", "model=tiny-random", "seed=5"]
    )
    assert cfg.games["kuhn"].env["num_rounds"] == 3
    assert cfg.model.name == "tiny-random" and cfg.seed == 5


BAD = [
    (["+games=[kuhn]", "rollout.bogus=1"], "Unknown config key 'bogus' in rollout. Valid keys:"),
    (["+games=[kuhn]", "games.kuhn.foo=1"], "Valid keys: env, opponents, weight"),
    (["+games=[kuhn]", "bogus=1"], "in the root. Valid keys: model, games"),
    (["+games=[chess]"], "Unknown games option 'chess'. Available in conf/games/"),
    (["+games=[kuhn]", "model=nope"], "Unknown model option 'nope'"),
    ([], "No game selected"),
    (["+games=[kuhn]", "learner.batch_size=-1"], "learner.batch_size=-1 is out of range"),
    (["+games=[kuhn]", "learner.batch_size=abc"], "Bad value for learner.batch_size"),
    (["+games=[kuhn]", "learner.minibatch_size=3"], "not divisible"),
    (["+games=[kuhn]", "rollout.engine=trt"], "rollout.engine='trt' is not valid"),
    (["+games=[kuhn]", "rollout.max_tokens=4096"], "leaves no room for the prompt"),
    (["+games=[kuhn]", "rollout.num_workers=0"], "rollout.num_workers=0 is out of range"),
    (["+games=[kuhn]", "rollout.top_p=1.5"], "rollout.top_p=1.5"),
    (["+games=[kuhn]", "model.dtype=int8"], "model.dtype='int8' is not valid"),
    (["+games=[kuhn]", "games.kuhn.prompt_style=fancy"], "prompt_style='fancy'"),
    (["+games=[kuhn]", "games.kuhn.invalid_move=ignore"], "invalid_move='ignore'"),
    (["+games=[kuhn]", "learner.zero_stage=4"], "learner.zero_stage='4' is not valid"),
    (["+games=[kuhn]", "games.kuhn.action_format=loose"], "action_format='loose' is not valid"),
    (["+games=[kuhn]", "rollout.on_node_loss=retry"], "rollout.on_node_loss='retry' is not valid"),
    (["+games=[kuhn]", "learner.zero_stage=3"], "Use learner.zero_stage=2"),
]


@pytest.mark.parametrize(("overrides", "message"), BAD, ids=[" ".join(b[0]) for b in BAD])
def test_bad_override_gives_one_clear_error(overrides, message, reliability):
    with pytest.raises(ConfigError) as info:
        compose_run_config(CONF, overrides)
    assert message in str(info.value)
    assert "\n" not in str(info.value).strip()
    reliability.update(BAD_CONFIG_RECORD)


BAD_CONFIG_RECORD = {
    "fault": "Bad config or override (unknown key/game/model, type error, out of range, "
    "incompatible combination, missing file, unwritable output dir)",
    "tries": 1,
    "outcome": "one-line ConfigError naming the key and the fix, no traceback",
    "order": 7,
}


def test_cpu_kuhn_experiment_is_the_small_model_recipe_and_takes_overrides():
    cfg = compose_run_config(CONF, ["experiment=cpu_kuhn", "train.rae=false"])
    assert cfg.model.name == "smollm2-135m" and set(cfg.games) == {"kuhn"}
    kuhn = cfg.games["kuhn"]
    assert (kuhn.prompt_style, kuhn.action_format) == ("short", "lenient")
    assert kuhn.env["num_rounds"] == 1
    assert cfg.eval.every > 0 and cfg.eval.opponents == ["random", "expert"]
    assert cfg.train.rae is False  # the ablation is one override away


def test_the_embedded_model_carries_the_small_model_recipe_and_games_can_override_it():
    from spiral_games.config import format_lines

    cfg = compose_run_config(CONF, ["+games=[kuhn,tictactoe]"])
    for game in cfg.games.values():
        assert (game.prompt_style, game.action_format) == ("short", "lenient")
    assert cfg.rollout.max_tokens == cfg.model.max_tokens == 24
    assert any("small-model recipe" in line for line in format_lines(cfg))
    # SPIRAL's exact format is one override away, game by game
    cfg = compose_run_config(
        CONF,
        [
            "+games=[kuhn,tictactoe]",
            "games.kuhn.prompt_style=raw",
            "games.kuhn.action_format=boxed",
        ],
    )
    assert (cfg.games["kuhn"].prompt_style, cfg.games["kuhn"].action_format) == ("raw", "boxed")
    assert cfg.games["tictactoe"].prompt_style == "short"
    assert (
        compose_run_config(CONF, ["+games=[kuhn]", "rollout.max_tokens=64"]).rollout.max_tokens
        == 64
    )


def test_hub_models_keep_spirals_prompt_and_boxed_parsing():
    from spiral_games.config import format_lines

    cfg = compose_run_config(CONF, ["+games=[kuhn,tictactoe]", "model=hub"])
    for game in cfg.games.values():
        assert (game.prompt_style, game.action_format) == ("chat", "boxed")
    assert not any("small-model recipe" in line for line in format_lines(cfg))
    spiral = compose_run_config(CONF, ["experiment=spiral_qwen3_4b"])
    assert {(g.prompt_style, g.action_format) for g in spiral.games.values()} == {("raw", "boxed")}


def test_named_experiment_reproduces_the_spiral_recipe():
    cfg = compose_run_config(CONF, ["experiment=spiral_qwen3_4b"])
    assert cfg.model.name == "Qwen/Qwen3-4B-Base"
    assert set(cfg.games) == {"kuhn", "tictactoe", "negotiation"}
    assert cfg.learner.batch_size == 128 and cfg.learner.lr == 1e-6 and cfg.learner.epochs == 2
    assert cfg.learner.clip == 0.2 and cfg.rollout.temperature == 1.0
    assert cfg.rollout.max_tokens == 4096 and cfg.train.steps == 400
    assert cfg.rollout.num_workers * cfg.rollout.worker_gpus <= 8
    assert cfg.games["kuhn"].env["num_rounds"] == 5  # SPIRAL's five hands; the default is one
    card = compose_run_config(CONF, ["+games=[kuhn,tictactoe]"])
    assert card.games["kuhn"].env["num_rounds"] == 1


def test_evaluation_is_on_by_default_at_both_ends_and_between():
    cfg = compose_run_config(CONF, ["+games=[kuhn,tictactoe]"])
    ev, steps = cfg.eval, cfg.train.steps
    assert ev.enabled and ev.steps(steps)[0] == 0 and ev.steps(steps)[-1] == steps
    assert len(ev.steps(steps)) == ev.points >= 3  # step 0, the end and at least one between
    assert ev.games_for("random") >= 200  # a win rate's standard error <= 0.035
    assert 0 < ev.games_for("expert") <= ev.games_for("random")
    five = compose_run_config(CONF, ["+games=[kuhn]", "eval.points=5"]).eval
    assert five.steps(8) == [0, 2, 4, 6, 8] and five.steps(2) == [0, 1, 2]
    every = compose_run_config(CONF, ["+games=[kuhn]", "eval.every=4", "train.steps=10"]).eval
    assert every.steps(10) == [0, 4, 8, 10]
    small = compose_run_config(CONF, ["+games=[kuhn]", "eval.games=10"]).eval
    assert small.games_for("expert") == small.games_for("random") == 10  # the cap is an upper bound
    off = compose_run_config(CONF, ["+games=[kuhn]", "eval.points=0"]).eval
    assert not off.enabled and off.steps(10) == []


MORE_BAD = [
    (["+games=[kuhn]", "seed=abc"], "Bad value for seed"),
    (["+games=[kuhn]", "rollout.temperature=-1"], "rollout.temperature=-1"),
    (["+games=[kuhn]", "rollout.concurrent_games=0"], "rollout.concurrent_games=0"),
    (["+games=[kuhn]", "rollout.episodes_per_step=0"], "rollout.episodes_per_step=0"),
    (["+games=[kuhn]", "rollout.placement_strategy=RANDOM"], "placement_strategy='RANDOM'"),
    (["+games=[kuhn]", "rollout.worker_gpus=-1"], "rollout.worker_gpus=-1"),
    (["+games=[kuhn]", "learner.lr=0"], "learner.lr=0"),
    (["+games=[kuhn]", "learner.micro_batch_size=3"], "micro_batch_size=3"),
    (["+games=[kuhn]", "learner.loss=a2c"], "learner.loss='a2c'"),
    (["+games=[kuhn]", "learner.kl_coef=-0.1"], "learner.kl_coef=-0.1"),
    (["+games=[kuhn]", "learner.bf16=maybe"], "learner.bf16='maybe' is not valid"),
    (["+games=[kuhn]", "model.dtype=fp8"], "model.dtype='fp8' is not valid"),
    (["+games=[kuhn]", "model.prompt_style=poem"], "model.prompt_style='poem' is not valid"),
    (["+games=[kuhn]", "model.max_tokens=0"], "model.max_tokens=0 is out of range"),
    (["+games=[kuhn]", "model.max_tokens=4096"], "max_tokens=4096 leaves no room"),
    (["+games=[kuhn]", "rollout.cpu_threads=-1"], "rollout.cpu_threads=-1 is out of range"),
    (["+games=[kuhn]", "train.steps=0"], "train.steps=0"),
    (["+games=[kuhn]", "train.rae_decay=1.5"], "train.rae_decay=1.5"),
    (["+games=[kuhn]", "train.gamma=0"], "train.gamma=0"),
    (["+games=[kuhn]", "train.wandb_mode=cloud"], "train.wandb_mode='cloud'"),
    (["+games=[kuhn]", "eval.games=0"], "eval.games=0"),
    (["+games=[kuhn]", "eval.top_p=0"], "eval.top_p=0"),
    (["+games=[kuhn]", "eval.points=1"], "eval.points=1 cannot hold both ends"),
    (["+games=[kuhn]", "eval.concurrency=0"], "eval.concurrency=0"),
    (["+games=[kuhn]", "eval.games_cap.expert=0"], "eval.games_cap.expert=0"),
    (["+games=[kuhn]", "ray.num_cpus=0"], "ray.num_cpus=0"),
    (["+games=[kuhn]", "games.kuhn.weight=0"], "weight=0"),
    (["+games=[kuhn]", "games.kuhn.env._target_=os.system"], None),  # fails when built
    (["+games=[kuhn]", "rollout.max_worker_failures=-1"], "max_worker_failures=-1"),
    (["+games=[kuhn]", "experiment=nope"], "Unknown experiment option 'nope'"),
    (
        ["+games=[kuhn]", "rollout.engine=hf", "rollout.sleep_when_training=true"],
        "need rollout.engine=vllm",
    ),
    (
        ["+games=[kuhn]", "rollout.engine=hf", "rollout.tensor_parallel_size=2"],
        "need rollout.engine=vllm",
    ),
    (
        ["+games=[kuhn]", "rollout.worker_gpus=1", "rollout.tensor_parallel_size=2"],
        "one GPU per tensor-parallel rank",
    ),
]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [b for b in MORE_BAD if b[1]],
    ids=[" ".join(b[0]) for b in MORE_BAD if b[1]],
)
def test_more_bad_overrides_name_the_key(overrides, message, reliability):
    with pytest.raises(ConfigError) as info:
        compose_run_config(CONF, overrides)
    assert message in str(info.value)
    reliability.update(BAD_CONFIG_RECORD)


def test_untrusted_target_and_missing_model_dir_and_unwritable_output(tmp_path, reliability):
    from spiral_games.errors import ModelError
    from spiral_games.models import resolve_model
    from spiral_games.registry import build_rules
    from spiral_games.trainer import train

    cfg = compose_run_config(CONF, ["+games=[kuhn]", "games.kuhn.env._target_=os.system"])
    with pytest.raises(ConfigError, match="not allowed"):
        build_rules("kuhn", cfg.games["kuhn"])
    with pytest.raises(ModelError, match="does not exist"):
        resolve_model(str(tmp_path / "no-such-checkpoint"))
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    cfg = compose_run_config(CONF, ["+games=[kuhn]", f"output_dir={locked}/run"])
    if os.geteuid() == 0:  # root writes anywhere; use a path below a regular file instead
        (tmp_path / "file").write_text("x")
        cfg = compose_run_config(CONF, ["+games=[kuhn]", f"output_dir={tmp_path}/file/run"])
    with pytest.raises(ConfigError, match="is not writable"):
        train(cfg)
    reliability.update({**BAD_CONFIG_RECORD, "tries": 3})
