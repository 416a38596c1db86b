"""Config composition: the design-card command parses; bad overrides fail with one clear line."""

from __future__ import annotations

import dataclasses
import inspect
import os
import typing
from enum import StrEnum
from pathlib import Path
from typing import Any

import pytest
import yaml

from spiral_games.actors.rollout_pool import RolloutPool
from spiral_games.actors.rollout_worker import WorkerConfig
from spiral_games.config.choices import Dtype, EngineKind, InvalidMove, NodeLoss, Switch
from spiral_games.config.compose import compose_run_config
from spiral_games.config.schema import (
    GameConfig,
    LearnerConfig,
    ModelConfig,
    RolloutConfig,
    RunConfig,
)
from spiral_games.errors import ConfigError
from spiral_games.play.registry import build_rules
from spiral_games.types import SamplingParams

from ..conftest import REPO

CONF = REPO / "conf"


def test_multi_select_games_compose_into_typed_config():
    cfg = compose_run_config(CONF, ["+games=[kuhn,tictactoe]"])
    assert isinstance(cfg, RunConfig)
    assert set(cfg.games) == {"kuhn", "tictactoe"}
    assert all(isinstance(g, GameConfig) for g in cfg.games.values())
    assert cfg.games["kuhn"].env["_target_"] == "games.kuhn.KuhnPokerGame"
    assert cfg.model.name == "smollm2-135m" and cfg.rollout.engine == "auto"
    # the hardware decides these at run time (spiral_games.config.hardware, tests/test_hardware.py)
    assert (cfg.model.dtype, cfg.learner.bf16, cfg.rollout.cpu_threads) == ("auto", "auto", 0)


@pytest.mark.parametrize(
    ("value", "expected"), [("true", "true"), ("False", "false"), ("auto", "auto")]
)
def test_learner_bf16_takes_booleans_and_auto(value, expected):
    cfg = compose_run_config(CONF, ["+games=[kuhn]", f"learner.bf16={value}"])
    assert cfg.learner.bf16 == expected


def _choice_fields(cls: type, seen: set[type]) -> list[tuple[str, type[StrEnum]]]:
    """(key, StrEnum) of every choice field under the config dataclass `cls`."""
    seen.add(cls)
    out = []
    for name, hint in typing.get_type_hints(cls).items():
        for kind in (hint, *typing.get_args(hint)):
            if isinstance(kind, type) and issubclass(kind, StrEnum):
                out.append((f"{cls.__name__}.{name}", kind))
            elif dataclasses.is_dataclass(kind) and kind not in seen:
                out += _choice_fields(kind, seen)
    return out


def test_every_choice_is_a_str_enum_whose_members_are_named_by_their_words():
    """OmegaConf turns a word into a member by the member's name, so each name must be its word
    for `rollout.engine=hf` (and every other choice) to compose."""
    from spiral_games.config.schema import HarnessConfig

    fields = _choice_fields(RunConfig, set()) + _choice_fields(HarnessConfig, set())
    keys = {key for key, _ in fields}
    assert {"LearnerConfig.bf16", "RolloutConfig.engine", "RolloutConfig.weight_sync"} <= keys
    assert {"ModelConfig.dtype", "GameConfig.action_format", "GameConfig.invalid_move"} <= keys
    for key, kind in fields:
        assert all(member.name == member.value for member in kind), key


def test_choices_compose_to_their_members_from_the_same_words():
    cfg = compose_run_config(
        CONF,
        [
            "+games=[kuhn]",
            "rollout.engine=hf",
            "rollout.on_node_loss=stop",
            "games.kuhn.invalid_move=retry",
            "model.dtype=float32",
        ],
    )
    assert cfg.rollout.engine is EngineKind.hf and cfg.rollout.on_node_loss is NodeLoss.stop
    assert cfg.games["kuhn"].invalid_move is InvalidMove.retry
    assert cfg.model.dtype is Dtype.float32 and cfg.learner.bf16 is Switch.auto
    assert RolloutConfig(engine="vllm").engine is EngineKind.vllm  # a dataclass built in Python


def test_a_yaml_boolean_where_a_choice_is_expected_names_the_quoting(tmp_path):
    import shutil

    conf = tmp_path / "conf"
    shutil.copytree(CONF, conf)
    (conf / "experiment" / "bool.yaml").write_text("# @package _global_\nlearner:\n  bf16: true\n")
    with pytest.raises(ConfigError) as info:
        compose_run_config(conf, ["+games=[kuhn]", "experiment=bool"])
    assert str(info.value) == (
        "learner.bf16='True' is not valid. Choose one of: auto, true, false. In a YAML file, "
        "quote it: 'true'."
    )


@pytest.mark.parametrize(
    ("overrides", "resume", "output_dir"),
    [
        ([], False, None),
        (["train.resume=true", "output_dir=runs/a"], True, "runs/a"),
        (["train.resume=yes", "output_dir=runs/a"], True, "runs/a"),
        (["train.resume=false"], False, None),
        (["train.resume=runs/b"], True, "runs/b"),  # a run directory: train.resume=true there
        (["train.resume=runs/b", "output_dir=runs/b"], True, "runs/b"),
    ],
)
def test_train_resume_is_a_bool_and_takes_a_run_directory(overrides, resume, output_dir):
    cfg = compose_run_config(CONF, ["+games=[kuhn]", *overrides])
    assert cfg.train.resume is resume
    assert output_dir is None or cfg.output_dir == output_dir


def test_train_resume_of_one_run_with_the_output_dir_of_another_is_one_error():
    with pytest.raises(ConfigError) as info:
        compose_run_config(CONF, ["+games=[kuhn]", "train.resume=runs/b", "output_dir=runs/c"])
    assert str(info.value) == (
        "train.resume=runs/b continues the run in runs/b, and output_dir=runs/c names another. "
        "Drop one: train.resume=runs/b, or train.resume=true output_dir=runs/c."
    )


def test_zero_stage_3_is_accepted_with_and_without_lora():
    for extra in ([], ["learner.lora_rank=4"]):
        cfg = compose_run_config(CONF, ["+games=[kuhn]", "learner.zero_stage=3", *extra])
        assert cfg.learner.zero_stage == 3


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
    (["games=[kuhn]"], "select it with a leading '+', e.g. +games=[kuhn,tictactoe]"),
    (["+games=[kuhn]", "games.kuhn.max_turns=0"], "games.<name>.max_turns=0 is out of range"),
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
    from spiral_games.config.schema import format_lines

    cfg = compose_run_config(CONF, ["+games=[kuhn,tictactoe]"])
    for game in cfg.games.values():  # the card: a masked choice among the legal moves
        assert (game.prompt_style, game.action_format) == ("short", "choice")
    # ... sampled and evaluated at temperature 2 (SmolLM2 is almost pure at 1), with a magnet
    assert cfg.rollout.temperature == cfg.eval.temperature == 2.0
    assert cfg.learner.magnet_coef > 0
    # TicTacToe at 1/8 of the games: about 128 Kuhn hands a step, and the top 10 layers train
    assert cfg.learner.train_layers == 10
    weights = {name: game.weight for name, game in cfg.games.items()}
    kuhn_share = weights["kuhn"] / sum(weights.values())
    assert round(cfg.rollout.episodes_per_step * kuhn_share) == 128
    assert cfg.rollout.max_tokens == cfg.model.max_tokens == 24  # a free-text game's budget
    free = compose_run_config(CONF, ["+games=[kuhn]", "model.action_format=lenient"])
    assert free.games["kuhn"].action_format == "lenient"
    # ... where the recipe's temperature 2 is named at start, with the free-text settings
    warned = [line for line in format_lines(free) if "rollout.temperature=2.0" in line]
    assert len(warned) == 1 and "(kuhn)" in warned[0] and "rollout.temperature=0.7" in warned[0]
    assert not any("rollout.temperature=" in line for line in format_lines(cfg))
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
    from spiral_games.config.schema import format_lines

    cfg = compose_run_config(CONF, ["+games=[kuhn,tictactoe]", "model=hub"])
    for game in cfg.games.values():
        assert (game.prompt_style, game.action_format) == ("chat", "boxed")
    assert not any("small-model recipe" in line for line in format_lines(cfg))
    spiral = compose_run_config(CONF, ["experiment=spiral_qwen3_4b"])
    assert {(g.prompt_style, g.action_format) for g in spiral.games.values()} == {("raw", "boxed")}
    # none of the CPU card's masked-choice settings leak into SPIRAL's recipe
    assert {g.weight for g in spiral.games.values()} == {1.0}
    assert spiral.learner.magnet_coef == 0 and spiral.eval.temperature == 0.6
    assert spiral.learner.magnet_coef_final is None
    assert spiral.discounts() == {"kuhn": 1.0, "tictactoe": 1.0, "negotiation": 1.0}


def test_a_games_own_discount_overrides_the_runs():
    card = compose_run_config(CONF, ["+games=[kuhn,tictactoe]"])
    assert card.discounts() == {"kuhn": 1.0, "tictactoe": 1.0}  # SPIRAL's: every move, R - b
    one = compose_run_config(CONF, ["+games=[kuhn,tictactoe]", "games.tictactoe.gamma=0.5"])
    assert one.discounts() == {"kuhn": 1.0, "tictactoe": 0.5}
    every = compose_run_config(
        CONF, ["+games=[kuhn,tictactoe]", "train.gamma=0.9", "games.tictactoe.gamma=0.5"]
    )
    assert every.discounts() == {"kuhn": 0.9, "tictactoe": 0.5}  # the game's own wins
    with pytest.raises(ConfigError, match=r"games.<name>.gamma=0.0 must be in \(0, 1\]"):
        compose_run_config(CONF, ["+games=[tictactoe]", "games.tictactoe.gamma=0"])


def test_named_experiment_reproduces_the_spiral_recipe():
    cfg = compose_run_config(CONF, ["experiment=spiral_qwen3_4b"])
    assert cfg.model.name == "Qwen/Qwen3-4B-Base"
    assert set(cfg.games) == {"kuhn", "tictactoe", "negotiation"}
    assert cfg.learner.batch_size == 128 and cfg.learner.lr == 1e-6 and cfg.learner.epochs == 2
    assert cfg.learner.minibatch_size == 64  # the CPU recipe's too, so not restated there
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
    # the evaluations between the first and the last play fewer games, under the same caps
    assert (
        ev.games_at(0, steps)
        == ev.games_at(steps, steps)
        == {name: ev.games_for(name) for name in ev.opponents}
    )
    middle = ev.games_at(steps // 2, steps)
    assert middle == {"random": ev.games_between, "expert": min(ev.games_between, 32)}
    assert ev.games_between < ev.games
    assert small.games_at(1, 2) == {"random": 10, "expert": 10}  # never more than eval.games
    off = compose_run_config(CONF, ["+games=[kuhn]", "eval.points=0"]).eval
    assert not off.enabled and off.steps(10) == []


MORE_BAD = [
    (["+games=[kuhn]", "seed=abc"], "Bad value for seed"),
    (["+games=[kuhn]", "rollout.temperature=-1"], "rollout.temperature=-1"),
    (["+games=[kuhn]", "eval.games_between=0"], "eval.games_between=0"),
    (["+games=[kuhn]", "rollout.concurrent_games=0"], "rollout.concurrent_games=0"),
    (["+games=[kuhn]", "rollout.episodes_per_step=0"], "rollout.episodes_per_step=0"),
    (["+games=[kuhn]", "rollout.placement_strategy=RANDOM"], "placement_strategy='RANDOM'"),
    (["+games=[kuhn]", "rollout.worker_gpus=-1"], "rollout.worker_gpus=-1"),
    (["+games=[kuhn]", "learner.lr=0"], "learner.lr=0"),
    (["+games=[kuhn]", "learner.micro_batch_size=3"], "micro_batch_size=3"),
    (["+games=[kuhn]", "learner.loss=a2c"], "learner.loss='a2c'"),
    (["+games=[kuhn]", "learner.kl_coef=-0.1"], "learner.kl_coef=-0.1"),
    (["+games=[kuhn]", "learner.tis_cap=0.5"], "learner.tis_cap=0.5"),
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


def test_one_opponents_setting_takes_self_play_league_or_a_fixed_opponent():
    def fixed(*overrides: str) -> str | None:
        cfg = compose_run_config(CONF, ["+games=[kuhn,tictactoe]", *overrides])
        return cfg.rollout.fixed_opponent

    assert fixed() is None and fixed("rollout.opponents=league") is None  # self_play by default
    assert fixed("rollout.opponents=expert") == "expert"
    with pytest.raises(ConfigError) as info:
        fixed("rollout.opponents=grandmaster")
    assert str(info.value) == (
        "rollout.opponents='grandmaster' is neither self_play nor league nor a fixed opponent "
        "of kuhn, tictactoe (games.<name>.opponents). Choose one of: self_play, league, expert, "
        "random; or add 'grandmaster' to games.<name>.opponents."
    )
    with pytest.raises(ConfigError, match=r"rollout\.opponents is empty"):
        fixed("rollout.opponents=''")
    league = "+games.kuhn.opponents.league={_target_:spiral_games.play.policy.RandomPolicy}"
    with pytest.raises(ConfigError, match=r"games\.kuhn\.opponents\.league: a fixed opponent"):
        fixed(league)


@pytest.mark.parametrize(
    ("override", "use"),
    [
        ("rollout.opponent=random", "rollout.opponents=random"),
        ("+rollout.opponent=expert", "rollout.opponents=expert"),
        ("rollout.opponent=null", "rollout.opponents=self_play"),  # the old way to self-play
    ],
)
def test_the_old_opponent_key_is_one_error_naming_the_new_one(override, use):
    with pytest.raises(ConfigError) as info:
        compose_run_config(CONF, ["+games=[kuhn]", override])
    assert str(info.value) == (
        f"{override}: rollout.opponent was merged into rollout.opponents, which takes "
        f"self_play, league, or a fixed opponent from games.<name>.opponents. Use {use}."
    )


def test_the_old_opponent_key_in_a_yaml_file_names_the_new_one(tmp_path):
    import shutil

    conf = tmp_path / "conf"
    shutil.copytree(CONF, conf)
    (conf / "experiment" / "old.yaml").write_text(
        "# @package _global_\nrollout:\n  opponent: random\n"
    )
    with pytest.raises(ConfigError, match=r"rollout.opponent was merged into rollout.opponents"):
        compose_run_config(conf, ["+games=[kuhn]", "experiment=old"])
    # any other unknown key in a file is named with its path, as on the command line
    (conf / "experiment" / "old.yaml").write_text("# @package _global_\nrollout:\n  bogus: 1\n")
    with pytest.raises(ConfigError, match=r"Unknown config key 'bogus' in rollout\. Valid keys:"):
        compose_run_config(conf, ["+games=[kuhn]", "experiment=old"])


@pytest.mark.slow  # a subprocess, a terminal or a training run
def test_untrusted_target_and_missing_model_dir_and_unwritable_output(tmp_path, reliability):
    from spiral_games.errors import ModelError
    from spiral_games.llm.models import resolve_model
    from spiral_games.play.registry import build_rules
    from spiral_games.run.trainer import train

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


# ---- one home for every default: the config dataclasses ------------------------------------


def _schema_defaults(cls: type) -> dict[str, Any]:
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(tree, dict):
        return {prefix: tree}
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if key == "defaults":
            continue
        out.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


GROUP_SCHEMAS = {"model": ModelConfig, "rollout": RolloutConfig, "learner": LearnerConfig}


@pytest.mark.parametrize(
    "path",
    sorted(
        p.relative_to(REPO / "conf")
        for g in GROUP_SCHEMAS
        for p in (REPO / "conf" / g).glob("*.yaml")
    ),
    ids=str,
)
def test_group_yaml_sets_only_what_differs_from_its_dataclass(path):
    schema = _schema_defaults(GROUP_SCHEMAS[path.parts[0]])
    data = yaml.safe_load((REPO / "conf" / path).read_text()) or {}
    restated = [k for k, v in data.items() if k != "defaults" and k in schema and schema[k] == v]
    assert not restated, f"conf/{path} restates its dataclass defaults: {restated}"


@pytest.mark.parametrize(
    "name", sorted(p.stem for p in (REPO / "conf" / "experiment").glob("*.yaml"))
)
def test_experiment_sets_only_what_differs_from_the_composed_default(name):
    data = yaml.safe_load((REPO / "conf" / "experiment" / f"{name}.yaml").read_text())
    games = [
        g for d in data.get("defaults", []) if isinstance(d, dict) for g in d.get("/games", [])
    ]
    model = [
        f"model={d['override /model']}"
        for d in data.get("defaults", [])
        if isinstance(d, dict) and "override /model" in d
    ]
    base = dataclasses.asdict(
        compose_run_config(REPO / "conf", [f"+games=[{','.join(games)}]", *model])
    )
    flat_base = _flatten(base)
    restated = [k for k, v in _flatten(data).items() if k in flat_base and flat_base[k] == v]
    assert not restated, f"conf/experiment/{name}.yaml restates the default: {restated}"


def test_components_get_the_defaults_their_dataclasses_declare():
    """Compose the default config and build what each component is given: every value is the
    one its config dataclass declares (or the CPU recipe's YAML overrides), never a constructor
    default of its own."""
    cfg = compose_run_config(REPO / "conf", ["+games=[kuhn,tictactoe]"])
    rollout, learner = _schema_defaults(RolloutConfig), _schema_defaults(LearnerConfig)
    cpu_rollout = yaml.safe_load((REPO / "conf/rollout/cpu.yaml").read_text())
    cpu_learner = yaml.safe_load((REPO / "conf/learner/cpu.yaml").read_text())
    derived = {"max_tokens": cfg.model.max_tokens}  # None in the schema: the model's budget
    for key, value in dataclasses.asdict(cfg.rollout).items():
        expected = cpu_rollout.get(key, rollout[key])
        assert value == (derived[key] if expected is None and key in derived else expected), key
    derived_learner = {"tis_cap": 0.0}  # None in the schema: resolved from train.max_staleness
    for key, value in dataclasses.asdict(cfg.learner).items():
        expected = cpu_learner.get(key, learner[key])
        resolved = derived_learner[key] if expected is None and key in derived_learner else expected
        assert value == resolved, f"learner.{key}"
    # The game rules the loop plays by carry the game's config itself, with GameConfig's values.
    game = _schema_defaults(GameConfig)
    for name in ("kuhn", "tictactoe"):
        rules = build_rules(name, cfg.games[name])
        assert rules.config is cfg.games[name]
        assert rules.config.max_turns == game["max_turns"]
        assert rules.action_format == cfg.model.action_format  # the model's, unless the game's
    # What rollout workers are built from: the run's sub-configs themselves, not copies.
    worker = WorkerConfig.from_run(cfg, Path("/nonexistent"))
    assert worker.rollout is cfg.rollout and worker.eval is cfg.eval
    assert worker.games is cfg.games and worker.league is cfg.league
    assert worker.sampling == SamplingParams(
        temperature=cfg.rollout.temperature, top_p=cfg.rollout.top_p, max_tokens=24
    )
    assert worker.eval_sampling.temperature == cfg.eval.temperature
    # a worker's engine is sized (KV cache) for the most games it plays at once
    spec = worker.engine_spec(EngineKind.vllm, 0)
    assert spec.sequences == max(cfg.rollout.concurrent_games, cfg.eval.concurrency)
    pool_params = inspect.signature(RolloutPool).parameters
    assert "on_node_loss" not in pool_params  # it reads rollout.on_node_loss, one home
    # The benchmark harness's schema is conf/evaluate.yaml's, which overrides only output_dir.
    harness = yaml.safe_load((REPO / "conf/evaluate.yaml").read_text())
    assert set(harness) == {"defaults", "output_dir"}
