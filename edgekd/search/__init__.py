"""Searching the settings of a pipeline config (Optuna): ``tune`` scores a recipe on the validation split;
``search`` (``edgekd search``) finds, per target, the artifact that meets the budgets."""

from .compress import SearchResult, search
from .space import SearchFile, default_space
from .tune import Options, Range, Tuned, set_key, tune

__all__ = ["Options", "Range", "SearchFile", "SearchResult", "Tuned", "default_space", "search", "set_key", "tune"]
