"""rollout.engine=auto falls back to transformers only when vLLM cannot run here, and says why;
a failure in the project's own vLLM code, or a vLLM with another API, stops the rollout worker
(and the benchmark harness) with one line naming the cause and the fix, under `auto` exactly as
under `vllm`. The breakage is real: a subprocess whose vLLM or whose `vllm_worker` is changed as
it is imported (tests/llm/vllm_drift.py)."""

from __future__ import annotations

import json
import logging

import pytest

from spiral_games.actors.rollout_worker import RolloutWorker, WorkerConfig
from spiral_games.config.hardware import plan_runtime
from spiral_games.errors import EngineError, EngineUnavailable
from spiral_games.llm.engines.vllm_api import SUPPORTED_VLLM

from ..llm.vllm_drift import run_drifted
from ..run.test_trainer import run_cfg

# every test here starts Ray, vLLM, a DeepSpeed learner or a subprocess: not the fast lane
pytestmark = [pytest.mark.slow, pytest.mark.vllm]

BUILD = """
import json
from pathlib import Path
from spiral_games.actors.rollout_worker import RolloutWorker, WorkerConfig
from spiral_games.reasoning.harness import _engine
from spiral_games.config.hardware import plan_runtime
from spiral_games.config.schema import HarnessConfig
from tests.run.test_trainer import run_cfg

model, out = Path({model!r}), Path({out!r})


def outcome(build):
    try:
        built = build()
    except Exception as exc:
        return {{"type": type(exc).__name__, "message": str(exc)}}
    return {{"type": None, "built": type(built).__name__}}


results = {{}}
for engine in ("auto", "vllm"):
    cfg = run_cfg(out, f"rollout.engine={{engine}}", "model.dtype=float32")
    plan = plan_runtime(cfg)
    results[engine] = outcome(lambda: RolloutWorker(WorkerConfig.from_run(cfg, model, plan)))
    results[engine]["planned"] = [plan.engine, plan.engine_fallback]
harness = HarnessConfig(models={{"m": str(model)}}, engine="auto", max_tokens=64, max_model_len=512)
results["harness"] = outcome(lambda: _engine(harness, model, 4))
print("RESULT " + json.dumps(results))
"""
MODES = {
    # (the error's cause, its fix)
    "vllm-0.33": (
        "WeightSource.metadata is a cached_property here",
        f"spiral-games supports vLLM {SUPPORTED_VLLM}: install the supported vLLM",
    ),
    "broken-worker": (
        "importing spiral_games.llm.engines.vllm_worker raised TypeError: simulated bug",
        "so this is a bug in spiral-games; rollout.engine=hf runs without vLLM",
    ),
}


@pytest.fixture(scope="module", params=sorted(MODES))
def broken(request, tiny, tmp_path_factory):
    """What building a worker under auto and vllm, and the harness under auto, gave."""
    pytest.importorskip("vllm")
    tmp = tmp_path_factory.mktemp(request.param)
    code = BUILD.format(model=str(tiny.path), out=str(tmp))
    proc = run_drifted(request.param, code, tmp)
    lines = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    assert lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    return request.param, json.loads(lines[-1].removeprefix("RESULT "))


@pytest.mark.parametrize("who", ["auto", "vllm", "harness"])
def test_broken_vllm_code_is_one_clear_error_never_a_fallback(broken, who):
    mode, results = broken
    cause, fix = MODES[mode]
    got = results[who]
    if who == "auto":
        assert got["planned"] == ["vllm", "hf"]  # auto planned vLLM, with a fallback ready
    assert got["type"] == "EngineError", got  # not EngineUnavailable: nothing fell back
    message = got["message"]
    assert message.startswith("spiral-games' vLLM code does not work with "), message
    assert cause in message and fix in message and "\n" not in message


def test_auto_falls_back_loudly_when_vllm_itself_cannot_start(tiny, tmp_path, caplog):
    """vLLM refuses 16384 positions for a model of 8192: that is vLLM unable to run this
    config, so `auto` serves with transformers and says why; `vllm` stops with the reason."""
    pytest.importorskip("vllm")
    cfg = run_cfg(tmp_path, "rollout.engine=auto", "rollout.max_model_len=16384")
    plan = plan_runtime(cfg)
    if plan.engine != "vllm":
        pytest.skip(f"auto does not try vLLM on this machine ({plan.engine_reason})")
    with caplog.at_level(logging.WARNING):
        worker = RolloutWorker(WorkerConfig.from_run(cfg, tiny.path, plan))
    try:
        info = worker.engine_info()
        assert info["engine"] == "hf"
        assert info["note"].startswith("vllm failed to start (vLLM failed to start: "), info
        assert "max_model_len" in info["note"] or "16384" in info["note"], info
        assert info["note"] in caplog.text
    finally:
        worker.close()
    explicit = run_cfg(tmp_path, "rollout.engine=vllm", "rollout.max_model_len=16384")
    with pytest.raises(EngineUnavailable, match="vLLM failed to start: ") as raised:
        RolloutWorker(WorkerConfig.from_run(explicit, tiny.path, plan_runtime(explicit)))
    assert isinstance(raised.value, EngineError)


def test_only_failures_of_vllm_itself_during_start_may_be_fallen_back_from():
    """What `vllm.LLM(...)` raises is sorted by where it was raised: inside vLLM, vLLM is
    unavailable (auto may fall back); inside the project's vLLM code that vLLM called (in this
    process), a bug. Both exceptions here are real, raised by vLLM and by `vllm_sync`."""
    pytest.importorskip("vllm")
    import torch
    import vllm

    from spiral_games.llm.engines.vllm import _start_error
    from spiral_games.llm.engines.vllm_sync import StreamedWeights

    source = StreamedWeights([("w", (1,))], lambda: iter([("w", 1.0)]), torch.float32)
    with pytest.raises(AttributeError) as ours:  # a float where a tensor belongs
        list(source)
    bug = _start_error(ours.value)
    assert type(bug) is EngineError, bug
    assert str(bug).startswith("spiral-games' vLLM code failed while vLLM started: ")
    assert "(at vllm_sync.py:" in str(bug) and "rollout.engine=hf" in str(bug)

    with pytest.raises(Exception, match="temperature") as theirs:
        vllm.SamplingParams(temperature=-1.0)
    unavailable = _start_error(theirs.value)
    assert isinstance(unavailable, EngineUnavailable), unavailable
    assert str(unavailable).startswith("vLLM failed to start: VLLMValidationError: temperature")
