"""The budgeted search over methods and their hyperparameters, and the confirmation of its finalists."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
