"""The run's report: ``report.json`` (versioned schema), ``report.html``, ``manifest.json`` and model cards."""

from .build import build_report
from .html import render_html, write_html
from .schema import SCHEMA_VERSION, Report

__all__ = ["SCHEMA_VERSION", "Report", "build_report", "render_html", "write_html"]
