"""vLLM-CPU's KV cache size: set by hand, or chosen at run time from the sequences served, the
context, the model's bytes per token and the memory free; every decision path."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from spiral_games.config.schema import RolloutConfig
from spiral_games.errors import ConfigError
from spiral_games.llm.kv_cache import (
    CPU_BLOCK_SIZE,
    GIB,
    available_memory,
    bytes_per_token,
    cgroup_left,
    kv_cache_for,
    model_bytes_per_token,
)

# SmolLM2-135M-Instruct's config.json, the fields that size its KV cache
SMOLLM2 = {
    "num_hidden_layers": 30,
    "num_attention_heads": 9,
    "num_key_value_heads": 3,
    "hidden_size": 576,
}


def test_bytes_per_token_matches_what_vllm_reported_for_smollm2():
    """vLLM-CPU logged 'KV cache size: 23,296 tokens' for SmolLM2-135M in fp32 at
    VLLM_CPU_KVCACHE_SPACE=1 (1 GiB, 32-token blocks): 30 layers x K,V x 3 KV heads x 64 x 4."""
    per_token = bytes_per_token(SMOLLM2, "float32")
    assert per_token == 30 * 2 * 3 * 64 * 4 == 46_080
    assert GIB // (CPU_BLOCK_SIZE * per_token) * CPU_BLOCK_SIZE == 23_296
    assert bytes_per_token(SMOLLM2, "bfloat16") == per_token // 2


def test_bytes_per_token_reads_head_dim_kv_heads_mla_and_other_names():
    mha = {k: v for k, v in SMOLLM2.items() if k != "num_key_value_heads"}
    assert bytes_per_token(mha, "float32") == 30 * 2 * 9 * 64 * 4  # no KV heads: full MHA
    explicit = {**SMOLLM2, "head_dim": 128}
    assert bytes_per_token(explicit, "float16") == 30 * 2 * 3 * 128 * 2
    nested = {"architectures": ["X"], "text_config": SMOLLM2}
    assert bytes_per_token(nested, "float32") == 46_080
    gpt2 = {"n_layer": 12, "n_head": 12, "n_embd": 768}
    assert bytes_per_token(gpt2, "float32") == 12 * 2 * 768 * 4
    # DeepSeek-V3's multi-head latent attention: one 512 + 64 latent a layer, not K and V
    mla = {**SMOLLM2, "num_hidden_layers": 61, "kv_lora_rank": 512, "qk_rope_head_dim": 64}
    assert bytes_per_token(mla, "bfloat16") == 61 * 576 * 2


def test_a_config_without_the_sizes_names_the_setting_that_sizes_it_by_hand(tmp_path):
    with pytest.raises(ConfigError, match=r"num_hidden_layers.*rollout\.kv_cache_gib"):
        bytes_per_token({"hidden_size": 64}, "float32")
    with pytest.raises(ConfigError, match=r"rollout\.kv_cache_gib"):
        bytes_per_token({**SMOLLM2, "num_key_value_heads": "three"}, "float32")
    with pytest.raises(ConfigError, match=r"config\.json.*rollout\.kv_cache_gib"):
        model_bytes_per_token(tmp_path, "float32")
    (tmp_path / "config.json").write_text(json.dumps(SMOLLM2))
    assert model_bytes_per_token(tmp_path, "float32") == 46_080


def sized(rollout: RolloutConfig, model, sequences=16, engines=1, env=None, available=16 * GIB):
    return kv_cache_for(rollout, model, "float32", sequences, engines, env, available)


@pytest.fixture
def smol_config(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(SMOLLM2))
    return tmp_path


def test_the_environment_then_the_config_win_over_auto_without_reading_the_model(tmp_path):
    """No config.json in tmp_path: a size set by hand never needs one (nor free memory)."""
    env = sized(RolloutConfig(kv_cache_gib=3), tmp_path, env="2", available=1)
    assert (env.bytes, env.tokens, env.reason) == (2 * GIB, None, "VLLM_CPU_KVCACHE_SPACE=2 set")
    hand = sized(RolloutConfig(kv_cache_gib=3), tmp_path, available=1)
    assert (hand.bytes, hand.reason) == (3 * GIB, "rollout.kv_cache_gib=3")
    with pytest.raises(ConfigError, match=r"config\.json"):
        sized(RolloutConfig(), tmp_path)  # auto reads it


def test_auto_holds_every_sequence_at_full_context_in_whole_blocks(smol_config):
    got = sized(RolloutConfig(), smol_config, sequences=16)
    block = CPU_BLOCK_SIZE * 46_080
    assert got.bytes == (16 * 2048 // CPU_BLOCK_SIZE + 1) * block  # + the block vLLM keeps back
    assert got.tokens == 16 * 2048 + CPU_BLOCK_SIZE and "capped" not in got.reason
    odd = sized(RolloutConfig(max_model_len=2000), smol_config, sequences=2)
    assert odd.bytes == (2 * 63 + 1) * block  # 2000 tokens take 63 blocks of 32
    assert sized(RolloutConfig(), smol_config, available=None).bytes == got.bytes  # uncapped


def test_auto_is_capped_by_its_share_of_free_memory_split_over_the_engines(smol_config):
    # 128 games (an evaluation) x 2048 tokens of SmolLM2 fp32 would be 11.25 GiB
    block = CPU_BLOCK_SIZE * 46_080
    one = sized(RolloutConfig(), smol_config, sequences=128)
    assert one.bytes == 4 * GIB // block * block and "capped at 0.25 of 16.0 GiB" in one.reason
    two = sized(RolloutConfig(), smol_config, sequences=128, engines=2)
    assert two.bytes == 2 * GIB // block * block
    half = sized(RolloutConfig(kv_cache_max_share=0.5), smol_config, sequences=128)
    assert half.bytes == 8 * GIB // block * block


def test_tensor_parallel_ranks_each_hold_their_share_of_the_kv_heads(smol_config):
    one = sized(RolloutConfig(), smol_config, available=None)
    three = sized(RolloutConfig(tensor_parallel_size=3), smol_config, available=None)
    assert three.bytes * 3 == one.bytes


def test_auto_without_room_for_one_context_says_what_to_change(smol_config):
    least = (2048 // CPU_BLOCK_SIZE + 1) * CPU_BLOCK_SIZE * 46_080  # 64 blocks + the null one
    assert sized(RolloutConfig(), smol_config, sequences=1, available=4 * least).bytes == least
    with pytest.raises(ConfigError, match=r"max_model_len.*rollout\.kv_cache_gib"):
        sized(RolloutConfig(), smol_config, available=4 * least - 1)
    with pytest.raises(ConfigError, match=r"2 engine"):
        sized(RolloutConfig(), smol_config, engines=2, available=4 * least)


MEMINFO = "MemTotal:       24000000 kB\nMemFree:         1000000 kB\nMemAvailable:   16000000 kB\n"


def test_available_memory_is_the_lower_of_the_kernel_and_the_cgroup():
    assert available_memory(MEMINFO) == 16_000_000 * 1024
    assert available_memory(MEMINFO, ("max\n", "123\n", "")) == 16_000_000 * 1024  # v2, none
    v1_unlimited = (str(9223372036854771712), str(13 * GIB), "")
    assert available_memory(MEMINFO, v1_unlimited) == 16_000_000 * 1024
    stat = f"anon 1\ninactive_file {GIB}\nactive_file 5\n"
    assert available_memory(MEMINFO, (str(8 * GIB), str(3 * GIB), stat)) == 6 * GIB
    v1_stat = f"inactive_file 4096\ntotal_inactive_file {2 * GIB}\n"
    assert cgroup_left(str(8 * GIB), str(3 * GIB), v1_stat) == 7 * GIB
    assert cgroup_left(str(8 * GIB), str(9 * GIB), "") == 0  # over its limit: nothing
    assert available_memory("", None) is None


def test_kv_cache_settings_are_checked():
    assert RolloutConfig().kv_cache_gib == 0  # auto by default
    with pytest.raises(ConfigError, match=r"rollout\.kv_cache_gib"):
        RolloutConfig(kv_cache_gib=-1)
    for share in (0.0, 1.5):
        with pytest.raises(ConfigError, match=r"rollout\.kv_cache_max_share"):
            RolloutConfig(kv_cache_max_share=share)


def test_the_sizing_module_does_not_load_torch():
    """Ray, vLLM and DeepSpeed are kept out by tests/test_architecture.py (PURE_CORE); the
    sizing runs before vLLM starts, so it loads no torch either."""
    code = "import sys, spiral_games.llm.kv_cache; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
