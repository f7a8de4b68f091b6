"""kedro-viz as a user opens it: `kedro viz build` on a finished tiny study, read back from its JSON.

The collapsed ``students`` node must emit the three study-level tables only (not every arm's metrics
and history), the report datasets must carry the previews the side panel renders, and nodes their tags.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import KEDRO
from tests.test_report_datasets import read_as_kedro_viz_shows

pytestmark = pytest.mark.e2e

STUDY_OUTPUTS = {"study_runs", "run_details", "study_histories"}


@pytest.fixture(scope="module")
def viz(project) -> Path:
    """The ``build/`` folder of ``kedro viz build --include-previews`` over the tiny study (offline)."""
    env = {**os.environ, "KEDRO_ENV": "tiny", "KEDRO_DISABLE_TELEMETRY": "1", "MPLBACKEND": "Agg"}
    result = subprocess.run(
        [KEDRO, "viz", "build", "--include-previews"], cwd=project, env=env, capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return project / "build"


def _main(viz: Path) -> dict:
    return json.loads((viz / "api" / "main").read_text())


def _node_named(main: dict, name: str) -> dict:
    return next(node for node in main["nodes"] if node["name"] == name)


def _details(viz: Path, main: dict, name: str) -> dict:
    return json.loads((viz / "api" / "nodes" / _node_named(main, name)["id"]).read_text())


def test_collapsed_students_node_emits_only_the_study_level_tables(viz):
    main = _main(viz)
    names = {node["id"]: node["name"] for node in main["nodes"]}
    students = main["modular_pipelines"]["students"]
    assert {names[output] for output in students["outputs"]} == STUDY_OUTPUTS
    assert {names[i] for i in students["inputs"]} >= {"teacher_model", "model_input", "data_summary"}
    assert not {names[i] for i in students["inputs"]} & {name for name in names.values() if name.startswith("students.")}
    # The arms' datasets still exist, inside the collapsed node.
    assert "students.kd.seed_0.metrics" in names.values()


def test_nodes_carry_teacher_students_and_report_tags(viz):
    main = _main(viz)
    tasks = {node["full_name"]: set(node["tags"]) for node in main["nodes"] if node["type"] == "task"}
    assert tasks["train_teacher"] == {"teacher"}
    assert tasks["students.kd.seed_0.distil_student"] == {"students"}
    assert tasks["students.kd.seed_0.evaluate_student"] == {"students"}
    assert tasks["students.collect_runs"] == tasks["students.collect_histories"] == {"students"}
    assert tasks["split_images"] == {"data"}
    assert tasks["build_report"] == {"report"}
    assert {tag["id"] for tag in main["tags"]} >= {"data", "teacher", "students", "report"}


def test_report_previews_as_the_page_the_table_as_people_read_it_and_plots_as_an_image(viz):
    main = _main(viz)
    page = _details(viz, main, "study_report_html")
    assert page["preview_type"] == "HTMLPreview"
    assert page["preview"].lstrip().lower().startswith("<!doctype html") and "Recommendation" in page["preview"]
    markdown = _details(viz, main, "study_report_md")
    shown, tags = read_as_kedro_viz_shows(markdown["preview"])
    assert markdown["preview_type"] == "HTMLPreview" and "Recommendation: test_accuracy (higher" in shown
    assert "h2" in tags and "em" not in tags
    assert "study_plots/" not in markdown["preview"]  # links the side panel cannot follow are left out

    table = _details(viz, main, "comparison_table")
    assert table["preview_type"] == "TablePreview"
    columns = table["preview"]["columns"]
    assert columns[:3] == ["arm", "seeds", "test acc (best val epoch), %"] and len(columns) < 20
    row = dict(zip(columns, table["preview"]["data"][0]))
    mean, half_width = row["test acc (best val epoch), %"].split(" ± ")
    assert len(mean.split(".")[1]) == 2 and len(half_width.split(".")[1]) == 2  # percentages to 2 decimals

    for name in ("study_plots", "comparison_plot"):
        plot = _details(viz, main, name)
        assert plot["preview_type"] == "ImagePreview"
        assert base64.b64decode(plot["preview"])[:8] == b"\x89PNG\r\n\x1a\n"


LOAD_GRAPH = """
import json, sys
from pathlib import Path
from kedro_viz.integrations.kedro.data_loader import load_data

_, pipelines, _ = load_data(Path.cwd(), env=sys.argv[1] or None)
print(json.dumps(sorted({node.namespace.split(".", 2)[1] + "/" + node.namespace.split(".", 2)[2]
                         for node in pipelines["__default__"].nodes
                         if (node.namespace or "").startswith("students.") and node.namespace.count(".") == 2})))
"""


@pytest.mark.parametrize(
    ("cli_env", "expected_runs"),
    [
        ("tiny", {f"{method}/seed_{seed}" for method in ("ce", "kd", "fitnet", "rkd") for seed in (0, 1)}),
        ("", None),  # conf/base: its own grid, not tiny's
    ],
)
def test_kedro_viz_run_env_draws_that_environments_study(project, cli_env, expected_runs):
    """``kedro viz run --env X`` builds the graph through kedro-viz's ``load_data(env=X)``, with no KEDRO_ENV set."""
    env = {key: value for key, value in os.environ.items() if key != "KEDRO_ENV"} | {"KEDRO_DISABLE_TELEMETRY": "1"}
    result = subprocess.run(
        [str(Path(KEDRO).with_name("python")), "-c", LOAD_GRAPH, cli_env],
        cwd=project, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    runs = set(json.loads(result.stdout.strip().splitlines()[-1]))
    if expected_runs is not None:
        assert runs == expected_runs
    else:
        assert not any(run.startswith("rkd/") for run in runs) and "kd__labels_100/seed_4" in runs
