"""Model resolver: bundled default, deterministic tiny model, cache integrity, clear errors."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from spiral_games.errors import ModelError
from spiral_games.llm.models import resolve_model
from spiral_games.manifest import MANIFEST, verify_manifest


@pytest.mark.slow  # a subprocess, a terminal or a training run
def test_smollm2_converts_to_a_plain_hf_directory_with_chat_template(smollm2):
    from transformers import AutoModelForCausalLM

    assert (smollm2.path / "model.safetensors").is_file()
    assert verify_manifest(smollm2.path) is None
    assert smollm2.tokenizer.chat_template
    model = AutoModelForCausalLM.from_pretrained(str(smollm2.path))
    assert type(model).__name__ == "LlamaForCausalLM"
    assert sum(p.numel() for p in model.parameters()) == 134_515_008


def test_tiny_random_builds_identically_from_the_same_seed(tmp_path):
    first = resolve_model("tiny-random", tmp_path / "a", seed=7)
    again = resolve_model("tiny-random", tmp_path / "b", seed=7)
    other = resolve_model("tiny-random", tmp_path / "c", seed=8)
    a, b, c = (load_file(str(m.path / "model.safetensors")) for m in (first, again, other))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    assert first.tokenizer.chat_template == again.tokenizer.chat_template


def test_corrupt_cache_is_detected_and_rebuilt(tmp_path, caplog):
    model = resolve_model("tiny-random", tmp_path, seed=1)
    weights = model.path / "model.safetensors"
    original = weights.read_bytes()

    weights.write_bytes(original[: len(original) // 2])  # truncated write
    assert "bytes, expected" in verify_manifest(model.path)
    with caplog.at_level(logging.WARNING):
        rebuilt = resolve_model("tiny-random", tmp_path, seed=1)
    assert "corrupt" in caplog.text
    assert (rebuilt.path / "model.safetensors").read_bytes() == original

    flipped = bytearray(original)
    flipped[-10] ^= 0xFF  # same size, different content
    weights.write_bytes(bytes(flipped))
    assert "checksum" in verify_manifest(model.path)
    resolve_model("tiny-random", tmp_path, seed=1)
    assert weights.read_bytes() == original

    (model.path / MANIFEST).unlink()  # an interrupted build has no manifest
    resolve_model("tiny-random", tmp_path, seed=1)
    assert verify_manifest(model.path) is None


def test_unknown_model_name_names_the_valid_choices():
    with pytest.raises(ModelError, match="smollm2-135m, tiny-random"):
        resolve_model("smollm3-9000")


def test_directory_without_config_is_rejected(tmp_path):
    with pytest.raises(ModelError, match=r"no config\.json"):
        resolve_model(str(tmp_path))


def test_local_directory_resolves_to_itself(tiny):
    again = resolve_model(str(tiny.path))
    assert again.path == tiny.path.resolve()


@pytest.mark.slow  # a subprocess, a terminal or a training run
def test_unreachable_hub_id_while_offline_gives_one_clear_error(tmp_path):
    code = (
        "from spiral_games.llm.models import resolve_model\n"
        "from spiral_games.errors import ModelError\n"
        "try:\n"
        "    resolve_model('nobody-here/no-such-model-xyz')\n"
        "except ModelError as e:\n"
        "    print('MODEL_ERROR', e)\n"
    )
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path))
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert "MODEL_ERROR" in out.stdout, out.stderr
    assert "HF_HUB_OFFLINE=1" in out.stdout
    assert "huggingface-cli download nobody-here/no-such-model-xyz" in out.stdout
