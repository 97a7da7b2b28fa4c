"""The stage interface and registry.

A stage reads the config section(s) it owns and the records of the stages it
``requires``, writes its files under ``run_dir/<name>/`` and returns a typed
record (``record_type``, saved as JSON). It never reaches into another stage's
files except through that stage's record. The run order comes from ``requires``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

from ..context import StageContext
from ..records import Record
from ..registry import Registry

__all__ = ["STAGES", "Stage", "StageContext"]


class Stage(ABC):
    name: ClassVar[str]
    requires: ClassVar[tuple[str, ...]] = ()
    record_type: ClassVar[type[Record]]
    summary: ClassVar[str] = ""
    all_processes: ClassVar[bool] = False  # under torchrun: every process runs it (DDP training)

    @abstractmethod
    def cache_inputs(self, ctx: StageContext) -> dict[str, Any]:
        """Everything besides upstream records that decides this stage's output (config sections, seed)."""

    def validate(self, ctx: StageContext) -> None:
        """Check this stage's inputs before any stage runs, so bad input fails before hours of training."""

    @abstractmethod
    def run(self, ctx: StageContext, out_dir: Path) -> Record:
        """Do the work and return the record."""

    def describe(self, record: Any) -> list[tuple[str, str]]:
        """Rows (label, value) printed after the stage runs."""
        return []

    def tables(self, record: Any) -> list[Any]:
        """Tables (rich renderables) printed at the end of a run that included this stage."""
        return []


STAGES: Registry[type[Stage]] = Registry("stage")
