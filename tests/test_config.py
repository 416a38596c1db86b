"""Config composition: the design-card command parses; bad overrides fail with one clear line."""

from __future__ import annotations

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
    assert cfg.model.name == "smollm2-135m" and cfg.rollout.engine == "vllm"


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
]


@pytest.mark.parametrize(("overrides", "message"), BAD, ids=[" ".join(b[0]) for b in BAD])
def test_bad_override_gives_one_clear_error(overrides, message):
    with pytest.raises(ConfigError) as info:
        compose_run_config(CONF, overrides)
    assert message in str(info.value)
    assert "\n" not in str(info.value).strip()


def test_named_experiment_reproduces_the_spiral_recipe():
    cfg = compose_run_config(CONF, ["experiment=spiral_qwen3_4b"])
    assert cfg.model.name == "Qwen/Qwen3-4B-Base"
    assert set(cfg.games) == {"kuhn", "tictactoe", "negotiation"}
    assert cfg.learner.batch_size == 128 and cfg.learner.lr == 1e-6 and cfg.learner.epochs == 2
    assert cfg.learner.clip == 0.2 and cfg.rollout.temperature == 1.0
    assert cfg.rollout.max_tokens == 4096 and cfg.train.steps == 400
    assert cfg.rollout.num_workers * cfg.rollout.worker_gpus <= 8
