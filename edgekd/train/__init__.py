"""The one trainer used by every training stage: teacher training, distillation, recovery and QAD."""

from .teacher_outputs import CachedTeacher, LiveTeacher, TeacherOutputs, TeacherSource, cache_dir
from .trainer import Trainer, TrainResult

__all__ = ["CachedTeacher", "LiveTeacher", "TeacherOutputs", "TeacherSource", "Trainer", "TrainResult", "cache_dir"]
