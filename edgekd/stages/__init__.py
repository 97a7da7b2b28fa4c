"""Pipeline stages, in order. Importing this package registers them."""

from . import compile, distill, export, gate, profile, prune, quantize, teacher  # noqa: F401  (registration)
from .base import STAGES, Stage, StageContext

ORDER = ["teacher", "distill", "prune", "quantize", "export", "compile", "profile", "gate"]

__all__ = ["ORDER", "STAGES", "Stage", "StageContext"]
