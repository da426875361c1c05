"""Typed access to neuron-specific options in ``NeuronConfig.extra`` (values may arrive as CLI strings)."""
from __future__ import annotations

_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


def option(cfg, key: str, default):
    """``cfg.extra[key]`` converted to the type of ``default`` (bool accepts true/false/1/0/yes/no/on/off)."""
    value = cfg.extra.get(key, default)
    if isinstance(default, bool):
        text = str(value).strip().lower()
        if text not in _TRUE | _FALSE:
            raise ValueError(f"neuron option {key}={value!r} is not a boolean")
        return text in _TRUE
    return type(default)(value)
