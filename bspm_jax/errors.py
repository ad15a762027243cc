"""Exceptions raised for user errors: the CLI prints their message and exits with code 2."""


class BSPMError(Exception):
    """Base class of every error caused by the user's input or settings."""


class DataError(BSPMError, ValueError):
    """A dataset file is missing, malformed or inconsistent."""


class ConfigError(BSPMError, ValueError):
    """A model or run setting is impossible (unknown name, out-of-range value)."""


class ResourceError(BSPMError, MemoryError):
    """A requested computation would not fit in the available memory."""


class TrainingError(BSPMError, ArithmeticError):
    """Training diverged: a loss became NaN or infinite (the message names the epoch and step)."""
