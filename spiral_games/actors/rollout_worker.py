"""The RolloutWorker: one engine and one policy copy, playing many games at once.

A plain class, so it runs in-process in tests; `spiral_games.actors.rollout_pool` hosts it as a Ray
actor. It receives only its own `WorkerConfig`: the sub-configs it plays by.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spiral_games.config.choices import (
    ActionFormat,
    Batching,
    Dtype,
    EngineKind,
    SyncBackend,
)
from spiral_games.config.hardware import (
    RuntimePlan,
    cpu_slice,
    plan_runtime,
    ram_tmp_dir,
    this_machine,
)
from spiral_games.config.schema import (
    EvalConfig,
    GameConfig,
    LeagueConfig,
    RolloutConfig,
    RunConfig,
)
from spiral_games.errors import ConfigError, EngineError, EngineUnavailable, RolloutError
from spiral_games.faults import mark_phase
from spiral_games.llm.encoder import game_prompt_styles
from spiral_games.llm.engines.base import Engine, EngineSpec, StreamingEngine
from spiral_games.llm.engines.factory import build_engine
from spiral_games.llm.engines.vllm import VLLMEngine
from spiral_games.llm.models import load_tokenizer
from spiral_games.llm.policy import LLMPolicy
from spiral_games.llm.snapshots import SnapshotPlayer
from spiral_games.play.league import LeagueDraw
from spiral_games.play.loop import play_games
from spiral_games.play.policy import Policy, reseed_policies
from spiral_games.play.registry import build_analysis, build_opponent, build_rules
from spiral_games.play.rollout import evaluation_jobs, league_groups, plan_jobs, plan_league_jobs
from spiral_games.process_setup import pin_process, set_cpu_threads
from spiral_games.types import Episode, Generation, SamplingParams

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerConfig:
    """What a rollout worker needs: the sub-configs it plays by, passed whole (never copied
    field by field), and the values resolved for this run and machine."""

    rollout: RolloutConfig  # engine size, sampling, concurrency, opponents
    games: dict[str, GameConfig]  # as RunConfig resolved them (prompt style, action format)
    eval: EvalConfig  # the evaluation's sampling, opponents and concurrency
    league: LeagueConfig  # rollout.opponents=league: its fixed opponents and snapshot engine
    seed: int  # the run's; worker k seeds its engine and opponents with seed + k
    model_path: str  # the weights to start from: version `start_version`
    start_version: int  # the version of the weights in `model_path` (a resumed checkpoint's)
    engine: EngineKind  # resolved: vllm | hf
    engine_fallback: EngineKind | None  # rollout.engine=auto: used when `engine` fails to start
    dtype: Dtype  # resolved
    cpu_threads: int  # resolved from rollout.cpu_threads
    weight_sync: SyncBackend  # resolved from rollout.weight_sync
    reply_budget: int  # rollout.max_tokens as RunConfig resolved it
    pin_cpus: bool  # bind the worker to its slice of the cores (the learner has its own)

    @classmethod
    def from_run(
        cls,
        cfg: RunConfig,
        model_path: Path,
        plan: RuntimePlan | None = None,
        start_version: int = 0,
    ) -> WorkerConfig:
        """The worker's sub-configs of the whole run config, with `auto` choices resolved by
        `plan` (default: planned for this machine); `model_path` holds weights version
        `start_version` (0: the model's own)."""
        plan = plan or plan_runtime(cfg)
        _check_league_engine(cfg, plan)
        return cls(
            rollout=cfg.rollout,
            games=cfg.games,
            eval=cfg.eval,
            league=cfg.league,
            seed=cfg.seed,
            model_path=str(model_path),
            start_version=start_version,
            engine=plan.engine,
            engine_fallback=plan.engine_fallback,
            dtype=plan.dtype,
            cpu_threads=plan.rollout_threads,
            weight_sync=plan.weight_sync,
            reply_budget=cfg.reply_budget(),
            pin_cpus=bool(plan.learner_cpus),
        )

    @property
    def sampling(self) -> SamplingParams:
        """How training games are sampled (rollout.temperature, rollout.top_p)."""
        r = self.rollout
        return SamplingParams(
            temperature=r.temperature, top_p=r.top_p, max_tokens=self.reply_budget
        )

    @property
    def eval_sampling(self) -> SamplingParams:
        """How evaluation games are sampled (eval.temperature, eval.top_p)."""
        e = self.eval
        return SamplingParams(
            temperature=e.temperature, top_p=e.top_p, max_tokens=self.reply_budget
        )

    @property
    def eval_text_sampling(self) -> SamplingParams | None:
        """How evaluation samples free-text replies of a choice policy (eval.text_temperature);
        None: as `eval_sampling`."""
        e = self.eval
        if e.text_temperature is None:
            return None
        return dataclasses.replace(self.eval_sampling, temperature=e.text_temperature)

    @property
    def league_fixed(self) -> tuple[str, ...]:
        """The league's fixed opponents, under rollout.opponents=league (else none)."""
        return tuple(self.league.fixed) if self.rollout.plays_league else ()

    def engine_spec(self, kind: EngineKind, index: int) -> EngineSpec:
        """What worker `index` builds its `kind` engine from: seeded `seed + index`, bound to
        the `index`-th slice of the machine's cores, and serving as many games at once as the
        training games or the evaluation play, whichever is more."""
        return EngineSpec(
            rollout=self.rollout,
            kind=kind,
            model_path=Path(self.model_path),
            dtype=self.dtype,
            seed=self.seed + index,
            cpu_threads=self.cpu_threads,
            worker_index=index,
            weight_sync=self.weight_sync if kind == EngineKind.vllm else SyncBackend.file,
            sequences=max(self.rollout.concurrent_games, self.eval.concurrency),
        )


class RolloutWorker:
    """Plays batches of episodes with the current policy weights; accepts new weights."""

    def __init__(self, cfg: WorkerConfig, index: int = 0) -> None:
        self.cfg = cfg
        self.index = index
        self._incarnation = f"{os.getpid()}:{time.time_ns()}"  # new after every Ray restart
        set_cpu_threads(cfg.cpu_threads)  # Ray gives a 1-CPU actor OMP_NUM_THREADS=1
        if cfg.pin_cpus:  # the learner runs beside it, bound to the cores after the workers'
            pin_process(cpu_slice(this_machine().cpu_ids, cfg.cpu_threads, index))
        self.engine_kind, self.engine_note = cfg.engine, ""
        self.engine = self._build_engine(cfg.engine)
        self.engine.version = cfg.start_version  # also after a restart: what it serves now
        batching = cfg.rollout.batching
        stream = batching != Batching.round and isinstance(self.engine, StreamingEngine)
        if batching == Batching.stream and not stream:  # rollout.engine=auto fell back
            log.warning(
                "Rollout worker %d runs %s, which has no request queue: playing in rounds "
                "(rollout.batching=stream needs vLLM).",
                index,
                self.engine_kind,
            )
        self.policy = LLMPolicy(
            self.engine,
            load_tokenizer(Path(cfg.model_path)),
            cfg.sampling,
            game_prompt_styles(cfg.games),
            cfg.rollout.max_model_len,
            on_context_overflow=cfg.rollout.on_context_overflow,
            stream=stream,
            choice_games=[
                n for n, g in cfg.games.items() if g.action_format == ActionFormat.choice
            ],
        )
        self.rules = {name: build_rules(name, game) for name, game in cfg.games.items()}
        self.weights = {name: game.weight for name, game in cfg.games.items()}
        self.opponents = None
        fixed = cfg.rollout.fixed_opponent
        if fixed is not None:
            self.opponents = {
                name: build_opponent(name, game, fixed, seed=cfg.seed + index)
                for name, game in cfg.games.items()
            }
        self.league_fixed = {
            (name, opponent): build_opponent(name, game, opponent, seed=cfg.seed + index)
            for name, game in cfg.games.items()
            for opponent in cfg.league_fixed
        }
        self.league_files: dict[str, tuple[Path, int]] = {}  # snapshot -> (weights, step)
        self.snapshots = SnapshotPlayer(  # weights come from snapshot files only
            lambda: build_engine(
                dataclasses.replace(
                    cfg.engine_spec(cfg.league.engine, index), weight_sync=SyncBackend.file
                )
            ),
            lambda engine: LLMPolicy(
                engine,
                self.policy.tokenizer,
                cfg.sampling,
                self.policy.prompt_styles,
                cfg.rollout.max_model_len,
                on_context_overflow=cfg.rollout.on_context_overflow,
                stream=isinstance(engine, StreamingEngine),
                choice_games=self.policy.choice_games,
            ),
        )
        self.eval_policy = LLMPolicy(
            self.engine,
            self.policy.tokenizer,
            cfg.eval_sampling,
            self.policy.prompt_styles,
            cfg.rollout.max_model_len,
            on_context_overflow=cfg.rollout.on_context_overflow,
            stream=stream,
            choice_games=self.policy.choice_games,
            text_params=cfg.eval_text_sampling,
            spell=cfg.eval.spell_choices,
        )
        self.analyses = {
            (name, key): build_analysis(name, game, key)
            for name, game in cfg.games.items()
            for key in game.analyses
        }
        self.eval_opponents = {
            (name, opponent): build_opponent(name, game, opponent, seed=cfg.seed + index)
            for name, game in cfg.games.items()
            for opponent in cfg.eval.opponents
            if opponent in game.opponents
        }

    def _build_engine(self, kind: EngineKind) -> Engine:
        """The `kind` engine; with rollout.engine=auto, the fallback engine when vLLM cannot
        run here (EngineUnavailable). Any other failure, such as a bug in the project's vLLM
        code or a vLLM with a different API, stops the worker with its own error."""
        cfg = self.cfg
        try:
            return build_engine(cfg.engine_spec(kind, self.index))
        except EngineUnavailable as exc:
            if cfg.engine_fallback is None or kind == cfg.engine_fallback:
                raise
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            self.engine_kind = cfg.engine_fallback
            self.engine_note = f"{kind} failed to start ({reason}); using {cfg.engine_fallback}"
            log.warning(
                "Rollout worker %d: %s (rollout.engine=auto).", self.index, self.engine_note
            )
            return self._build_engine(cfg.engine_fallback)

    def engine_info(self) -> dict[str, str]:
        """The engine this worker runs and, after an automatic fallback, why."""
        return {"engine": self.engine_kind, "note": self.engine_note}

    def collect(
        self, num_episodes: int, seed: int, draw: LeagueDraw | None = None
    ) -> list[Episode]:
        """Play `num_episodes` finished episodes with the current weights; with a league
        `draw`, each game's opponent is drawn from it."""
        mark_phase("collect")  # tests kill a worker once it is this far
        self.engine.reseed(seed)
        reseed_policies(self.opponents or {}, seed)
        if draw is not None:
            return self._collect_league(num_episodes, seed, draw)
        jobs = plan_jobs(
            self.rules,
            self.weights,
            num_episodes,
            seed,
            self.policy,
            self.opponents,
            self.engine.version,
            self.cfg.rollout.fixed_opponent or "",
        )
        return play_games(jobs, concurrency=self.cfg.rollout.concurrent_games)

    def _collect_league(self, num_episodes: int, seed: int, draw: LeagueDraw) -> list[Episode]:
        """League games: grouped by snapshot (`league_groups`), the snapshot engine loading
        each group's weights in turn; episodes come back in job order."""
        missing = [m for m in draw.members if m not in self.league_files and not self._fixed(m)]
        if missing:
            raise RolloutError(
                f"Rollout worker {self.index} has no weights for league members {missing}: "
                "the pool sends them with set_league before a collect."
            )

        reseed_policies(self.league_fixed, seed)

        def opponent(game: str, member: str) -> Policy:
            if self._fixed(member):
                return self.league_fixed[(game, member)]
            return self.snapshots.policy()

        jobs = plan_league_jobs(
            self.rules,
            self.weights,
            num_episodes,
            seed,
            self.policy,
            draw,
            opponent,
            self.engine.version,
        )
        episodes: list[Episode | None] = [None] * len(jobs)
        for member, indices in league_groups(jobs, self.league_files):
            if member:
                path, step = self.league_files[member]
                self.snapshots.load(member, path, step, seed + step)
            played = play_games(
                [jobs[i] for i in indices], concurrency=self.cfg.rollout.concurrent_games
            )
            for i, episode in zip(indices, played, strict=True):
                episodes[i] = episode
        return [e for e in episodes if e is not None]

    def _fixed(self, member: str) -> bool:
        return member in self.cfg.league_fixed

    def set_league(self, snapshots: dict[str, tuple[Any, int]]) -> None:
        """The league's snapshots, replacing the previous set: name -> (weights, the step it
        was taken after). `weights` is a file on this node; the file's bytes, or a Ray object
        holding them, from another node (written to a copy of this worker's own); or None: keep
        the copy this worker already holds."""
        kept: dict[str, tuple[Path, int]] = {}
        for name, (weights, step) in snapshots.items():
            if weights is None:
                if name not in self.league_files:
                    raise RolloutError(f"Rollout worker {self.index} holds no copy of {name}.")
                kept[name] = self.league_files[name]
            elif isinstance(weights, str):
                kept[name] = (Path(weights), step)
            else:
                if not isinstance(weights, bytes):  # an object-store reference
                    import ray

                    weights = ray.get(weights)
                tmp = Path(ram_tmp_dir() or tempfile.gettempdir())
                path = tmp / f"league_{os.getpid()}_{name}.safetensors"
                path.write_bytes(weights)
                kept[name] = (path, step)
        for name, (path, _) in self.league_files.items():
            if name not in kept and path.name.startswith("league_"):
                path.unlink(missing_ok=True)  # a copy this worker wrote for itself
        self.league_files = kept
        if self.snapshots.loaded and self.snapshots.loaded not in kept:
            self.snapshots.loaded = ""

    def evaluate(self, games: dict[str, int], seed: int, first_seat: int = 0) -> list[Episode]:
        """Eval-sampled games against every configured fixed opponent (`games[name]` per game),
        seats alternating from `first_seat`, `eval_concurrency` at once."""
        self.engine.reseed(seed)
        reseed_policies(self.eval_opponents, seed)
        jobs = evaluation_jobs(
            self.rules,
            self.eval_opponents,
            games,
            seed,
            self.eval_policy,
            self.engine.version,
            first_seat,
        )
        return play_games(jobs, concurrency=self.cfg.eval.concurrency)

    def analyse(self, seed: int) -> dict[str, float]:
        """Every configured game analysis of the eval-sampled policy: `eval/<game>/<key>`."""
        out: dict[str, float] = {}
        for (game, _), analysis in sorted(self.analyses.items()):
            for key, value in analysis.measure(self.eval_policy, self.rules[game], seed).items():
                out[f"eval/{game}/{key}"] = float(value)
        return out

    def sleep(self) -> None:
        """Free accelerator memory for a collocated learner (GPU vLLM; no-op elsewhere); the
        league's snapshot engine is closed (it is rebuilt when next needed)."""
        self.engine.sleep()
        self.snapshots.close()

    def load_weights_bytes(self, data: bytes, version: int) -> int:
        """Like `load_weights`, for a worker on another node: the file's bytes came through
        Ray's object store and are written to this node's /dev/shm first."""
        with tempfile.NamedTemporaryFile(suffix=".safetensors", dir=ram_tmp_dir()) as fh:
            fh.write(data)
            fh.flush()
            return self.load_weights(fh.name, version)

    def load_weights(self, safetensors_path: str, version: int) -> int:
        """Serve the weights in `safetensors_path` from now on; returns the new version."""
        self.engine.wake()
        self.engine.load_weights(Path(safetensors_path), version)
        return self.engine.version

    # ---- streamed pushes (rollout.weight_sync != file): vLLM's weight-transfer protocol ----

    def served_dtype(self) -> str:
        return self._streaming().served_dtype()

    def init_weight_transfer(self, init_info: dict) -> None:
        self._streaming().init_weight_transfer(init_info)

    def shutdown_weight_transfer(self) -> None:
        self._streaming().shutdown_weight_transfer()

    def start_weight_update(self) -> None:
        self.engine.wake()
        self._streaming().start_weight_update()

    def update_weights(self, update_info: dict) -> None:
        self._streaming().update_weights(update_info)

    def finish_weight_update(self, version: int) -> int:
        self._streaming().finish_weight_update(version)
        return self.engine.version

    def transfer_timing(self) -> dict[str, float]:
        return self._streaming().transfer_timing()

    def _streaming(self) -> VLLMEngine:
        if not isinstance(self.engine, VLLMEngine):
            raise EngineError(
                f"Rollout worker {self.index} runs {self.engine_kind}, which takes weights "
                "from a file only; the pool pushes to it with rollout.weight_sync=file."
            )
        return self.engine

    def score(self, prompts: list[list[int]], responses: list[list[int]]) -> list[list[float]]:
        """Log-probs the served weights give to fixed token sequences (sync checks)."""
        return self.engine.score(prompts, responses)

    def greedy(self, prompt: list[int], max_tokens: int) -> Generation:
        """The served weights' greedy reply to `prompt`, with the log-prob of each token (the
        start-up agreement check)."""
        return self.engine.generate([prompt], SamplingParams.greedy(max_tokens))[0]

    def incarnation(self) -> str:
        """Which start of this worker is answering (changes when Ray restarts it)."""
        return self._incarnation

    def version(self) -> int:
        """The weights version currently served."""
        return self.engine.version

    def location(self) -> dict[str, object]:
        """Which Ray node and process this worker runs in (for placement checks and logs)."""
        try:
            import ray

            node = ray.get_runtime_context().get_node_id() if ray.is_initialized() else "local"
        except ImportError:
            node = "local"
        import torch

        return {
            "node_id": node,
            "pid": os.getpid(),
            "index": self.index,
            "torch_threads": torch.get_num_threads(),
        }

    def close(self) -> None:
        """Stop the engines; remove the snapshot copies this worker wrote."""
        self.set_league({})
        self.snapshots.close()
        self.engine.close()


def _check_league_engine(cfg: RunConfig, plan: RuntimePlan) -> None:
    """Refuse `league.engine` where it cannot run: a second vLLM engine on a GPU would need a
    share of the GPU's memory that this version does not set."""
    league_vllm = cfg.rollout.plays_league and cfg.league.engine == EngineKind.vllm
    if league_vllm and plan.hardware.gpus:
        raise ConfigError(
            "league.engine=vllm starts a second vLLM engine in each rollout worker, and on a "
            "GPU it would claim the memory the first one holds. Use league.engine=hf."
        )
