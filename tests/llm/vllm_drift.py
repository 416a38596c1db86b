"""Run Python in a subprocess whose vLLM, or whose own vLLM code, is broken on purpose, for real:
a `sitecustomize` on PYTHONPATH changes a module as it is imported (in vLLM's spawned processes
too).

- `vllm-0.33`: the weight-transfer contract of CUDA vLLM 0.33/0.34, which the project's
  `StreamedWeights` breaks: `WeightSource.metadata` is a `functools.cached_property`, and a
  subclass that defines it as a method fails at class definition with a TypeError. A
  `vllm-0.33.0.dist-info` beside it makes the package metadata report vllm 0.33.0 (and
  VLLM_TARGET_DEVICE=cpu keeps vLLM on its CPU platform, which it would otherwise read from
  that version string).
- `broken-worker`: `spiral_games.llm.engines.vllm_worker` raises a TypeError at import (a bug
  in the project's own vLLM code, the installed vLLM unchanged).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from ..conftest import REPO

SITECUSTOMIZE = """
import functools, importlib.abc, importlib.machinery, os, sys

MODE = os.environ["SPIRAL_TEST_DRIFT"]
TARGET = {
    "vllm-0.33": "vllm.distributed.weight_transfer.base",
    "broken-worker": "spiral_games.llm.engines.vllm_worker",
}[MODE]


def as_vllm_033(module):
    source = module.WeightSource

    def metadata(self):
        raise NotImplementedError

    cached = functools.cached_property(metadata)
    cached.__set_name__(source, "metadata")
    source.metadata = cached

    def check_subclass(cls, **kwargs):
        if not isinstance(cls.__dict__.get("metadata", cached), functools.cached_property):
            raise TypeError(
                f"{cls.__name__}.metadata must be a functools.cached_property"
            )

    source.__init_subclass__ = classmethod(check_subclass)


def broken(module):
    raise TypeError("simulated bug in the project's vLLM worker extension")


class Drift(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != TARGET:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        run = spec.loader.exec_module

        def exec_module(module):
            if MODE == "broken-worker":
                broken(module)
            run(module)
            if MODE == "vllm-0.33":
                as_vllm_033(module)

        spec.loader.exec_module = exec_module
        return spec


sys.meta_path.insert(0, Drift())
"""


def run_drifted(
    mode: str, code: str, tmp_path: Path, timeout_s: float = 600
) -> subprocess.CompletedProcess:
    """Run `code` (dedented) with `python -c` in the repository, under `mode`."""
    site = tmp_path / f"site_{mode}"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    if mode == "vllm-0.33":
        info = site / "vllm-0.33.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text("Metadata-Version: 2.1\nName: vllm\nVersion: 0.33.0\n")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(site), str(REPO), os.environ.get("PYTHONPATH", "")]),
        "SPIRAL_TEST_DRIFT": mode,
    }
    if mode == "vllm-0.33":
        # vLLM picks its platform from the same metadata: "cpu" in the version is the CPU build
        env["VLLM_TARGET_DEVICE"] = "cpu"
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
