"""Survey-compatibility switches: one mechanism for every behaviour of the survey's code that differs from the
methods' papers (``--survey-quirk NAME``, repeatable).

By default every task follows the papers; a quirk reproduces what the survey's code did, where a published number
depends on it. A quirk is registered once, next to the code it changes, with the tasks it applies to::

    quirks.register("clif_sigmoid_carry", "CLIF carries sigmoid(m) as its state (in-place sigmoid_ in the "
                    "survey's clif.py)", tasks=("cf10", "scf10", "shd"))
    ...
    if quirks.on(args, "clif_sigmoid_carry"): ...

Naming a quirk that does not exist, or that does not apply to the task, is a one-line usage error.
"""
from __future__ import annotations

from dataclasses import dataclass

from common.errors import UsageError


@dataclass(frozen=True)
class Quirk:
    name: str
    description: str
    tasks: tuple[str, ...]


QUIRKS: dict[str, Quirk] = {}


def register(name: str, description: str, tasks: tuple[str, ...]) -> Quirk:
    """Declare a quirk (idempotent for the same definition)."""
    quirk = Quirk(name, description, tuple(tasks))
    if QUIRKS.get(name, quirk) != quirk:
        raise ValueError(f"survey quirk {name!r} registered twice with different definitions")
    QUIRKS[name] = quirk
    return quirk


def for_task(task: str | None) -> list[Quirk]:
    return [q for q in QUIRKS.values() if task is None or task in q.tasks]


def add_args(parser, task: str | None) -> None:
    """``--survey-quirk NAME`` (repeatable) on ``parser``."""
    names = ", ".join(q.name for q in for_task(task)) or "none for this task"
    parser.add_argument("--survey-quirk", dest="survey_quirks", action="append", default=[], metavar="NAME",
                        help=f"reproduce a behaviour of the survey's code (repeatable): {names}")


def check(args, task: str | None) -> None:
    """Refuse unknown quirks and quirks of other tasks, listing the valid ones."""
    valid = {q.name for q in for_task(task)}
    for name in getattr(args, "survey_quirks", []):
        if name not in valid:
            where = f"task {task}" if task else "this script"
            raise UsageError(f"--survey-quirk {name}: not a survey quirk of {where}; valid: "
                             f"{', '.join(sorted(valid)) or 'none'}")


def on(args, name: str) -> bool:
    """Whether ``--survey-quirk name`` was given."""
    if name not in QUIRKS:
        raise KeyError(f"survey quirk {name!r} is not registered")
    return name in getattr(args, "survey_quirks", [])
