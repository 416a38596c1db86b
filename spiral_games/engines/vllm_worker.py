"""vLLM worker extension: loads a safetensors file into the running model (new policy weights)."""

from __future__ import annotations


class WeightReloader:
    """Mixed into vLLM's worker via `worker_extension_cls`; called with `collective_rpc`.

    On CPU vLLM repacks linear weights after loading, so plain `load_weights` fails; the
    checkpoint-format reload path re-runs the loader's post-processing.
    """

    def reload_from_safetensors(self, path: str) -> None:
        from safetensors.torch import load_file

        state = load_file(path)
        self.reload_weights(  # type: ignore[attr-defined]  # provided by vLLM's Worker
            weights_iterator=iter(state.items()), is_checkpoint_format=True
        )
