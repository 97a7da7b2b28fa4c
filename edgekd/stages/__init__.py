"""Pipeline stages, one module each; importing this package registers every stage module in it.

The run order is not listed anywhere: it follows each stage's ``requires`` (see ``edgekd.pipeline.stage_order``).
"""

import importlib
import pkgutil

from .base import STAGES, Stage, StageContext

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["STAGES", "Stage", "StageContext"]
