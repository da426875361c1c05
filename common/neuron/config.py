"""Neuron hyper-parameters shared by every task, filled from the command line."""
from __future__ import annotations

from dataclasses import dataclass, field

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
        values.update(overrides)
        return cls(**values)

    def option(self, key: str, default):
        """``extra[key]`` (from ``--neuron-opt KEY=VALUE``, maybe a string) converted to the type of ``default``;
        booleans accept true/false/1/0/yes/no/on/off."""
        value = self.extra.get(key, default)
        if isinstance(default, bool):
            text = str(value).strip().lower()
            if text not in _TRUE | _FALSE:
                raise ValueError(f"neuron option {key}={value!r} is not a boolean")
            return text in _TRUE
        return type(default)(value)

    def make_surrogate(self):
        from common import surrogate

        return surrogate.get(self.surrogate, alpha=self.sg_alpha)
