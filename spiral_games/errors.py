"""User-facing error types: each message says what is wrong and how to fix it."""


class SpiralError(Exception):
    """Base for errors the entry points print as one clear line instead of a traceback."""


class ConfigError(SpiralError):
    """A config value or combination is invalid."""


class ModelError(SpiralError):
    """A model cannot be resolved or loaded."""


class EngineError(SpiralError):
    """An inference engine cannot start or cannot serve a request."""


class GameError(SpiralError):
    """A game cannot be built or was driven incorrectly."""


class RolloutError(SpiralError):
    """Rollout workers kept dying past `rollout.max_worker_failures`."""
