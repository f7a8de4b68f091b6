"""Error types for bad study input (settings and data files), so callers can tell them from bugs."""


class ConfigError(ValueError):
    """A study setting is invalid; the message names the key and what is allowed."""


class DataError(ConfigError):
    """A dataset file or folder is missing or unreadable; the message names it and how to obtain it."""


class Superseded(RuntimeError):
    """Work whose result nobody will read: another attempt replaces it (a search job orphaned when the
    worker of the node that submitted it died). Its MLflow run closes KILLED, not FINISHED or FAILED."""

    run_status = "KILLED"
