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
        self._refresh_tied_lm_head()

    def _refresh_tied_lm_head(self) -> None:
        """Re-tie and re-pack a tied LM head: the reload updates only the input embedding.

        Without this, models with tied embeddings (SmolLM2, Qwen3 small sizes) keep scoring
        with the old output projection, which vLLM-CPU had repacked at load time.
        """
        model = self.model_runner.get_model()  # type: ignore[attr-defined]
        config = self.model_runner.model_config.hf_config  # type: ignore[attr-defined]
        text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
        head, body = getattr(model, "lm_head", None), getattr(model, "model", None)
        if not getattr(text_config, "tie_word_embeddings", False) or head is None or body is None:
            return
        head.weight = body.embed_tokens.weight
        head.quant_method.process_weights_after_loading(head)
