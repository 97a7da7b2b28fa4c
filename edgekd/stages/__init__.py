"""Pipeline stages, in order. Importing this package registers them."""

from . import distill, teacher  # noqa: F401  (registration)
from .base import STAGES, Stage, StageContext

ORDER = ["teacher", "distill"]

__all__ = ["ORDER", "STAGES", "Stage", "StageContext"]
