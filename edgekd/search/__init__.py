"""Searching the settings of a pipeline config (Optuna): tuning a recipe on the validation split today;
the compression search of ``edgekd search`` builds on the same pieces."""

from .tune import Options, Range, Tuned, set_key, tune

__all__ = ["Options", "Range", "Tuned", "set_key", "tune"]
