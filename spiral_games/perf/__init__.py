"""The performance benchmarks (`python launch/benchmark.py {rollout,learner,sync,iteration,
precision} [overrides]`): each prints a table and writes JSON to output_dir. Every table and JSON
names the hardware it ran on and the engine, dtype and learner precision chosen for it
(`spiral_games.config.hardware`).

Every comparison is a ratio of figures measured in the same run, on the same model and settings.

rollout: (a) raw engine throughput at the worker's concurrency, on the prompts the games produced,
         (b) the self-play RolloutWorker (tokens/s, turns/s, games/s),
         (c) a naive one-game-at-a-time transformers loop; and the ratios b/a and b/c;
         (d) on vLLM: the same games streamed (each game moves on when its own reply is done)
         against lock-step rounds, at equal concurrency; their tokens/s ratio.
learner: tokens/s of a DeepSpeed update step against plain PyTorch on the same model, batch,
         optimizer and loss, in fp32 and with bf16 autocast; and their ratio.
sync:    the trainer's weight push into `rollout.num_workers` Ray actors, for every
         `rollout.weight_sync` backend this machine runs (file; gloo with vLLM on CPU, nccl on
         GPUs), against an in-process copy of the same tensors; their ratio, and where it went.
iteration: short real training runs (`train.steps`, default 4, checkpoint every step, no eval),
         synchronous (train.max_staleness=0) and overlapped (1) unless one is given, with the
         rollout worker and the learner pinned to cores of their own; each phase's share of a
         step: rollout (what the update did not hide), advantage, update, push, eval,
         checkpoint and the rest; the steady steps' mean; and the step-time ratio k=1 / k=0.
precision: fp32 against bf16 on this machine, for the rollout engine (generation tokens/s at
         batch 1, 8 and 32) and for the learner (one update's tokens/s), and whether the `auto`
         choice picked the faster one.

`suite.run_benchmark` runs one by name; each module holds one benchmark and its table.
"""
