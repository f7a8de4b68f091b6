"""What the terminal shows of a run: the study's own lines, short; Kedro's per-task lines only on request.

Kedro writes three lines per task (``Running node: ...`` with every input and output, ``Completed node``,
``Completed n out of m tasks``): in the default study they were 72% of the output, some over 1,400
characters. By default :class:`TerseFilter` drops them (the study prints one progress line per trained
model instead) and :class:`TerminalFormatter` wraps every line to at most ``width`` characters. Verbose
mode (``kedro run -v``, or ``DISTILLATION_STUDIES_VERBOSE=1``) shows every line, whole, with its logger
name. :func:`install` puts both on ``conf/logging.yml``'s ``console`` handler when a session's context is
created (``progress.ProgressHooks``).
"""

from __future__ import annotations

import logging
import os
import re
import textwrap

VERBOSE_ENV = "DISTILLATION_STUDIES_VERBOSE"
WIDTH = 200  # no terminal line longer than this by default
CONTINUATION = "    "  # a wrapped line's continuation, under its first line's indentation

# Kedro's lines per task and per run that say nothing a study's own lines do not (message templates).
KEDRO_TASK_LINES = re.compile(
    r"^(Running node: |Completed node: |Completed %d out of %d tasks"
    r"|Using synchronous mode for loading and saving data|Using '.*' as logging configuration)"
)
CONSOLE_HANDLER = "console"  # conf/logging.yml's terminal handler
TERSE_FORMAT = "%(asctime)s %(message)s"
WARNING_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
VERBOSE_FORMAT = "%(asctime)s - %(name)s - %(levelname)s - %(message)s"
TIME_FORMAT = "%H:%M:%S"


def verbose() -> bool:
    """Whether this process shows every line (read at each record: ``kedro run -v`` sets it after logging is set up)."""
    return os.environ.get(VERBOSE_ENV, "").strip().lower() not in ("", "0", "false", "no")


class TerseFilter(logging.Filter):
    """Drops Kedro's per-task lines unless verbose; warnings and errors always pass."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING or verbose():
            return True
        return not KEDRO_TASK_LINES.match(str(record.msg))


class TerminalFormatter(logging.Formatter):
    """``HH:MM:SS message`` (warnings name their level and logger), each line wrapped to :data:`WIDTH`;
    verbose: the handler's own formatter (``conf/logging.yml``: Kedro's ``time - logger - level - message``),
    lines whole."""

    def __init__(self, verbose_formatter: logging.Formatter | None = None) -> None:
        super().__init__(TERSE_FORMAT, TIME_FORMAT)
        self.warning = logging.Formatter(WARNING_FORMAT, TIME_FORMAT)
        self.verbose = verbose_formatter or logging.Formatter(VERBOSE_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        if verbose():
            return self.verbose.format(record)
        text = self.warning.format(record) if record.levelno >= logging.WARNING else super().format(record)
        return "\n".join(wrap_line(line) for line in text.split("\n"))


def install(logger: logging.Logger | None = None) -> None:
    """Put :class:`TerseFilter` and :class:`TerminalFormatter` on ``conf/logging.yml``'s ``console`` handler
    (once). Here and not in the YAML: Kedro 1.x refuses project classes in a logging config unless every
    user sets ``KEDRO_LOGGING_MODULE_ALLOWLIST``. A config of your own without a ``console`` handler is left alone."""
    for handler in (logger or logging.getLogger()).handlers:
        if handler.get_name() == CONSOLE_HANDLER and not any(isinstance(f, TerseFilter) for f in handler.filters):
            handler.addFilter(TerseFilter())
            handler.setFormatter(TerminalFormatter(handler.formatter))


def wrap_line(line: str, width: int = WIDTH) -> str:
    """``line`` broken at spaces into lines of at most ``width`` characters, continuations indented under
    it; a single word longer than ``width`` (a path, a URL) is kept whole, so it can still be copied."""
    if len(line) <= width:
        return line
    indent = line[: len(line) - len(line.lstrip())]
    return textwrap.fill(
        line, width, subsequent_indent=indent + CONTINUATION, break_long_words=False, break_on_hyphens=False
    )
