"""The torch layer: data, models, methods, the one training loop, metrics and evaluation.

It imports torch, torchvision, numpy and scikit-learn only, never the analysis, report, study or
Kedro/MLflow code above it (tests/test_layers.py holds this).
"""
