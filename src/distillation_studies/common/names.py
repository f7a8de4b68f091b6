"""Names shared by every layer."""

DEFAULT_STUDENT = "student"  # the student of `student.model`, as opposed to one of `grid.students`

# A run's data-cell labels beyond the arm's own (the evaluation's metrics rows, the nested run's params).
DATA_FACTOR_LABELS = ("transfer_set", "label_noise", "labels_changed", "labelled_size")
PLOTS_FOLDER = "plots"  # plots are linked as plots/<name>, beside the report, as MLflow logs them (report/plots/)
