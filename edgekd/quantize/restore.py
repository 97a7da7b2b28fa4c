"""The prepared INT8 student with its learned parameters, rebuilt from a quantize record.

Export and compile both start from it, so every INT8 artifact uses the scales
learned once in the quantize stage and nothing downstream re-calibrates.
"""

from __future__ import annotations

from ..context import StageContext
from ..records import QuantizedRecord
from .pt2e import QuantizedStudent, load_state, prepare


def load_quantized(record: QuantizedRecord, ctx: StageContext) -> QuantizedStudent:
    student = ctx.load_model(record.student, key="quantize")
    prepared = prepare(student, ctx.data.input, observer=record.observer, scheme=record.scheme)
    return load_state(prepared, ctx.absolute(record.state))
