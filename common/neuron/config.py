"""Neuron hyper-parameters shared by every task, filled from the command line."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from common import surrogate as surrogates
from common.errors import UsageError

_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


@dataclass
class NeuronConfig:
    """What a task needs to build any registered neuron (see ``common.neuron.build_neuron``)."""

    name: str = "lif"
    tau: float = 2.0
    v_threshold: float = 1.0
    v_reset: float | None = 0.0
    detach_reset: bool = True
    decay_input: bool = True
    surrogate: str = "atan"
    sg_alpha: float | None = None
    backend: str = "auto"
    T: int = 4
    extra: dict = field(default_factory=dict)
    quirks: frozenset = frozenset()  # survey quirks in force (``--survey-quirk``, common.quirks)

    @classmethod
    def from_args(cls, args, **overrides) -> NeuronConfig:
        """Build from parsed CLI flags (``common.cli``); flags that a parser lacks keep their defaults."""
        names = {
            "name": "neuron", "tau": "tau", "v_threshold": "v_threshold", "v_reset": "v_reset",
            "detach_reset": "detach_reset", "decay_input": "decay_input", "surrogate": "sg",
            "sg_alpha": "sg_alpha", "backend": "backend", "T": "T",
        }
        values = {key: getattr(args, flag) for key, flag in names.items() if hasattr(args, flag)}
        values["extra"] = dict(getattr(args, "neuron_extra", None) or {})
        values["quirks"] = frozenset(getattr(args, "survey_quirks", None) or ())
        values.update(overrides)
        return cls(**values)

    def options(self, declared: Mapping[str, object]) -> dict:
        """``extra`` (from ``--neuron-opt KEY=VALUE``, values maybe strings) checked against the ``declared`` options
        of neuron ``name`` (key -> default) and converted to the types of the defaults, defaults filled in;
        unknown keys and unconvertible values raise :class:`UsageError` naming the valid keys."""
        unknown = sorted(set(self.extra) - set(declared))
        if unknown:
            valid = ", ".join(f"{key} ({type(default).__name__}, default {default})"
                              for key, default in declared.items()) or "none"
            raise UsageError(f"--neuron-opt {', '.join(unknown)}: not an option of --neuron {self.name}; "
                             f"valid: {valid}")
        return {key: _convert(key, self.extra.get(key, default), default) for key, default in declared.items()}

    def quirk(self, name: str) -> bool:
        """Whether the survey quirk ``name`` is in force (``--survey-quirk name``)."""
        return name in self.quirks

    def make_surrogate(self) -> surrogates.Surrogate:
        return surrogates.get(self.surrogate, alpha=self.sg_alpha)


def _convert(key: str, value, default):
    """``value`` as the type of ``default``; booleans accept true/false/1/0/yes/no/on/off."""
    if isinstance(default, bool):
        text = str(value).strip().lower()
        if text not in _TRUE | _FALSE:
            raise UsageError(f"--neuron-opt {key}={value!r} is not a boolean (true/false)")
        return text in _TRUE
    try:
        return type(default)(value)
    except (TypeError, ValueError):
        what = {int: "an integer", float: "a number"}.get(type(default), f"a {type(default).__name__}")
        raise UsageError(f"--neuron-opt {key}={value!r} is not {what}") from None


def as_surrogate(surrogate: str | surrogates.Surrogate) -> surrogates.Surrogate:
    """A registered surrogate's name (default alpha) or a surrogate object, as an object."""
    return surrogates.get(surrogate) if isinstance(surrogate, str) else surrogate
