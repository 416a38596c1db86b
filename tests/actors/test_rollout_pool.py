"""Rollout on real Ray: a local pool, weight pushes, and a 2-node cluster on one machine."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from spiral_games.actors.rollout_pool import RolloutPool
from spiral_games.actors.rollout_worker import WorkerConfig
from spiral_games.config.schema import RolloutConfig
from spiral_games.errors import ConfigError

from ..conftest import REPO
from ..tiny_run import tiny_config

# every test here starts Ray, vLLM, a DeepSpeed learner or a subprocess: not the fast lane
pytestmark = pytest.mark.slow


def tiny_worker_config(tiny, engine="hf"):
    cfg = tiny_config(
        f"rollout.engine={engine}",
        "rollout.concurrent_games=4",
        games="kuhn,tictactoe",
        trainer=False,
    )
    return WorkerConfig.from_run(cfg, tiny.path)


def pool_threads(tiny) -> int:
    return tiny_worker_config(tiny).cpu_threads


@pytest.fixture
def local_ray():
    import ray

    from spiral_games.actors.runtime import init_ray
    from spiral_games.config.schema import RayConfig

    init_ray(RayConfig(num_cpus=2))
    yield ray
    ray.shutdown()


def test_pool_collects_episodes_and_pushes_versioned_weights(tiny, local_ray, tmp_path):
    pool = RolloutPool(tiny_worker_config(tiny), RolloutConfig(num_workers=2, worker_cpus=1))
    try:
        episodes = pool.collect(6, seed=0)
        assert len(episodes) == 6 and {e.version for e in episodes} == {0}
        locations = pool.locations()
        assert len({loc["pid"] for loc in locations}) == 2
        # Ray gives a 1-CPU actor OMP_NUM_THREADS=1; the worker sets the threads it was given
        assert {loc["torch_threads"] for loc in locations} == {pool_threads(tiny)}

        state = load_file(str(tiny.path / "model.safetensors"))
        state = {k: v + 0.01 * torch.randn_like(v) for k, v in state.items()}
        path = tmp_path / "weights.safetensors"
        save_file(state, str(path))
        pool.sleep()  # collocated mode: free memory for the learner (the hf engine: a no-op)
        assert pool.push_weights(str(path), version=3) == [3, 3]  # a push wakes the workers
        assert {e.version for e in pool.collect(4, seed=1)} == {3}
    finally:
        pool.shutdown()


def test_workers_import_this_project_and_keep_the_drivers_sigterm_handler(local_ray):
    import signal

    import spiral_games
    from spiral_games.actors.runtime import init_ray
    from spiral_games.config.schema import RayConfig

    @local_ray.remote(num_cpus=1)
    def where() -> tuple[str, str]:
        import games.kuhn
        import spiral_games.types

        return spiral_games.types.__file__, games.kuhn.__file__

    package, game = local_ray.get(where.remote())
    assert Path(package).parent == Path(spiral_games.__file__).parent
    assert Path(game).parent == REPO / "games"
    # init_ray keeps the process's SIGTERM handler (ray.init would install one that exits
    # without unwinding, so the trainer could not save its completed steps).
    local_ray.shutdown()
    mine = signal.signal(signal.SIGTERM, lambda *_: None)
    try:
        handler = signal.getsignal(signal.SIGTERM)
        init_ray(RayConfig(num_cpus=2))
        assert signal.getsignal(signal.SIGTERM) is handler
    finally:
        signal.signal(signal.SIGTERM, mine)


def test_pool_that_cannot_be_placed_is_a_clear_error(tiny, local_ray):
    with pytest.raises(ConfigError, match="cannot place 3 rollout workers"):
        RolloutPool(tiny_worker_config(tiny), RolloutConfig(num_workers=3, worker_cpus=1))


def test_two_node_cluster_places_workers_on_both_nodes(tiny, tmp_path):
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    try:
        from spiral_games.actors.runtime import init_ray
        from spiral_games.config.schema import RayConfig

        init_ray(RayConfig(address=cluster.address))
        cluster.wait_for_nodes()
        pool = RolloutPool(
            tiny_worker_config(tiny),
            RolloutConfig(num_workers=2, worker_cpus=1, placement_strategy="STRICT_SPREAD"),
        )
        try:
            nodes = {loc["node_id"] for loc in pool.locations()}
            assert len(nodes) == 2
            assert sum(pool.remote) == 1  # one worker is on the node without the driver
            state = load_file(str(tiny.path / "model.safetensors"))
            path = tmp_path / "w.safetensors"
            save_file({k: v * 1.01 for k, v in state.items()}, str(path))
            assert pool.push_weights(str(path), version=2) == [2, 2]  # file, and object store
            scores = pool.score([[1, 2, 3]], [[4, 5]])
            assert scores[0][0] == pytest.approx(scores[1][0], abs=1e-5)
            episodes = pool.collect(4, seed=5)
            assert len(episodes) == 4 and all(e.turns for e in episodes)
            assert {e.version for e in episodes} == {2}
        finally:
            pool.shutdown()
    finally:
        ray.shutdown()
        cluster.shutdown()
