"""Pipeline stages, in order. Importing this package registers them."""

from . import compile, distill, export, prune, quantize, teacher  # noqa: F401  (registration)
from .base import STAGES, Stage, StageContext

ORDER = ["teacher", "distill", "prune", "quantize", "export", "compile"]

__all__ = ["ORDER", "STAGES", "Stage", "StageContext"]
