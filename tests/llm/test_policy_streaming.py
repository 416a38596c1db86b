"""LLMPolicy streaming: refused on an engine without a request queue; on one with a queue,
answers carry the weights version they were asked under and overflow never reaches it."""

from __future__ import annotations

import itertools
from collections.abc import Collection, Sequence

import pytest

from spiral_games.config.compose import compose_run_config
from spiral_games.config.schema import RolloutConfig
from spiral_games.errors import ConfigError
from spiral_games.llm.engines.base import EngineSpec, StreamingEngine
from spiral_games.llm.engines.hf import HFEngine
from spiral_games.llm.policy import LLMPolicy
from spiral_games.play.loop import GameJob, play_games
from spiral_games.play.policy import RandomPolicy
from spiral_games.play.registry import build_rules
from spiral_games.types import Generation, Observation, SamplingParams

from ..conftest import REPO

MAX_MODEL_LEN = 400
PARAMS = SamplingParams(temperature=1.0, top_p=1.0, max_tokens=4, seed=0)


@pytest.fixture(scope="module")
def hf(tiny):
    engine = HFEngine(
        EngineSpec.from_rollout(
            "hf", tiny.path, RolloutConfig(max_model_len=MAX_MODEL_LEN), dtype="float32", seed=0
        )
    )
    yield engine
    engine.close()


class Queued:
    """A request queue over the transformers engine: `poll` generates every open request it is
    asked about in one batch (a stand-in for vLLM's continuous batch)."""

    def __init__(self, engine: HFEngine) -> None:
        self.engine = engine
        self.version = 0
        self.ids = (f"req-{n}" for n in itertools.count())
        self.open: dict[str, tuple[list[int], SamplingParams]] = {}
        self.submitted = 0

    def generate(self, prompts: Sequence[Sequence[int]], params: SamplingParams):
        raise AssertionError("a streaming policy never generates in rounds")

    def submit(self, prompt: Sequence[int], params: SamplingParams) -> str:
        request_id = next(self.ids)
        self.open[request_id] = (list(prompt), params)
        self.submitted += 1
        return request_id

    def poll(self, request_ids: Collection[str]) -> dict[str, Generation]:
        wanted = sorted(request_ids)
        assert wanted and set(wanted) <= self.open.keys()
        prompts = [self.open.pop(r)[0] for r in wanted]
        return dict(zip(wanted, self.engine.generate(prompts, PARAMS), strict=True))

    def abort(self, request_ids: Collection[str]) -> None:
        for request_id in request_ids:
            del self.open[request_id]


def policy(engine, tokenizer, stream: bool) -> LLMPolicy:
    return LLMPolicy(
        engine,
        tokenizer,
        PARAMS,
        {"kuhn": "chat"},
        MAX_MODEL_LEN,
        on_context_overflow="draw",
        stream=stream,
    )


def test_streaming_on_transformers_is_refused_naming_rollout_batching(hf, tiny):
    assert not isinstance(hf, StreamingEngine)
    with pytest.raises(ConfigError, match=r"rollout\.batching=stream.*HFEngine.*auto or round"):
        policy(hf, tiny.tokenizer, stream=True)
    assert not policy(hf, tiny.tokenizer, stream=False).streaming


def test_round_answers_carry_the_served_version(hf, tiny):
    hf.version = 3
    try:
        out = policy(hf, tiny.tokenizer, stream=False).act(
            [Observation("kuhn", 0, "Your turn.", None)]
        )
    finally:
        hf.version = 0
    assert out[0].token_ids and out[0].version == 3


def test_streamed_answers_carry_the_version_they_were_submitted_under(hf, tiny):
    queued = Queued(hf)
    assert isinstance(queued, StreamingEngine)
    llm = policy(queued, tiny.tokenizer, stream=True)
    assert llm.streaming
    first = llm.submit(Observation("kuhn", 0, "Your turn.", None))
    queued.version = 1  # new weights arrive while the first request is open
    second = llm.submit(Observation("kuhn", 1, "Your move.", None))
    huge = "Player 0 chose [check].\n" * 400  # past the context: answered without the engine
    overflow = llm.submit(Observation("kuhn", 0, huge, None))
    assert queued.submitted == 2
    assert llm.poll([overflow, first]).keys() == {overflow}  # ready first, nothing waited for
    answers = llm.poll([first, second])
    assert answers[first].version == 0 and answers[second].version == 1
    assert all(a.token_ids and a.logprobs and not a.context_overflow for a in answers.values())


def test_a_streaming_llm_plays_real_games_against_a_round_policy(hf, tiny):
    queued = Queued(hf)
    llm = policy(queued, tiny.tokenizer, stream=True)
    queued.version = 2
    cfg = compose_run_config(REPO / "conf", ["+games=[kuhn]"])
    rules = build_rules("kuhn", cfg.games["kuhn"])
    rand = RandomPolicy(seed=0)
    played = [GameJob(rules, s, (llm, rand) if s % 2 else (rand, llm)) for s in range(4)]
    episodes = play_games(played, concurrency=3)
    assert [e.seed for e in episodes] == [0, 1, 2, 3]
    llm_turns = [t for e in episodes for t in e.turns if t.role == 1 - e.seed % 2]
    assert llm_turns and all(t.response_ids and t.version == 2 for t in llm_turns)
    assert not queued.open
