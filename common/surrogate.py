r"""Surrogate gradient functions: Heaviside forward, closed-form smooth derivative backward.

Every surrogate is one registered :class:`Surrogate` subclass. Its call maps ``x = v - v_threshold`` to spikes
``H(x) = 1[x >= 0]`` (dtype of ``x``); the backward pass multiplies the incoming gradient by the closed-form
``g'(x)`` of a smooth step ``g``. Besides ``derivative`` (torch) each surrogate renders the same ``g'(x)`` as a
C float expression (``cuda_expr``) so that kernel generators can inline it as ``float sg = <expr>;``.

``alpha`` is always the function's main parameter (width, sharpness or scale; see each class); further parameters
are keyword ``hparams`` with defaults. Defaults follow SpikingJelly 2.0 where it has the function.

>>> sg = get("atan")            # alpha=2
>>> spikes = sg(h - v_th)       # Heaviside forward, grad * sg.derivative(h - v_th) backward
"""
from __future__ import annotations

import math
import numbers
from typing import Any, ClassVar

import torch
from torch import nn

from common.registry import Registry

SURROGATES = Registry("surrogate")


def names() -> list[str]:
    """Sorted names of all registered surrogates."""
    return SURROGATES.names()


def get(name: str, alpha: float | None = None, **hparams: Any) -> Surrogate:
    """Build the surrogate ``name``; ``alpha=None`` keeps the function's default."""
    return SURROGATES.get(name)(alpha, **hparams)


def _register(cls: type[Surrogate]) -> type[Surrogate]:
    SURROGATES.register(cls.name, cls)
    return cls


class _HeavisideSurrogate(torch.autograd.Function):
    """Forward ``1[x >= 0]``; backward ``grad * surrogate.derivative(x)``."""

    @staticmethod
    def forward(x: torch.Tensor, surrogate: Surrogate) -> torch.Tensor:
        return _step(x)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, surrogate = inputs
        ctx.save_for_backward(x)
        ctx.surrogate = surrogate

    @staticmethod
    def backward(ctx, grad_output):
        (x,) = ctx.saved_tensors
        return grad_output * ctx.surrogate.derivative(x), None


class Surrogate(nn.Module):
    """Base class: subclasses set ``name``/``default_alpha``/``hparam_defaults`` and implement
    ``derivative``, ``primitive`` and ``cuda_expr``; ``forward`` is shared."""

    name: ClassVar[str]
    default_alpha: ClassVar[float]
    hparam_defaults: ClassVar[dict[str, float | int]] = {}

    def __init__(self, alpha: float | None = None, **hparams: Any):
        super().__init__()
        unknown = sorted(set(hparams) - set(self.hparam_defaults))
        if unknown:
            valid = ", ".join(self.hparam_defaults) or "none"
            raise TypeError(f"surrogate '{self.name}' got unknown hparams {unknown}; valid hparams: {valid}")
        self.alpha = float(self.default_alpha if alpha is None else alpha)
        for key, default in self.hparam_defaults.items():
            value = hparams.get(key, default)
            if isinstance(default, int) and not (isinstance(value, numbers.Integral) and not isinstance(value, bool)):
                raise ValueError(f"surrogate '{self.name}': {key} must be an integer, got {value!r}")
            setattr(self, key, int(value) if isinstance(default, int) else float(value))
        self._check()

    def _check(self) -> None:
        """Validate parameters (default: alpha > 0); overridden where other ranges are allowed."""
        if not self.alpha > 0:
            raise ValueError(f"surrogate '{self.name}' needs alpha > 0, got {self.alpha}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _HeavisideSurrogate.apply(x, self)

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        """Closed-form g'(x), elementwise, same dtype/device as ``x``."""
        raise NotImplementedError

    def primitive(self, x: torch.Tensor) -> torch.Tensor:
        """g(x), an antiderivative of ``derivative``."""
        raise NotImplementedError

    def cuda_expr(self, x: str) -> str:
        """C float expression of g'(x) (valid in CUDA and in C++ with ``<cmath>``); ``x`` names a float."""
        raise NotImplementedError

    def extra_repr(self) -> str:
        return ", ".join(f"{key}={getattr(self, key)}" for key in ("alpha", *self.hparam_defaults))


# ---------------------------------------------------------------- helpers shared by several surrogates
def _lit(value: float) -> str:
    """C float literal, e.g. ``2.0f``; negative values are parenthesised."""
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"cannot inline non-finite constant {value}")
    text = f"{value!r}f"
    return f"({text})" if value < 0 else text


def _sign(x: torch.Tensor) -> torch.Tensor:
    """+1 for x >= 0, -1 otherwise (a constant: it carries no gradient)."""
    return (x >= 0).to(x.dtype) * 2 - 1


def _step(x: torch.Tensor) -> torch.Tensor:
    return (x >= 0).to(x.dtype)


def _select(cond: torch.Tensor, a: float, b: float, x: torch.Tensor) -> torch.Tensor:
    """``a`` where ``cond`` else ``b``, in the dtype of ``x`` (no host-to-device copy of the constants)."""
    return torch.full_like(x, b).masked_fill_(cond, a)


def _sigmoid_slope(x: torch.Tensor, alpha: float) -> torch.Tensor:
    """alpha * sigma(alpha x) * sigma(-alpha x), accurate in the tails."""
    return alpha * torch.sigmoid(alpha * x) * torch.sigmoid(-alpha * x)


def _sigmoid_slope_c(x: str, alpha: float) -> str:
    """alpha e / (1 + e)^2 with e = exp(-alpha |x|): the same value, no overflow for any x."""
    e = f"expf({_lit(-alpha)} * fabsf({x}))"
    return f"({_lit(alpha)} * {e} / ((1.0f + {e}) * (1.0f + {e})))"


def _gauss(x: torch.Tensor, mu: float, sigma: float) -> torch.Tensor:
    return 1 / (sigma * math.sqrt(2 * math.pi)) * torch.exp(-0.5 / sigma**2 * (x - mu).square())


def _gauss_c(x: str, mu: float, sigma: float) -> str:
    d = f"({x} - {_lit(mu)})"
    return f"({_lit(1 / (sigma * math.sqrt(2 * math.pi)))} * expf({_lit(-0.5 / sigma**2)} * {d} * {d}))"


def _gauss_cdf(x: torch.Tensor, mu: float, sigma: float) -> torch.Tensor:
    return 0.5 * torch.erfc(-(x - mu) / (sigma * math.sqrt(2)))


# ---------------------------------------------------------------- SpikingJelly functions
@_register
class ATan(Surrogate):
    r"""Arctangent (SpikingJelly ``ATan``, snnTorch ``atan``; Fang et al. 2021). alpha: sharpness.

    g(x) = arctan(pi alpha x / 2) / pi + 1/2;  g'(x) = (alpha/2) / (1 + (pi alpha x / 2)^2).
    """

    name = "atan"
    default_alpha = 2.0

    def derivative(self, x):
        return (self.alpha / 2) / (1 + (math.pi / 2 * self.alpha * x).square())

    def primitive(self, x):
        return torch.atan(math.pi / 2 * self.alpha * x) / math.pi + 0.5

    def cuda_expr(self, x):
        kx = f"({_lit(math.pi / 2 * self.alpha)} * ({x}))"
        return f"({_lit(self.alpha / 2)} / (1.0f + {kx} * {kx}))"


@_register
class Sigmoid(Surrogate):
    r"""Logistic sigmoid (SpikingJelly ``Sigmoid``; snnTorch ``sigmoid`` with slope=alpha). alpha: sharpness.

    g(x) = sigma(alpha x);  g'(x) = alpha sigma(alpha x) (1 - sigma(alpha x)).
    """

    name = "sigmoid"
    default_alpha = 4.0

    def derivative(self, x):
        return _sigmoid_slope(x, self.alpha)

    def primitive(self, x):
        return torch.sigmoid(self.alpha * x)

    def cuda_expr(self, x):
        return _sigmoid_slope_c(f"({x})", self.alpha)


@_register
class PiecewiseQuadratic(Surrogate):
    r"""Piecewise quadratic (SpikingJelly ``PiecewiseQuadratic``; Esser et al. 2016). alpha: 1/half-width.

    g'(x) = max(0, alpha - alpha^2 |x|)  (a triangle of height alpha on |x| <= 1/alpha);
    g(x) = 0 (x < -1/alpha), -alpha^2 x|x|/2 + alpha x + 1/2 (|x| <= 1/alpha), 1 (x > 1/alpha).
    """

    name = "piecewise_quadratic"
    default_alpha = 1.0

    def derivative(self, x):
        return (self.alpha - self.alpha**2 * x.abs()).clamp_min(0)

    def primitive(self, x):
        xc = x.clamp(-1 / self.alpha, 1 / self.alpha)
        return -(self.alpha**2) / 2 * xc * xc.abs() + self.alpha * xc + 0.5

    def cuda_expr(self, x):
        return f"fmaxf(0.0f, {_lit(self.alpha)} - {_lit(self.alpha**2)} * fabsf({x}))"


@_register
class PiecewiseExp(Surrogate):
    r"""Piecewise exponential (SpikingJelly ``PiecewiseExp``; SLAYER-like). alpha: decay rate.

    g'(x) = alpha/2 exp(-alpha |x|);  g(x) = H(x) - sign(x) exp(-alpha |x|) / 2.
    """

    name = "piecewise_exp"
    default_alpha = 1.0

    def derivative(self, x):
        return self.alpha / 2 * torch.exp(-self.alpha * x.abs())

    def primitive(self, x):
        s = _sign(x)
        return _step(x) - s * torch.exp(-self.alpha * s * x) / 2

    def cuda_expr(self, x):
        return f"({_lit(self.alpha / 2)} * expf({_lit(-self.alpha)} * fabsf({x})))"


@_register
class SoftSign(Surrogate):
    r"""Soft sign (SpikingJelly ``SoftSign``). alpha: sharpness.

    g(x) = (softsign(alpha x) + 1) / 2;  g'(x) = alpha / (2 (1 + alpha |x|)^2) = 1 / (2 alpha (1/alpha + |x|)^2).
    """

    name = "soft_sign"
    default_alpha = 2.0

    def derivative(self, x):
        return (self.alpha / 2) / (1 + self.alpha * x.abs()).square()

    def primitive(self, x):
        return (self.alpha * x / (1 + self.alpha * _sign(x) * x) + 1) / 2

    def cuda_expr(self, x):
        d = f"(1.0f + {_lit(self.alpha)} * fabsf({x}))"
        return f"({_lit(self.alpha / 2)} / ({d} * {d}))"


@_register
class SuperSpike(Surrogate):
    r"""SuperSpike / fast sigmoid as in SpikingJelly ``SuperSpike`` (Zenke & Ganguli 2018). alpha: gradient scale
    (the width is fixed to 1; see ``fast_sigmoid`` for the slope-parameterised snnTorch/Norse form).

    g'(x) = alpha / (1 + |x|)^2;  g(x) = 1/2 + alpha x / (1 + |x|) (antiderivative with g(0)=1/2, range 1/2 +- alpha).
    """

    name = "super_spike"
    default_alpha = 1.0

    def derivative(self, x):
        return self.alpha / (1 + x.abs()).square()

    def primitive(self, x):
        return 0.5 + self.alpha * x / (1 + _sign(x) * x)

    def cuda_expr(self, x):
        d = f"(1.0f + fabsf({x}))"
        return f"({_lit(self.alpha)} / ({d} * {d}))"


@_register
class Erf(Surrogate):
    r"""Gaussian error function (SpikingJelly ``Erf``; Esser et al. 2015). alpha: sharpness.

    g(x) = erfc(-alpha x) / 2;  g'(x) = alpha / sqrt(pi) exp(-(alpha x)^2).
    """

    name = "erf"
    default_alpha = 2.0

    def derivative(self, x):
        return self.alpha / math.sqrt(math.pi) * torch.exp(-(self.alpha * x).square())

    def primitive(self, x):
        return torch.erfc(-self.alpha * x) / 2

    def cuda_expr(self, x):
        ax = f"({_lit(self.alpha)} * ({x}))"
        return f"({_lit(self.alpha / math.sqrt(math.pi))} * expf(-{ax} * {ax}))"


@_register
class PiecewiseLeakyReLU(Surrogate):
    r"""Piecewise leaky ReLU (SpikingJelly ``PiecewiseLeakyReLU`` with w=alpha). alpha: half-width w; hparam c:
    slope outside.

    g'(x) = 1/(2w) if |x| < w else c;
    g(x) = c x + c w (x < -w), x/(2w) + 1/2 (|x| < w), c x - c w + 1 (x > w).
    """

    name = "piecewise_leaky_relu"
    default_alpha = 1.0
    hparam_defaults = {"c": 0.01}

    def derivative(self, x):
        return _select(x.abs() < self.alpha, 1 / (2 * self.alpha), self.c, x)

    def primitive(self, x):
        w, c = self.alpha, self.c
        outside = torch.where(x < 0, c * x + c * w, c * x - c * w + 1)
        return torch.where(x.abs() < w, x / (2 * w) + 0.5, outside)

    def cuda_expr(self, x):
        return f"((fabsf({x}) < {_lit(self.alpha)}) ? {_lit(1 / (2 * self.alpha))} : {_lit(self.c)})"


@_register
class Rect(Surrogate):
    r"""Rectangle / boxcar (SpikingJelly ``Rect``; STE-like, Wu et al. 2018). alpha: height (width 1/alpha).

    g'(x) = alpha 1[|x| < 1/(2 alpha)];  g(x) = clamp(alpha x + 1/2, 0, 1).
    """

    name = "rect"
    default_alpha = 1.0

    def derivative(self, x):
        return _select(x.abs() < 0.5 / self.alpha, self.alpha, 0.0, x)

    def primitive(self, x):
        return torch.where(x.abs() < 0.5 / self.alpha, self.alpha * x + 0.5, _step(x))

    def cuda_expr(self, x):
        return f"((fabsf({x}) < {_lit(0.5 / self.alpha)}) ? {_lit(self.alpha)} : 0.0f)"


@_register
class S2NN(Surrogate):
    r"""S2NN (SpikingJelly ``S2NN``; Suetake et al. 2023). alpha: sigmoid sharpness (x < 0); hparam beta: log scale.

    g'(x) = alpha sigma(alpha x)(1 - sigma(alpha x)) (x < 0), beta / (x + 1) (x >= 0);
    g(x) = sigma(alpha x) (x < 0), beta log(x + 1) + 1/2 (x >= 0).
    """

    name = "s2nn"
    default_alpha = 4.0
    hparam_defaults = {"beta": 1.0}

    def derivative(self, x):
        return torch.where(x < 0, _sigmoid_slope(x, self.alpha), self.beta / (x.clamp_min(0) + 1))

    def primitive(self, x):
        x_pos = torch.where(x < 0, torch.zeros_like(x), x)  # keeps d/dx = 1 at x = 0, unlike clamp_min
        return torch.where(x < 0, torch.sigmoid(self.alpha * x), self.beta * torch.log1p(x_pos) + 0.5)

    def cuda_expr(self, x):
        x = f"({x})"
        return f"(({x} < 0.0f) ? {_sigmoid_slope_c(x, self.alpha)} : ({_lit(self.beta)} / ({x} + 1.0f)))"


@_register
class QPseudoSpike(Surrogate):
    r"""q-PseudoSpike (SpikingJelly ``QPseudoSpike``; Sun et al. 2022). alpha > 1: tail factor (smaller = heavier).

    g'(x) = (1 + 2|x|/(alpha - 1))^(-alpha);  g(x) = H(x) - sign(x) (1 + 2|x|/(alpha - 1))^(1 - alpha) / 2.
    """

    name = "q_pseudo_spike"
    default_alpha = 2.0

    def _check(self):
        if not self.alpha > 1:
            raise ValueError(f"surrogate '{self.name}' needs alpha > 1, got {self.alpha}")

    def derivative(self, x):
        return (1 + 2 / (self.alpha - 1) * x.abs()).pow(-self.alpha)

    def primitive(self, x):
        s = _sign(x)
        return _step(x) - s * (1 + 2 / (self.alpha - 1) * s * x).pow(1 - self.alpha) / 2

    def cuda_expr(self, x):
        return f"powf(1.0f + {_lit(2 / (self.alpha - 1))} * fabsf({x}), {_lit(-self.alpha)})"


@_register
class LogTailedReLU(Surrogate):
    r"""Log-tailed ReLU (SpikingJelly ``LogTailedReLU``; Cai et al. 2017). alpha >= 0: slope for x <= 0.

    g'(x) = alpha (x <= 0), 1 (0 < x <= 1), 1/x (x > 1);  g(x) = alpha x, x, log(x) + 1 on the same pieces.
    """

    name = "log_tailed_relu"
    default_alpha = 0.0

    def _check(self):
        if not self.alpha >= 0:
            raise ValueError(f"surrogate '{self.name}' needs alpha >= 0, got {self.alpha}")

    def derivative(self, x):
        return (1 / x.clamp_min(1)).masked_fill_(x <= 0, self.alpha)

    def primitive(self, x):
        inner = torch.where(x > 0, x, self.alpha * x)
        return torch.where(x > 1, torch.log(x.clamp_min(1)) + 1, inner)

    def cuda_expr(self, x):
        x = f"({x})"
        return f"(({x} <= 0.0f) ? {_lit(self.alpha)} : (1.0f / fmaxf({x}, 1.0f)))"


@_register
class NonzeroSignLogAbs(Surrogate):
    r"""Nonzero-sign log-abs (SpikingJelly ``NonzeroSignLogAbs``). alpha: sharpness.

    g'(x) = 1 / (1/alpha + |x|);  g(x) = sign(x) log(alpha |x| + 1) with sign(0) = +1.
    """

    name = "nonzero_sign_log_abs"
    default_alpha = 1.0

    def derivative(self, x):
        return 1 / (1 / self.alpha + x.abs())

    def primitive(self, x):
        s = _sign(x)
        return s * torch.log1p(self.alpha * s * x)

    def cuda_expr(self, x):
        return f"(1.0f / ({_lit(1 / self.alpha)} + fabsf({x})))"


@_register
class SquarewaveFourier(Surrogate):
    r"""Square-wave Fourier series (SpikingJelly ``SquarewaveFourierSeries`` with T_period=alpha).
    alpha: period T; hparam n (int >= 2): n - 1 harmonics.

    g'(x) = 4/T sum_{i=1}^{n-1} cos((2i - 1) w x);  g(x) = 1/2 + 2/pi sum_{i=1}^{n-1} sin((2i - 1) w x) / (2i - 1),
    with w = 2 pi / T.
    """

    name = "squarewave_fourier"
    default_alpha = 8.0
    hparam_defaults = {"n": 2}

    def _check(self):
        super()._check()
        if self.n < 2:
            raise ValueError(f"surrogate '{self.name}' needs n >= 2, got {self.n}")

    def _harmonics(self) -> list[tuple[int, float]]:
        """(2i - 1, (2i - 1) w) for i = 1 .. n-1."""
        return [(2 * i - 1, (2 * i - 1) * 2 * math.pi / self.alpha) for i in range(1, self.n)]

    def derivative(self, x):
        return 4 / self.alpha * sum(torch.cos(f * x) for _, f in self._harmonics())

    def primitive(self, x):
        return 0.5 + 2 / math.pi * sum(torch.sin(f * x) / c for c, f in self._harmonics())

    def cuda_expr(self, x):
        terms = " + ".join(f"cosf({_lit(f)} * ({x}))" for _, f in self._harmonics())
        return f"({_lit(4 / self.alpha)} * ({terms}))"


@_register
class LeakyKReLU(Surrogate):
    r"""Leaky k-ReLU (SpikingJelly ``LeakyKReLU`` with k=alpha). alpha: slope k for x >= 0; hparam leak: slope below.

    g'(x) = k (x >= 0), leak (x < 0);  g(x) = k x (x >= 0), leak x (x < 0).
    """

    name = "leaky_k_relu"
    default_alpha = 1.0
    hparam_defaults = {"leak": 0.0}

    def derivative(self, x):
        return _select(x >= 0, self.alpha, self.leak, x)

    def primitive(self, x):
        return torch.where(x >= 0, self.alpha * x, self.leak * x)

    def cuda_expr(self, x):
        return f"((({x}) >= 0.0f) ? {_lit(self.alpha)} : {_lit(self.leak)})"


@_register
class FakeNumericalGradient(Surrogate):
    r"""Fake numerical gradient (SpikingJelly ``FakeNumericalGradient``). alpha: gradient cap.

    g'(x) = min(1/|x|, alpha);  g(x) = alpha x (|x| <= 1/alpha), sign(x) (1 + log(alpha |x|)) otherwise.
    """

    name = "fake_numerical_gradient"
    default_alpha = 0.3

    def derivative(self, x):
        return self.alpha / (self.alpha * x.abs()).clamp_min(1)

    def primitive(self, x):
        s = _sign(x)
        tail = s * (1 + torch.log((self.alpha * s * x).clamp_min(1)))
        return torch.where(self.alpha * x.abs() <= 1, self.alpha * x, tail)

    def cuda_expr(self, x):
        return f"({_lit(self.alpha)} / fmaxf(1.0f, {_lit(self.alpha)} * fabsf({x})))"


@_register
class StraightThrough(Surrogate):
    r"""Straight-through estimator (SpikingJelly ``DeterministicPass``, snnTorch ``straight_through_estimator``).
    alpha: gradient scale.

    g'(x) = alpha;  g(x) = alpha x.
    """

    name = "straight_through"
    default_alpha = 1.0

    def derivative(self, x):
        return torch.full_like(x, self.alpha)

    def primitive(self, x):
        return self.alpha * x

    def cuda_expr(self, x):
        return _lit(self.alpha)


# ---------------------------------------------------------------- snnTorch / Norse / Sinabs / SLAYER functions
@_register
class FastSigmoid(Surrogate):
    r"""Fast sigmoid (snnTorch ``fast_sigmoid``, default slope 25; Norse ``super`` uses slope 100). alpha: slope k.

    g'(x) = 1 / (1 + k|x|)^2;  g(x) = 1/2 + x / (1 + k|x|) (antiderivative, range 1/2 +- 1/k).
    """

    name = "fast_sigmoid"
    default_alpha = 25.0

    def derivative(self, x):
        return 1 / (1 + self.alpha * x.abs()).square()

    def primitive(self, x):
        return 0.5 + x / (1 + self.alpha * _sign(x) * x)

    def cuda_expr(self, x):
        d = f"(1.0f + {_lit(self.alpha)} * fabsf({x}))"
        return f"(1.0f / ({d} * {d}))"


@_register
class Triangle(Surrogate):
    r"""Triangle as in Norse (``tent``/``triangle``: ``alpha * relu(1 - |x|)``; Bellec et al. 2018 use the dampening
    factor alpha = 0.3). alpha: height (scale); the half-width is fixed to 1. For a width-parameterised unit-area
    triangle use ``piecewise_quadratic``.

    g'(x) = alpha max(0, 1 - |x|);  g(x) = alpha (c - c|c|/2 + 1/2) with c = clamp(x, -1, 1).
    """

    name = "triangle"
    default_alpha = 0.3

    def derivative(self, x):
        return self.alpha * (1 - x.abs()).clamp_min(0)

    def primitive(self, x):
        xc = x.clamp(-1, 1)
        return self.alpha * (xc - xc * xc.abs() / 2 + 0.5)

    def cuda_expr(self, x):
        return f"({_lit(self.alpha)} * fmaxf(0.0f, 1.0f - fabsf({x})))"


@_register
class Gaussian(Surrogate):
    r"""Gaussian (Sinabs ``Gaussian``). alpha: standard deviation sigma; hparams mu (centre), grad_scale.

    g'(x) = grad_scale N(x; mu, sigma) = grad_scale / (sigma sqrt(2 pi)) exp(-(x - mu)^2 / (2 sigma^2));
    g(x) = grad_scale Phi((x - mu) / sigma).
    """

    name = "gaussian"
    default_alpha = 0.5
    hparam_defaults = {"mu": 0.0, "grad_scale": 1.0}

    def derivative(self, x):
        return self.grad_scale * _gauss(x, self.mu, self.alpha)

    def primitive(self, x):
        return self.grad_scale * _gauss_cdf(x, self.mu, self.alpha)

    def cuda_expr(self, x):
        return f"({_lit(self.grad_scale)} * {_gauss_c(f'({x})', self.mu, self.alpha)})"


@_register
class MultiGaussian(Surrogate):
    r"""Multi-Gaussian (Sinabs ``MultiGaussian``; Yin et al. 2021). alpha: sigma; hparams mu, h, s, grad_scale.

    g'(x) = grad_scale [(1 + h) N(x; mu, sigma) - h N(x; sigma, s sigma) - h N(x; -sigma, s sigma)];
    g(x) = the same combination of Gaussian CDFs (g(-inf) = 0, g(inf) = grad_scale (1 - h)).
    """

    name = "multi_gaussian"
    default_alpha = 0.5
    hparam_defaults = {"mu": 0.0, "h": 0.15, "s": 6.0, "grad_scale": 1.0}

    def _parts(self) -> list[tuple[float, float, float]]:
        """(weight, mean, std) of the three Gaussians."""
        sigma, wide = self.alpha, self.s * self.alpha
        return [(1 + self.h, self.mu, sigma), (-self.h, sigma, wide), (-self.h, -sigma, wide)]

    def derivative(self, x):
        return self.grad_scale * sum(w * _gauss(x, m, sd) for w, m, sd in self._parts())

    def primitive(self, x):
        return self.grad_scale * sum(w * _gauss_cdf(x, m, sd) for w, m, sd in self._parts())

    def cuda_expr(self, x):
        terms = " + ".join(f"{_lit(w)} * {_gauss_c(f'({x})', m, sd)}" for w, m, sd in self._parts())
        return f"({_lit(self.grad_scale)} * ({terms}))"


@_register
class SingleExponential(Surrogate):
    r"""Single exponential (Sinabs ``SingleExponential`` with threshold 1; SLAYER, Shrestha & Orchard 2018).
    alpha: width w; hparam grad_scale. SLAYER's scale_rho/(2 tau_rho) exp(-|x|/tau_rho) is alpha=tau_rho,
    grad_scale=scale_rho/2.

    g'(x) = grad_scale / w exp(-|x| / w);  g(x) = grad_scale (2 H(x) - sign(x) exp(-|x| / w)).
    """

    name = "single_exponential"
    default_alpha = 0.5
    hparam_defaults = {"grad_scale": 1.0}

    def derivative(self, x):
        return self.grad_scale / self.alpha * torch.exp(-x.abs() / self.alpha)

    def primitive(self, x):
        s = _sign(x)
        return self.grad_scale * (2 * _step(x) - s * torch.exp(-s * x / self.alpha))

    def cuda_expr(self, x):
        return f"({_lit(self.grad_scale / self.alpha)} * expf({_lit(-1 / self.alpha)} * fabsf({x})))"
