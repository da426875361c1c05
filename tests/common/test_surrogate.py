"""Tests for common.surrogate.

References: autograd of each primitive g (float64), SpikingJelly 2.0 and snnTorch backward passes, the Sinabs/Norse
formulas transcribed below, and the generated C expressions compiled with g++ (evaluated via ctypes) and nvcc (PTX).
"""
from __future__ import annotations

import ctypes
import math
import shutil
import subprocess

import pytest
import torch

from common import surrogate

NAMES = surrogate.names()

# A non-default setting per surrogate that changes every parameter it has.
VARIANTS = {
    "atan": {"alpha": 3.0},
    "erf": {"alpha": 1.3},
    "fake_numerical_gradient": {"alpha": 0.7},
    "fast_sigmoid": {"alpha": 5.0},
    "gaussian": {"alpha": 0.8, "mu": 0.1, "grad_scale": 2.0},
    "leaky_k_relu": {"alpha": 0.7, "leak": 0.2},
    "log_tailed_relu": {"alpha": 0.1},
    "multi_gaussian": {"alpha": 0.4, "mu": 0.05, "h": 0.3, "s": 4.0, "grad_scale": 1.5},
    "nonzero_sign_log_abs": {"alpha": 2.5},
    "piecewise_exp": {"alpha": 2.0},
    "piecewise_leaky_relu": {"alpha": 0.6, "c": 0.05},
    "piecewise_quadratic": {"alpha": 2.0},
    "q_pseudo_spike": {"alpha": 3.5},
    "rect": {"alpha": 2.0},
    "s2nn": {"alpha": 3.0, "beta": 0.5},
    "sigmoid": {"alpha": 7.0},
    "single_exponential": {"alpha": 0.3, "grad_scale": 0.5},
    "soft_sign": {"alpha": 0.5},
    "squarewave_fourier": {"alpha": 6.0, "n": 4},
    "straight_through": {"alpha": 0.5},
    "super_spike": {"alpha": 2.0},
    "triangle": {"alpha": 1.0},
}
CASES = [(name, {}) for name in NAMES] + [(name, VARIANTS[name]) for name in NAMES]
CASE_IDS = [f"{name}-default" for name in NAMES] + [f"{name}-variant" for name in NAMES]


def _points(sg: surrogate.Surrogate, dtype=torch.float64) -> torch.Tensor:
    """1201 points on [-3, 3], points near 0 and every piecewise boundary (+-alpha, +-1/alpha, +-0.5/alpha, +-1)."""
    special = [0.0, 1e-12, 1e-9, 1e-6, 1e-4, 1e-2, 0.5, 1.0]
    if sg.alpha > 0:
        special += [sg.alpha, 1 / sg.alpha, 0.5 / sg.alpha]
    special = [v for v in special if v <= 10]
    pts = torch.cat([torch.linspace(-3, 3, 1201, dtype=torch.float64), torch.tensor(special + [-v for v in special],
                                                                                     dtype=torch.float64)])
    return pts.to(dtype)


EXTREMES = [0.0, -0.0, 1e-30, -1e-30, 1e4, -1e4, 1e30, -1e30]


# ------------------------------------------------------------------ closed forms
@pytest.mark.parametrize(("name", "hp"), CASES, ids=CASE_IDS)
def test_derivative_matches_autograd_of_primitive(name, hp):
    """Also at kinks (e.g. rect at +-0.5/alpha, piecewise_leaky_relu at +-w, leaky_k_relu/log_tailed_relu/s2nn at 0):
    the primitives pick the same one-sided branch as derivative(), so no point is skipped."""
    sg = surrogate.get(name, **hp)
    x = _points(sg).requires_grad_()
    (grad,) = torch.autograd.grad(sg.primitive(x).sum(), x)
    torch.testing.assert_close(sg.derivative(x.detach()), grad, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize(("name", "hp"), CASES, ids=CASE_IDS)
def test_backward_of_forward_is_derivative(name, hp):
    sg = surrogate.get(name, **hp)
    x = _points(sg).requires_grad_()
    upstream = torch.rand_like(x)
    sg(x).backward(upstream)
    torch.testing.assert_close(x.grad, upstream * sg.derivative(x.detach()), rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize("name", NAMES)
def test_forward_is_heaviside(name, dtype):
    sg = surrogate.get(name)
    x = torch.tensor([-3.0, -1e-6, -0.0, 0.0, 1e-6, 2.0, -1e30, 1e30], dtype=torch.float64).to(dtype)
    out = sg(x)
    assert out.dtype == dtype and out.shape == x.shape
    assert out.tolist() == [0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0, 1.0]


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.float64])
@pytest.mark.parametrize(("name", "hp"), CASES, ids=CASE_IDS)
def test_derivative_finite_and_dtype(name, hp, dtype):
    sg = surrogate.get(name, **hp)
    x = torch.cat([_points(sg), torch.tensor(EXTREMES, dtype=torch.float64)]).to(dtype)
    x = x[torch.isfinite(x)]  # float16 turns +-1e30 into +-inf, where the periodic squarewave_fourier is undefined
    d = sg.derivative(x)
    assert d.dtype == dtype and d.shape == x.shape
    assert torch.isfinite(d).all(), x[~torch.isfinite(d)]


# ------------------------------------------------------------------ other libraries
_SJ_ALPHA = ["atan", "sigmoid", "piecewise_quadratic", "piecewise_exp", "soft_sign", "super_spike", "erf", "rect",
             "q_pseudo_spike", "log_tailed_relu", "nonzero_sign_log_abs", "fake_numerical_gradient"]
_SJ_CLASS = {"atan": "ATan", "sigmoid": "Sigmoid", "piecewise_quadratic": "PiecewiseQuadratic",
             "piecewise_exp": "PiecewiseExp", "soft_sign": "SoftSign", "super_spike": "SuperSpike", "erf": "Erf",
             "rect": "Rect", "q_pseudo_spike": "QPseudoSpike", "log_tailed_relu": "LogTailedReLU",
             "nonzero_sign_log_abs": "NonzeroSignLogAbs", "fake_numerical_gradient": "FakeNumericalGradient",
             "piecewise_leaky_relu": "PiecewiseLeakyReLU", "s2nn": "S2NN",
             "squarewave_fourier": "SquarewaveFourierSeries", "leaky_k_relu": "LeakyKReLU",
             "straight_through": "DeterministicPass"}


def _sj_kwargs(name: str, sg: surrogate.Surrogate) -> dict:
    """Our parameters in SpikingJelly's names."""
    if name in _SJ_ALPHA:
        return {"alpha": sg.alpha}
    return {"piecewise_leaky_relu": lambda: {"w": sg.alpha, "c": sg.c},
            "s2nn": lambda: {"alpha": sg.alpha, "beta": sg.beta},
            "squarewave_fourier": lambda: {"n": sg.n, "T_period": sg.alpha},
            "leaky_k_relu": lambda: {"k": sg.alpha, "leak": sg.leak},
            "straight_through": dict}[name]()


def _grad(fn, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.clone().requires_grad_()
    out = fn(x)
    out.sum().backward()
    return out.detach(), x.grad


@pytest.mark.parametrize("variant", [False, True], ids=["default", "variant"])
@pytest.mark.parametrize("name", sorted(_SJ_CLASS))
def test_matches_spikingjelly(name, variant):
    """Same forward and backward as SpikingJelly 2.0; the default case builds SJ with *its* defaults.
    atol 1e-13: SJ's alpha*s*(1-s) (sigmoid, s2nn) cancels in the tails, where ours keeps full precision."""
    sj = pytest.importorskip("spikingjelly.activation_based.surrogate")
    if variant and name == "straight_through":
        pytest.skip("SpikingJelly's DeterministicPass has no scale parameter")
    sg = surrogate.get(name, **(VARIANTS[name] if variant else {}))
    ref = getattr(sj, _SJ_CLASS[name])(**(_sj_kwargs(name, sg) if variant else {}))
    x = _points(sg)
    if name == "fake_numerical_gradient":  # SJ: sign(-0.0)/(-0.0) = -inf at x = -0.0; ours gives alpha there
        assert sg.derivative(torch.tensor([-0.0])).item() == pytest.approx(sg.alpha)
        x = x[~((x == 0) & torch.signbit(x))]
    out, grad = _grad(sg, x)
    ref_out, ref_grad = _grad(ref, x)
    assert torch.equal(out, ref_out)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-12, atol=1e-13)


# name -> (snnTorch kwarg for our alpha, our alpha matching snnTorch's default)
_SNN = {"atan": ("alpha", 2.0), "fast_sigmoid": ("slope", 25.0), "sigmoid": ("slope", 25.0)}


@pytest.mark.parametrize("variant", [False, True], ids=["default", "variant"])
@pytest.mark.parametrize("name", sorted(_SNN))
def test_matches_snntorch(name, variant):
    """snnTorch's backward (its forward is x > 0, so only gradients are compared). The default case builds
    snnTorch with its defaults (sigmoid: slope 25, while ours defaults to SpikingJelly's alpha 4)."""
    snn_sg = pytest.importorskip("snntorch.surrogate")
    key, snn_default = _SNN[name]
    sg = surrogate.get(name, alpha=VARIANTS[name]["alpha"] if variant else snn_default)
    ref = getattr(snn_sg, name)(**({key: sg.alpha} if variant else {}))
    x = _points(sg)
    torch.testing.assert_close(_grad(sg, x)[1], _grad(ref, x)[1], rtol=1e-12, atol=1e-15)


def _gauss(x: float, mu: float, sigma: float) -> float:
    return math.exp(-((x - mu) ** 2) / (2 * sigma**2)) / (sigma * math.sqrt(2 * math.pi))


def _sinabs_gaussian(x, mu=0.0, sigma=0.5, grad_scale=1.0):
    return _gauss(x, mu, sigma) * grad_scale


def _sinabs_multi_gaussian(x, mu=0.0, sigma=0.5, h=0.15, s=6.0, grad_scale=1.0):
    wide = s * sigma
    return ((1 + h) * _gauss(x, mu, sigma) - h * _gauss(x, sigma, wide) - h * _gauss(x, -sigma, wide)) * grad_scale


def _sinabs_single_exponential(x, grad_width=0.5, grad_scale=1.0, threshold=1.0):
    width = threshold * grad_width
    return grad_scale / width * math.exp(-abs(x) / width)


def _norse_triangle(x, alpha=0.3):
    return max(0.0, 1 - abs(x)) * alpha


# name -> (reference g'(x) transcribed from the library, our params -> its kwargs)
_FORMULA_REFS = {
    "gaussian": (_sinabs_gaussian, lambda s: {"mu": s.mu, "sigma": s.alpha, "grad_scale": s.grad_scale}),
    "multi_gaussian": (_sinabs_multi_gaussian,
                       lambda s: {"mu": s.mu, "sigma": s.alpha, "h": s.h, "s": s.s, "grad_scale": s.grad_scale}),
    "single_exponential": (_sinabs_single_exponential, lambda s: {"grad_width": s.alpha, "grad_scale": s.grad_scale}),
    "triangle": (_norse_triangle, lambda s: {"alpha": s.alpha}),
}


@pytest.mark.parametrize("variant", [False, True], ids=["default", "variant"])
@pytest.mark.parametrize("name", sorted(_FORMULA_REFS))
def test_matches_library_formula(name, variant):
    """Sinabs (threshold 1) and Norse formulas; the default case uses the library's defaults."""
    ref, kwargs = _FORMULA_REFS[name]
    sg = surrogate.get(name, **(VARIANTS[name] if variant else {}))
    x = _points(sg)
    expected = torch.tensor([ref(v, **(kwargs(sg) if variant else {})) for v in x.tolist()], dtype=torch.float64)
    torch.testing.assert_close(_grad(sg, x)[1], expected, rtol=1e-12, atol=1e-15)


# ------------------------------------------------------------------ generated C / CUDA expressions
def _fn_name(name: str, variant: bool) -> str:
    return f"sg_{name}" + ("_v" if variant else "")


def _source(cuda: bool) -> str:
    """One function per case: ``void sg_<name>[_v](const float* x, float* y, int n)`` computing y = g'(x)."""
    lines = ["#include <cmath>", ""]
    for (name, hp), variant in zip(CASES, [False] * len(NAMES) + [True] * len(NAMES)):
        expr = surrogate.get(name, **hp).cuda_expr("xv")
        body = f"const float xv = x[i]; (void)xv; float sg = {expr}; y[i] = sg;"
        if cuda:
            lines += [f'extern "C" __global__ void {_fn_name(name, variant)}(const float* x, float* y, int n) {{',
                      "    const int i = blockIdx.x * blockDim.x + threadIdx.x;",
                      f"    if (i < n) {{ {body} }}", "}"]
        else:
            lines += [f'extern "C" void {_fn_name(name, variant)}(const float* x, float* y, int n) {{',
                      f"    for (int i = 0; i < n; ++i) {{ {body} }}", "}"]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def cpp_lib(tmp_path_factory):
    gxx = shutil.which("g++")
    if gxx is None:
        pytest.skip("g++ not found")
    work = tmp_path_factory.mktemp("sg_cpp")
    (work / "sg.cpp").write_text(_source(cuda=False))
    cmd = [gxx, "-O2", "-shared", "-fPIC", "-Wall", "-Wextra", "-Werror", str(work / "sg.cpp"),
           "-o", str(work / "libsg.so")]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    return ctypes.CDLL(str(work / "libsg.so"))


@pytest.mark.parametrize("variant", [False, True], ids=["default", "variant"])
@pytest.mark.parametrize("name", NAMES)
def test_cpp_expression_matches_derivative(cpp_lib, name, variant):
    """float32 C++ (g++ -O2, no fast-math) vs derivative() in float32: rtol 1e-5, atol 1e-6 (expf/cosf/powf of
    libm and torch's vectorised kernels differ by a few ulp; values near 0 of fast-decaying tails fall under atol)."""
    sg = surrogate.get(name, **(VARIANTS[name] if variant else {}))
    x = torch.cat([_points(sg), torch.tensor(EXTREMES, dtype=torch.float64)]).to(torch.float32).contiguous()
    y = torch.empty_like(x)
    fn = getattr(cpp_lib, _fn_name(name, variant))
    fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int]
    fn(x.data_ptr(), y.data_ptr(), x.numel())
    assert torch.isfinite(y).all()
    torch.testing.assert_close(y, sg.derivative(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_cuda_expressions_compile(arch, tmp_path):
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc not found")
    (tmp_path / "sg.cu").write_text(_source(cuda=True))
    cmd = [nvcc, "--ptx", f"-arch={arch}", "-Werror", "all-warnings", str(tmp_path / "sg.cu"),
           "-o", str(tmp_path / "sg.ptx")]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    ptx = (tmp_path / "sg.ptx").read_text()
    for name in NAMES:
        for variant in (False, True):
            assert f".entry {_fn_name(name, variant)}(" in ptx


def test_cuda_expr_inlines_float_literals():
    for name in NAMES:
        expr = surrogate.get(name).cuda_expr("xv")
        assert "alpha" not in expr and "double" not in expr
        assert not any(fn in expr for fn in ("exp(", "fabs(", "cos(", "pow(", "fmax(")), expr


# ------------------------------------------------------------------ registry and API
def test_names_sorted_and_complete():
    assert NAMES == sorted(NAMES) and len(NAMES) >= 18
    assert set(VARIANTS) == set(NAMES)
    for name in NAMES:
        cls = type(surrogate.get(name))
        assert cls.name == name and "g'(x)" in cls.__doc__


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="unknown surrogate 'nope'") as err:
        surrogate.get("nope")
    assert all(name in str(err.value) for name in NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_alpha_changes_derivative(name):
    sg = surrogate.get(name)
    other = surrogate.get(name, alpha=VARIANTS[name]["alpha"])
    assert other.alpha == VARIANTS[name]["alpha"] != sg.alpha
    x = _points(sg)
    assert not torch.allclose(sg.derivative(x), other.derivative(x))
    assert sg.cuda_expr("x") != other.cuda_expr("x")
    assert f"alpha={other.alpha}" in repr(other)


def test_invalid_parameters():
    with pytest.raises(TypeError, match="unknown hparams"):
        surrogate.get("atan", beta=1.0)
    with pytest.raises(ValueError, match="alpha > 1"):
        surrogate.get("q_pseudo_spike", alpha=1.0)
    with pytest.raises(ValueError, match="alpha > 0"):
        surrogate.get("sigmoid", alpha=0.0)
    with pytest.raises(ValueError, match="integer"):
        surrogate.get("squarewave_fourier", n=2.5)
    with pytest.raises(ValueError, match="n >= 2"):
        surrogate.get("squarewave_fourier", n=1)


def test_hparams_shown_and_module_stateless():
    sg = surrogate.get("multi_gaussian", h=0.2)
    assert repr(sg) == "MultiGaussian(alpha=0.5, mu=0.0, h=0.2, s=6.0, grad_scale=1.0)"
    assert sg.state_dict() == {} and list(sg.parameters()) == []
