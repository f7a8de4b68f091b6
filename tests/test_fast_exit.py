"""``kedro run`` ends without the interpreter's teardown, after what a normal exit does first."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from distillation_studies import fast_exit
from distillation_studies.fast_exit import FULL_EXIT_ENV, FastExit

PROBE = """
import atexit, sys, threading, time
from pathlib import Path
from distillation_studies.fast_exit import exit_now

folder = Path(sys.argv[1])

class FreedAtTeardown:
    def __del__(self):
        (folder / "teardown").write_text("ran")

kept = FreedAtTeardown()  # a module global: freed only by the interpreter's teardown
atexit.register(lambda: (folder / "atexit").write_text("ran"))
if sys.argv[2] == "thread":  # a normal exit waits for it: so does this one
    threading.Thread(target=time.sleep, args=(0.5,)).start()
sys.stdout.write("unflushed line")
exit_now(3)
sys.stdout.write(" and the exit was left to Python")
"""


def _probe(tmp_path: Path, mode: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", PROBE, str(tmp_path), mode], capture_output=True, text=True, timeout=300)


def test_the_exit_runs_atexit_flushes_output_and_skips_the_teardown(tmp_path):
    done = _probe(tmp_path, "alone")
    assert done.returncode == 3, done.stderr
    assert done.stdout == "unflushed line"
    assert (tmp_path / "atexit").read_text() == "ran"
    assert not (tmp_path / "teardown").exists()  # what the normal exit would have done last, and slowly


def test_a_running_non_daemon_thread_leaves_the_exit_to_python(tmp_path):
    done = _probe(tmp_path, "thread")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "unflushed line and the exit was left to Python"
    assert (tmp_path / "atexit").read_text() == "ran" and (tmp_path / "teardown").read_text() == "ran"


@pytest.mark.parametrize(("code", "status"), [(None, 0), (0, 0), (1, 1), (2, 2), (256 + 5, 5)])
def test_the_status_is_the_one_sys_exit_would_give(code, status):
    assert fast_exit._status(code) == status


def test_a_message_as_exit_code_is_printed_and_ends_with_status_1(capsys):
    assert fast_exit._status("Error: no such dataset") == 1
    assert capsys.readouterr().err == "Error: no such dataset\n"


@pytest.mark.parametrize(
    ("args", "argv0", "full_exit", "code", "exits"),
    [
        (["run", "--env=tiny"], "/venv/bin/kedro", None, 0, True),
        (["run"], "/venv/bin/kedro", None, 1, False),  # Kedro prints the error's traceback after this hook
        (["run"], "/venv/bin/kedro", "1", 0, False),  # DISTILLATION_STUDIES_FULL_EXIT=1
        (["viz", "run"], "/venv/bin/kedro", None, 0, False),  # kedro viz serves until stopped: not ours to end
        (["run"], "/venv/bin/pytest", None, 0, False),  # Kedro's CLI imported in another program
    ],
)
def test_only_a_kedro_run_that_succeeded_ends_this_way(monkeypatch, args, argv0, full_exit, code, exits):
    calls: list[object] = []
    monkeypatch.setattr(fast_exit, "exit_now", calls.append)
    monkeypatch.setattr(sys, "argv", [argv0, *args])
    if full_exit:
        monkeypatch.setenv(FULL_EXIT_ENV, full_exit)
    else:
        monkeypatch.delenv(FULL_EXIT_ENV, raising=False)
    FastExit().after_command_run(project_metadata=None, command_args=args, exit_code=code)
    assert calls == ([code] if exits else [])


def test_the_hook_is_installed_for_kedros_cli_and_runs_after_the_other_plugins():
    (entry,) = [e for e in entry_points(group="kedro.cli_hooks") if e.name == "distillation_studies"]
    assert entry.load() is fast_exit.cli_hooks
    from kedro.framework.cli.hooks import get_cli_hook_manager

    implementations = get_cli_hook_manager().hook.after_command_run.get_hookimpls()
    ours = [impl for impl in implementations if impl.plugin is fast_exit.cli_hooks]
    assert ours and ours[0].trylast and implementations.index(ours[0]) == 0  # pluggy calls the list from its end
