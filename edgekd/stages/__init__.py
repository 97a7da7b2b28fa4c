"""Pipeline stages, one module each; importing this package finds and registers them (no list to edit).

The run order is not listed anywhere: it follows each stage's ``requires`` (see ``edgekd.pipeline.stage_order``).
"""

from ..registry import discover
from .base import STAGES, Stage, StageContext

discover(__name__)

__all__ = ["STAGES", "Stage", "StageContext"]
