"""Error types for bad study input (settings and data files), so callers can tell them from bugs."""


class ConfigError(ValueError):
    """A study setting is invalid; the message names the key and what is allowed."""


class DataError(ConfigError):
    """A dataset file or folder is missing or unreadable; the message names it and how to obtain it."""
