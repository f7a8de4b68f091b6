"""A whole study with a grid (label fractions x a KD temperature sweep), run in memory end to end."""

import pytest
from kedro.io import MemoryDataset
from kedro.runner import SequentialRunner

from distillation_studies.pipelines import comparison, data_processing, distillation, evaluation, teacher
from distillation_studies.study.schema import validate_study
from tests.pipelines.test_study_slice import catalog_for, tiny_params


class KeptDataset(MemoryDataset):
    """Keeps its data after the run, so the test can read intermediate results."""

    def _release(self) -> None:
        pass


@pytest.fixture
def grid_params():
    params = tiny_params()
    params["teacher"]["training"]["epochs"] = 1
    params["student"]["training"]["epochs"] = 2
    params["methods"] = {"ce": {}, "kd": {"temperature": 4.0, "ce_weight": 0.1, "kd_weight": 0.9, "sweep": {"temperature": [1.0, 4.0]}}}
    params["grid"] = {"students": {}, "label_fractions": [0.5, 1.0]}
    params["seeds"] = [0, 1]
    params["evaluation"] = {"latency_repeats": 2, "throughput_batch": 8}
    return params


def test_grid_selects_settings_on_validation_and_reports_curves(grid_params):
    study = validate_study(grid_params)
    parts = (data_processing, teacher, distillation, evaluation, comparison)
    pipeline = sum((part.create_pipeline(study) for part in parts[1:]), parts[0].create_pipeline(study))
    assert {n.name for n in pipeline.nodes} >= {"make_model_input_labels_50", "students.kd__temperature_1__labels_50.seed_1.distil_student"}
    catalog = catalog_for(grid_params)
    catalog["mlflow_run_ids"] = MemoryDataset({}, copy_mode="assign")
    for name in ("comparison_table", "sensitivity_table", "recommendation", "study_plots", "study_report_md"):
        catalog[name] = KeptDataset(copy_mode="assign")
    SequentialRunner().run(pipeline, catalog)

    sensitivity = catalog["sensitivity_table"].load()
    kd = sensitivity[sensitivity["method"] == "kd"]
    assert len(kd) == 4 and kd["selected"].sum() == 2  # one temperature picked per label fraction
    for fraction, part in kd.groupby("label_fraction"):
        best = part.loc[part["best_val_accuracy_mean"].idxmax(), "arm"]
        assert part.loc[part["selected"], "arm"].item() == best  # picked on validation, not test

    table = catalog["comparison_table"].load()
    assert set(table["arm"]) == set(sensitivity.loc[sensitivity["selected"], "arm"])  # test only for the picks
    assert sorted(table["label_fraction"].unique()) == [0.5, 1.0]
    kd_half = table[(table["method"] == "kd") & (table["label_fraction"] == 0.5)].iloc[0]
    assert kd_half["train_size"] < table[(table["method"] == "kd") & (table["label_fraction"] == 1.0)].iloc[0]["train_size"]
    assert "test_accuracy_p_adjusted_vs_ce" in table

    plots = catalog["study_plots"].load()
    assert {"label_fraction.png", "sensitivity_temperature.png", "learning_curves.png"} <= set(plots)
    # One answer per label fraction, each ranking only the arms of its own cell, full labels first.
    cells = catalog["recommendation"].load()["cells"]
    assert [(c["cell"]["label_fraction"], c["key"], c["description"]) for c in cells] == [
        (1.0, "labels_100", "all labels"), (0.5, "labels_50", "50% labels, no transfer set")
    ]
    for cell in cells:
        arms = set(table.loc[table["label_fraction"] == cell["cell"]["label_fraction"], "arm"])
        assert {entry["candidate"] for entry in cell["ranked"]} | {e["candidate"] for e in cell["excluded"]} == arms
