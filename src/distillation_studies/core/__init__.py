"""Pure-PyTorch core of distillation studies: data, models, methods, training loop and metrics.

Nothing in this package imports Kedro or MLflow, so it can be used and tested on its own.
"""
