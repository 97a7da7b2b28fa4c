"""One config problem, as the checks before training report it, and did-you-mean suggestions.

Checks return lists of ``Problem`` instead of raising at the first one, so a run
refuses a config with every problem named at once (``edgekd.preflight``).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Iterable

from .errors import ConfigError, EdgekdError


def close_matches(value: object, choices: Iterable[str], n: int = 3, cutoff: float = 0.6) -> tuple[str, ...]:
    """The choices that look like a misspelling of ``value`` (difflib's ratio), best first."""
    return tuple(difflib.get_close_matches(str(value), list(choices), n=n, cutoff=cutoff))


@dataclass(frozen=True)
class Problem:
    key: str  # config key path, e.g. ``distill.losses[1].name``, or a file for target and budget files
    message: str  # what is wrong, naming the value
    accepted: str = ""  # what would be accepted
    suggestions: tuple[str, ...] = ()  # near misses of the value

    def __str__(self) -> str:
        text = f"{self.key}: {self.message}"
        if self.suggestions:
            text += f"; did you mean {' or '.join(map(repr, self.suggestions))}?"
        if self.accepted:
            text += f"; accepted: {self.accepted}"
        return text

    @classmethod
    def from_error(cls, key: str, error: BaseException) -> "Problem":
        """A problem from a loader's exception; its message usually starts with the key already."""
        message = str(error)
        prefix = f"{key}: "
        return cls(key, message[len(prefix):] if message.startswith(prefix) else message)


def unknown(key: str, what: str, value: object, choices: Iterable[str]) -> Problem:
    """``key: unknown <what> 'value'; did you mean ...?; accepted: a, b, c``."""
    choices = sorted(choices)
    return Problem(key, f"unknown {what} {value!r}", ", ".join(choices) or "(none)", close_matches(value, choices))


def raise_problems(problems: list[Problem], heading: str, error: type[EdgekdError] = ConfigError) -> None:
    """One error naming every problem, one per line; nothing when the list is empty."""
    if problems:
        count = f"{len(problems)} problem{'s' if len(problems) > 1 else ''}"
        raise error(f"{heading} ({count}):\n" + "\n".join(f"  {p}" for p in problems))
