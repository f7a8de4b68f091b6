"""The terminal's study progress: counts, time left from the mean arm time, and the closing lines."""

from __future__ import annotations

import logging
from dataclasses import replace
from types import SimpleNamespace

import pytest
from kedro.io import DataCatalog, MemoryDataset

from distillation_studies.tracking.hooks import STUDY_RUN
from distillation_studies.progress import ProgressHooks, StudyProgress, arm_name, clock, mlflow_lines
from distillation_studies.terminal import VERBOSE_ENV, TerminalFormatter, TerseFilter, install, verbose
from distillation_studies.tracking.runs import StudyRun
from tests.conftest import TERMINAL_OUTPUT


@pytest.mark.parametrize(("seconds", "text"), [(0, "0 s"), (42.4, "42 s"), (185, "3 min 05 s"), (3720, "1 h 02 min")])
def test_clock(seconds, text):
    assert clock(seconds) == text


def test_time_left_is_the_mean_arm_time_times_the_arms_left():
    progress = StudyProgress(total=5)
    assert progress.time_left() is None
    progress.arm_finished(10.0)
    progress.arm_finished(20.0)
    assert progress.time_left() == pytest.approx(3 * 15.0)
    assert "2/5 students trained (kd/seed_1 done)" in progress.line("kd/seed_1")


def test_arm_name_of_a_student_namespace():
    assert arm_name("students.kd__temperature_4.seed_2") == "kd__temperature_4/seed_2"
    assert arm_name(None) == "?"


def node(name: str, namespace: str | None = None):
    return SimpleNamespace(name=f"{namespace}.{name}" if namespace else name, namespace=namespace)


def test_hooks_count_only_student_training_nodes_and_repeat_the_recommendation_at_the_end(caplog):
    hooks = ProgressHooks()
    arms = [node("distil_student", f"students.{m}.seed_0") for m in ("ce", "kd")]
    pipeline = SimpleNamespace(nodes=[node("train_teacher"), *arms, node("recommend_method")])
    caplog.set_level(logging.INFO, logger="distillation_studies.progress")
    hooks.before_pipeline_run({}, pipeline, None)
    for arm in arms:
        hooks.before_node_run(arm)
        hooks.after_node_run(arm, {})
    hooks.after_node_run(node("train_teacher"), {"teacher_model": object()})
    hooks.after_node_run(node("recommend_method"), {"recommendation": {"markdown": "### Recommendation\nkd"}})
    hooks.after_pipeline_run({}, pipeline, DataCatalog())
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0] == "Study: 2 students to train (arms x seeds)"
    assert "1/2 students trained (ce/seed_0 done)" in messages[1] and "2/2" in messages[2]
    assert messages[-1].strip().endswith("### Recommendation\nkd")


def test_the_run_ends_with_the_study_run_and_the_command_that_shows_it(caplog):
    study = StudyRun("sqlite:////work/p/mlflow.db", "3", "abc123", "h", "v")
    hooks = ProgressHooks()
    pipeline = SimpleNamespace(nodes=[node("train_teacher")])
    caplog.set_level(logging.INFO, logger="distillation_studies.progress")
    hooks.before_pipeline_run({}, pipeline, None)
    hooks.after_pipeline_run({}, pipeline, DataCatalog({STUDY_RUN: MemoryDataset(study)}))
    assert caplog.records[-1].getMessage().splitlines() == [
        "MLflow study run: abc123 (experiment 3) in sqlite:////work/p/mlflow.db",
        "  see it: mlflow ui --backend-store-uri sqlite:////work/p/mlflow.db --port 5000",
        "  then open http://127.0.0.1:5000/#/experiments/3/runs/abc123",
    ]
    server = replace(study, tracking_uri="http://tracking:5000/")
    assert mlflow_lines(server)[1] == "  see it: http://tracking:5000/#/experiments/3/runs/abc123"


# ---- the terminal: Kedro's per-task lines dropped, lines wrapped, `-v` shows everything --------------------


def _record(message: str, name: str = "kedro.runner.sequential_runner", level: int = logging.INFO, *args) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, message, args, None)


KEDRO_TASK_RECORDS = [
    _record("Running node: %s", "kedro.pipeline.node", logging.INFO, "distil_student: distil_student([teacher_model;...])"),
    _record("Completed node: %s", "kedro.runner.sequential_runner", logging.INFO, "students.kd.seed_0.distil_student"),
    _record("Completed %d out of %d tasks", "kedro.runner.sequential_runner", logging.INFO, 6, 27),
]


def test_kedro_task_lines_are_dropped_unless_verbose(monkeypatch):
    monkeypatch.delenv(VERBOSE_ENV, raising=False)
    terse = TerseFilter()
    assert [terse.filter(record) for record in KEDRO_TASK_RECORDS] == [False, False, False]
    kept = [
        _record("Pipeline execution completed successfully in 71.2 sec."),
        _record("Study progress: 1/8 students trained (ce/seed_0 done), 25 s elapsed", "distillation_studies.progress"),
        _record("Running node: %s", "kedro.pipeline.node", logging.WARNING, "x"),  # warnings always show
    ]
    assert all(terse.filter(record) for record in kept)
    monkeypatch.setenv(VERBOSE_ENV, "1")
    assert all(terse.filter(record) for record in KEDRO_TASK_RECORDS)


def test_lines_are_wrapped_at_200_characters_keeping_words_whole_and_verbose_keeps_them_whole(monkeypatch):
    monkeypatch.delenv(VERBOSE_ENV, raising=False)
    words = " ".join(f"word{i:03d}" for i in range(60))  # 60 x 7 characters + 59 spaces = 479
    path = "/" + "p" * 230
    formatter = TerminalFormatter(logging.Formatter("%(name)s | %(message)s"))
    text = formatter.format(_record(f"## Recommendation\n\n=1. **kd**: {words}\nReport: {path}", "distillation_studies.progress"))
    lines = text.split("\n")
    assert lines[0].endswith(" ## Recommendation") and len(lines[0]) == len("12:00:00 ## Recommendation")
    body = [line for line in lines if "word" in line]
    assert all(len(line) <= 200 for line in body) and len(body) == 3  # 479 + 14 characters in 200-character lines
    assert all(line.startswith("    ") for line in body[1:])  # continuations indented under their item
    assert " ".join(" ".join(body).split()) == f"=1. **kd**: {words}"  # nothing lost or reordered
    assert lines[-2:] == ["Report:", "    " + path]  # a word longer than a line is kept whole, alone
    warning = formatter.format(_record("arm kd failed", "distillation_studies.hooks", logging.WARNING))
    assert warning[8:] == " WARNING distillation_studies.hooks: arm kd failed"
    monkeypatch.setenv(VERBOSE_ENV, "1")
    assert formatter.format(_record(f"x {words}", "kedro.pipeline.node")) == f"kedro.pipeline.node | x {words}"


def test_install_puts_the_filter_and_formatter_on_the_console_handler_once():
    logger = logging.getLogger("tests.terminal_install")
    console, other = logging.StreamHandler(), logging.StreamHandler()
    console.set_name("console")
    yaml_formatter = logging.Formatter("%(name)s - %(message)s")
    console.setFormatter(yaml_formatter)
    logger.handlers = [console, other]
    try:
        install(logger)
        install(logger)
        assert [type(f) for f in console.filters] == [TerseFilter] and other.filters == []
        assert isinstance(console.formatter, TerminalFormatter) and console.formatter.verbose is yaml_formatter
        assert other.formatter is None
    finally:
        logger.handlers = []


def test_kedro_run_dash_v_turns_verbose_on(monkeypatch):
    from distillation_studies.cli import cli

    monkeypatch.setenv(VERBOSE_ENV, "")  # off, and restored after the test (-v sets os.environ itself)
    cli.commands["run"].make_context("run", ["--env", "tiny"])
    assert not verbose()
    cli.commands["run"].make_context("run", ["-v", "--env", "tiny"])
    assert verbose()


@pytest.mark.e2e
def test_a_tiny_run_prints_a_line_per_model_short_lines_and_the_recommendation_once(project):
    """The session's real ``kedro run --env=tiny`` (8 students), as the user saw it (issue 23)."""
    printed = (project / TERMINAL_OUTPUT).read_text().splitlines()
    assert max(len(line) for line in printed) <= 200
    assert sum("## Recommendation: test_accuracy" in line for line in printed) == 1
    assert not any(marker in line for line in printed for marker in ("Running node:", "Completed node:", "out of 27 tasks"))
    progress = [line for line in printed if "students trained (" in line]
    assert len(progress) == 8 and progress[-1].split(" ", 1)[1].startswith("Study progress: 8/8 students trained")
    before_answer = printed[: next(i for i, line in enumerate(printed) if "## Recommendation" in line)]
    assert len(before_answer) <= len(progress) + 12, "\n".join(before_answer)  # + teacher progress and a few run lines

def test_epoch_lines_are_printed_at_most_every_ten_seconds_and_always_the_last(caplog):
    from distillation_studies.progress import epoch_lines

    moments = iter([0.0, 4.0, 12.0, 15.0, 20.0, 21.0])  # start, then the end of epochs 1 to 5
    print_epoch = epoch_lines("teacher", 5, now=lambda: next(moments))
    with caplog.at_level(logging.INFO, logger="distillation_studies.progress"):
        for epoch in range(1, 6):
            print_epoch({"epoch": epoch, "val_accuracy": epoch / 10})
    # epoch 1 at 4 s (the first); 2 at 12 s is 8 s later: skipped; 3 at 15 s is 11 s after epoch 1; 4 at
    # 20 s only 5 s after 3: skipped; 5 is the last. Time left: elapsed / epochs done x epochs to go.
    assert [r.getMessage() for r in caplog.records] == [
        "teacher: epoch 1/5, val accuracy 0.1000, 4 s elapsed, about 16 s left",
        "teacher: epoch 3/5, val accuracy 0.3000, 15 s elapsed, about 10 s left",
        "teacher: epoch 5/5, val accuracy 0.5000, 21 s elapsed",
    ]
