"""C expressions shared by the compiled CPU and CuPy kernel generators.

``Surrogate.cuda_expr(x)`` renders ``g'(x)`` in float math (``expf``, ``2.0f``); :func:`to_double` rewrites float
functions and literals to their double forms, so that the float64 kernels (gradcheck) are not limited to float
precision.
"""
from __future__ import annotations

import re

# float math functions of <cmath> / CUDA whose double version is the name without the trailing ``f``
_FLOAT_FUNCS = ("expf", "exp2f", "expm1f", "logf", "log2f", "log1pf", "powf", "sqrtf", "fabsf", "fminf", "fmaxf",
                "floorf", "ceilf", "truncf", "roundf", "copysignf", "fmodf", "sinf", "cosf", "tanf", "atanf",
                "atan2f", "sinhf", "coshf", "tanhf", "erff", "erfcf")
_FUNC_RE = re.compile(r"\b(" + "|".join(_FLOAT_FUNCS) + r")\s*\(")
_LITERAL_RE = re.compile(r"(?<![\w.])((?:\d+\.\d*|\.\d+|\d+(?=[eE]))(?:[eE][+-]?\d+)?)[fF]\b")


def to_double(expr: str) -> str:
    """``expf(2.0f * x)`` -> ``exp(2.0 * x)``: the same expression evaluated in double precision."""
    return _LITERAL_RE.sub(r"\1", _FUNC_RE.sub(lambda m: m.group(1)[:-1] + "(", expr))
