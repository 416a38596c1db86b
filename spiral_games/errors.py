"""User-facing error types: each message says what is wrong and how to fix it."""


class SpiralError(Exception):
    """Base for errors the entry points print as one clear line instead of a traceback."""


class ConfigError(SpiralError):
    """A config value or combination is invalid."""


class ModelError(SpiralError):
    """A model cannot be resolved or loaded."""


class EngineError(SpiralError):
    """An inference engine cannot start or cannot serve a request."""


class EngineUnavailable(EngineError):
    """vLLM cannot run here (not installed or not importable, an unsupported CPU, vLLM itself
    failing to start): the only errors `rollout.engine=auto` falls back to transformers from.
    A failure in the project's own vLLM code, or a vLLM whose API differs, is a plain
    EngineError and stops the run."""


class GameError(SpiralError):
    """A game cannot be built or was driven incorrectly."""


class RolloutError(SpiralError):
    """Rollout workers kept dying past `rollout.max_worker_failures`."""
