"""Errors that edgekd reports to the user.

Every error names what was wrong (a config key, a file, a layer) and what was
expected. The CLI turns an ``EdgekdError`` into a message and exit code 2 (bad
input); anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class EdgekdError(Exception):
    """Base class: bad input or an environment that cannot do what was asked."""


class ConfigError(EdgekdError):
    """The pipeline YAML (or a budgets/target YAML) is malformed."""


class DataError(EdgekdError):
    """A data source is missing, corrupt or inconsistent."""


class ModelError(EdgekdError):
    """A model cannot be built, loaded, hooked or exported."""


class StageError(EdgekdError):
    """A stage failed a check it is responsible for (e.g. export parity)."""
