"""Budgets and the gate: does every artifact meet its accuracy, latency, energy, size and memory limits?"""

from .budgets import Budget, BudgetsFile, effective, load_budgets
from .check import apply, evaluate
from .outputs import gate_table, markdown, write_junit, write_markdown

__all__ = ["Budget", "BudgetsFile", "apply", "effective", "evaluate", "gate_table", "load_budgets", "markdown",
           "write_junit", "write_markdown"]
