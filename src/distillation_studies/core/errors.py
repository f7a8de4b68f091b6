"""The one error type for bad study input, so callers can tell it from bugs."""


class ConfigError(ValueError):
    """A study setting is invalid; the message names the key and what is allowed."""
