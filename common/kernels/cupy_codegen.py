"""CUDA source for the multi-step neuron kernels: one thread per neuron loops over time on ``[T, N]`` arrays.

A :class:`Variant` (neuron kind, dtype, reset mode, detach, surrogate) maps to a few ``extern "C" __global__``
kernels written as strings, with the surrogate's ``cuda_expr`` inlined:

* ``lif`` (IF/LIF through :class:`~common.kernels.params.ChargeParams`; decay_input, tau, v_reset are runtime
  scalars ``k_v, k_x, c``): forward ``h = k_v v + k_x x + c``, ``s = h >= v_th``, hard/soft reset; writes spikes,
  ``h_seq`` (skipped when null: inference) and ``v_last``. Backward recomputes ``s`` and ``g'(h - v_th)`` from
  ``h_seq`` and runs the BPTT recurrence of :mod:`common.kernels.fused` (null ``grad_v_last``: zero; null
  ``grad_v_init``: not written); ``grad_spike[t, i]`` is read at ``t * gs_t + i * gs_n`` (``gs_n = 0``: one value
  per step for all neurons, e.g. the gradient of a sum, read in place).
* ``clif``: forward ``h = gamma u + x``, ``m = m sigmoid(leak h) + s``, ``u = h - s (v_th + sigmoid(m))``; backward
  first recomputes ``m[t]`` from ``h_seq`` into the ``grad_x`` buffer (so only ``h_seq`` is saved), then runs BPTT
  through ``u`` and ``m`` (nothing detached) overwriting it with ``grad_x``.
* ``online_lif``: per step ``charge`` (``h = decay v + x``) and ``fire`` (``s = h >= theta[t]``, ``v = h - s theta``;
  theta is a device array filled between the two launches); backward is elementwise ``grad_s g'(h - theta[t])``.

Storage dtypes float32/float64/float16/bfloat16; arithmetic is float (double for float64). Half types are loaded and
stored through bit conversions (PTX ``cvt`` for fp16, integer round-to-nearest-even for bf16), so the source needs
no header (no include-path problems with NVRTC). ``h`` is rounded to the storage type before the comparison, so the
backward recomputes exactly the forward spikes in every dtype. With ``--fmad=false`` (default in :data:`CONFIG`) the
float32 charge is rounded like the torch reference and spikes are bitwise identical.
"""
from __future__ import annotations

import ctypes
import glob
import hashlib
import os
from dataclasses import dataclass, field

from common.kernels.cexpr import to_double


@dataclass
class CompileConfig:
    """Module-level NVRTC settings: ``options`` passed to every compile, ``threads`` per block."""

    options: tuple[str, ...] = ("--fmad=false",)
    threads: int = 256


CONFIG = CompileConfig()


@dataclass(frozen=True)
class CType:
    storage: str  # C type in global memory
    compute: str  # C type of the arithmetic
    load: str  # format string converting a stored value to ``compute``
    store: str  # format string converting a ``compute`` value to ``storage``
    helpers: str = ""


_F16 = """\
__device__ __forceinline__ float snn_ld_f16(unsigned short b) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(b));
    return f;
}
__device__ __forceinline__ unsigned short snn_st_f16(float f) {
    unsigned short b;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(b) : "f"(f));  // round to nearest even
    return b;
}
"""
_BF16 = """\
__device__ __forceinline__ float snn_ld_bf16(unsigned short b) { return __uint_as_float(((unsigned int)b) << 16); }
__device__ __forceinline__ unsigned short snn_st_bf16(float f) {
    unsigned int u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (unsigned short)((u >> 16) | 0x40u);  // quiet NaN
    u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest even
    return (unsigned short)(u >> 16);
}
"""
DTYPES = {
    "float32": CType("float", "float", "{}", "{}"),
    "float64": CType("double", "double", "{}", "{}"),
    "float16": CType("unsigned short", "float", "snn_ld_f16({})", "snn_st_f16({})", _F16),
    "bfloat16": CType("unsigned short", "float", "snn_ld_bf16({})", "snn_st_bf16({})", _BF16),
}
_COMMON = """\
__device__ __forceinline__ float snn_sigmoid(float z) { return 1.0f / (1.0f + expf(-z)); }
__device__ __forceinline__ double snn_sigmoid(double z) { return 1.0 / (1.0 + exp(-z)); }
"""


@dataclass(frozen=True)
class Param:
    name: str
    kind: str  # "ptr" (storage-type array), "theta" (compute-type array), "scalar" (compute type), "index" (long long)


@dataclass(frozen=True)
class Kernel:
    name: str
    params: tuple[Param, ...]
    source: str


@dataclass(frozen=True)
class Variant:
    """One compiled specialisation. ``sg`` is ``surrogate.cuda_expr("over")`` (float C expression)."""

    kind: str
    dtype: str
    sg: str
    hard_reset: bool = True
    detach_reset: bool = False
    sigmoid_carry: bool = False
    tag: str = field(init=False)

    def __post_init__(self):
        if self.kind not in GENERATORS:
            raise ValueError(f"unknown kernel kind {self.kind!r}; valid: {', '.join(GENERATORS)}")
        if self.dtype not in DTYPES:
            raise ValueError(f"unsupported dtype {self.dtype!r} for CUDA kernels; valid: {', '.join(DTYPES)}")
        flags = {"lif": f"{'hard' if self.hard_reset else 'soft'}_{'det' if self.detach_reset else 'att'}",
                 "clif": "carry" if self.sigmoid_carry else "raw", "online_lif": "ots"}[self.kind]
        digest = hashlib.sha1(self.sg.encode()).hexdigest()[:8]
        object.__setattr__(self, "tag", f"{self.kind}_{flags}_{self.dtype}_{digest}")

    @classmethod
    def make(cls, kind: str, dtype: str, surrogate, **flags) -> Variant:
        return cls(kind, dtype, surrogate.cuda_expr("over"), **flags)

    @property
    def ctype(self) -> CType:
        return DTYPES[self.dtype]

    def sg_expr(self) -> str:
        expr = f"({self.sg})"
        return to_double(expr) if self.ctype.compute == "double" else expr


def _signature(name: str, params: list[Param], ct: CType) -> str:
    decl = {"ptr": f"{ct.storage}* __restrict__ ", "scalar": f"const {ct.compute} ", "index": "const long long ",
            "theta": f"const {ct.compute}* __restrict__ "}
    args = ",\n    ".join(decl[p.kind] + p.name for p in params)
    return f'extern "C" __global__ void {name}(\n    {args})\n'


def _params(ptrs: str, scalars: str, index: str = "steps n", theta: str = "") -> list[Param]:
    kinds = (("ptr", ptrs), ("theta", theta), ("scalar", scalars), ("index", index))
    return [Param(name, kind) for kind, names in kinds for name in names.split()]


def _kernel(name: str, params: list[Param], body: str, v: Variant) -> Kernel:
    ct = v.ctype
    body = (body.replace("$C", ct.compute).replace("$SG", v.sg_expr())
            .replace("$ONE", "(" + ct.compute + ")1").replace("$ZERO", "(" + ct.compute + ")0"))
    body = _expand(body, "LD", ct.load)
    body = _expand(body, "ST", ct.store)
    head = "    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;\n    if (i >= n) return;\n"
    return Kernel(name, tuple(params), _signature(name, params, ct) + "{\n" + head + body + "}\n")


def _expand(body: str, macro: str, fmt: str) -> str:
    """Replace ``macro(arg)`` (balanced parentheses) by ``fmt.format(arg)``."""
    out, start = [], 0
    token = macro + "("
    while (pos := body.find(token, start)) >= 0:
        if pos and (body[pos - 1].isalnum() or body[pos - 1] == "_"):  # part of a longer identifier
            out.append(body[start:pos + len(token)])
            start = pos + len(token)
            continue
        depth, end = 1, pos + len(token)
        while depth:
            depth += {"(": 1, ")": -1}.get(body[end], 0)
            end += 1
        out += [body[start:pos], fmt.format(_expand(body[pos + len(token):end - 1], macro, fmt))]
        start = end
    return "".join(out + [body[start:]])


def _lif(v: Variant) -> list[Kernel]:
    reset = "fired ? v_reset : h" if v.hard_reset else "fired ? h - v_th : h"
    if v.hard_reset:
        dv_dh = "$ONE - s" if v.detach_reset else "$ONE - s + (v_reset - h) * sg"
    else:
        dv_dh = "$ONE" if v.detach_reset else "$ONE - v_th * sg"
    fwd = f"""\
    $C v = LD(v_init[i]);
    for (long long t = 0; t < steps; ++t) {{
        const long long k = t * n + i;
        const $C h = LD(ST(k_v * v + k_x * LD(x_seq[k]) + c));
        const bool fired = h >= v_th;
        if (h_seq) h_seq[k] = ST(h);
        spike_seq[k] = ST(fired ? $ONE : $ZERO);
        v = {reset};
    }}
    v_last[i] = ST(v);
"""
    bwd = f"""\
    $C grad_v = grad_v_last ? LD(grad_v_last[i]) : $ZERO;
    for (long long t = steps - 1; t >= 0; --t) {{
        const long long k = t * n + i;
        const $C h = LD(h_seq[k]);
        const $C over = h - v_th;
        const $C sg = $SG;
        const $C s = over >= $ZERO ? $ONE : $ZERO;
        const $C dv_dh = {dv_dh};
        const $C grad_h = LD(grad_spike_seq[t * gs_t + i * gs_n]) * sg + grad_v * dv_dh;
        grad_x_seq[k] = ST(grad_h * k_x);
        grad_v = grad_h * k_v;
    }}
    if (grad_v_init) grad_v_init[i] = ST(grad_v);
"""
    return [_kernel(f"snn_fwd_{v.tag}", _params("x_seq v_init spike_seq h_seq v_last", "k_v k_x c v_th v_reset"),
                    fwd, v),
            _kernel(f"snn_bwd_{v.tag}",
                    _params("grad_spike_seq grad_v_last h_seq grad_x_seq grad_v_init", "k_v k_x v_th v_reset",
                             "steps n gs_t gs_n"), bwd, v)]


def _clif(v: Variant) -> list[Kernel]:
    carry = "m = sig_m;" if v.sigmoid_carry else ""
    m_prev = "snn_sigmoid(LD(grad_x_seq[k - n]))" if v.sigmoid_carry else "LD(grad_x_seq[k - n])"
    grad_m_raw = ("(grad_m - grad_u * s) * b * ($ONE - b)" if v.sigmoid_carry
                  else "grad_m - grad_u * s * b * ($ONE - b)")
    fwd = f"""\
    $C u = LD(u_init[i]);
    $C m = LD(m_init[i]);
    for (long long t = 0; t < steps; ++t) {{
        const long long k = t * n + i;
        const $C h = LD(ST(gamma * u + LD(x_seq[k])));
        const $C s = h >= v_th ? $ONE : $ZERO;
        m = m * snn_sigmoid(leak * h) + s;
        const $C sig_m = snn_sigmoid(m);
        u = h - s * (v_th + sig_m);
        {carry}
        if (h_seq) h_seq[k] = ST(h);
        spike_seq[k] = ST(s);
    }}
    u_last[i] = ST(u);
    m_last[i] = ST(m);
"""
    bwd = f"""\
    $C m = LD(m_init[i]);
    for (long long t = 0; t < steps; ++t) {{  // recompute m[t] (before the carry) into grad_x_seq
        const long long k = t * n + i;
        const $C h = LD(h_seq[k]);
        m = m * snn_sigmoid(leak * h) + (h >= v_th ? $ONE : $ZERO);
        grad_x_seq[k] = ST(m);
        {"m = snn_sigmoid(m);" if v.sigmoid_carry else ""}
    }}
    $C grad_u = LD(grad_u_last[i]);
    $C grad_m = LD(grad_m_last[i]);
    for (long long t = steps - 1; t >= 0; --t) {{
        const long long k = t * n + i;
        const $C h = LD(h_seq[k]);
        const $C over = h - v_th;
        const $C sg = $SG;
        const $C s = over >= $ZERO ? $ONE : $ZERO;
        const $C a = snn_sigmoid(leak * h);
        const $C b = snn_sigmoid(LD(grad_x_seq[k]));
        const $C m_prev = t > 0 ? {m_prev} : LD(m_init[i]);
        const $C grad_m_raw = {grad_m_raw};
        const $C grad_s = LD(grad_spike_seq[k]) + grad_m_raw - grad_u * (v_th + b);
        const $C grad_h = grad_u + grad_s * sg + grad_m_raw * m_prev * a * ($ONE - a) * leak;
        grad_x_seq[k] = ST(grad_h);
        grad_u = grad_h * gamma;
        grad_m = grad_m_raw * a;
    }}
    grad_u_init[i] = ST(grad_u);
    grad_m_init[i] = ST(grad_m);
"""
    return [_kernel(f"snn_fwd_{v.tag}", _params("x_seq u_init m_init spike_seq h_seq u_last m_last",
                                                "gamma leak v_th"), fwd, v),
            _kernel(f"snn_bwd_{v.tag}", _params("grad_spike_seq grad_u_last grad_m_last h_seq m_init grad_x_seq "
                                                "grad_u_init grad_m_init", "gamma leak v_th"), bwd, v)]


def _online(v: Variant) -> list[Kernel]:
    charge = """\
    const long long k = t * n + i;
    h_seq[k] = ST(decay * LD(v[i]) + LD(x_seq[k]));
"""
    fire = """\
    const long long k = t * n + i;
    const $C h = LD(h_seq[k]);
    const bool fired = h >= theta[t];
    spike_seq[k] = ST(fired ? $ONE : $ZERO);
    v[i] = ST(fired ? h - theta[t] : h);
"""
    bwd = """\
    for (long long t = 0; t < steps; ++t) {
        const long long k = t * n + i;
        const $C over = LD(h_seq[k]) - theta[t];
        grad_x_seq[k] = ST(LD(grad_spike_seq[k]) * $SG);
    }
"""
    return [_kernel(f"snn_charge_{v.tag}", _params("x_seq v h_seq", "decay", "t n"), charge, v),
            _kernel(f"snn_fire_{v.tag}", _params("h_seq spike_seq v", "", "t n", theta="theta"), fire, v),
            _kernel(f"snn_bwd_{v.tag}", _params("grad_spike_seq h_seq grad_x_seq", "", theta="theta"), bwd, v)]


GENERATORS = {"lif": _lif, "clif": _clif, "online_lif": _online}


def kernels(variant: Variant) -> dict[str, Kernel]:
    """The kernels of ``variant`` keyed by role (``fwd``/``bwd``, or ``charge``/``fire``/``bwd`` for online)."""
    return {k.name.split("_")[1]: k for k in GENERATORS[variant.kind](variant)}


def source(variants) -> str:
    """One translation unit with every kernel of ``variants`` (helpers emitted once)."""
    variants = list(variants)
    helpers = dict.fromkeys(v.ctype.helpers for v in variants if v.ctype.helpers)
    kernel_src = [k.source for v in variants for k in kernels(v).values()]
    return "\n".join([_COMMON, *helpers, *kernel_src])


# ---------------------------------------------------------------- NVRTC without a GPU (tests, cache warm-up)
def nvrtc():
    """CuPy's low-level NVRTC bindings (``cupy_backends.cuda.libs.nvrtc``), loading ``libnvrtc`` if needed.

    CuPy >= 14 finds libnvrtc itself (cuda-pathfinder: pip wheels, conda, ``CUDA_PATH``). Older CuPy only asks the
    dynamic loader; then the ``libnvrtc.so*`` of the NVIDIA pip wheels next to torch (``site-packages/nvidia/*/lib``)
    is loaded with ctypes (``RTLD_GLOBAL``), so no ``LD_LIBRARY_PATH`` is needed.
    """
    from cupy_backends.cuda.libs import nvrtc as lib

    try:
        lib.getVersion()
    except Exception:  # noqa: BLE001 - any loader error: try the wheel's library, then re-raise from getVersion
        for path in _wheel_nvrtc():
            ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
        lib.getVersion()
    return lib


def _wheel_nvrtc() -> list[str]:
    import torch

    site = os.path.dirname(os.path.dirname(torch.__file__))
    return sorted(p for p in glob.glob(os.path.join(site, "nvidia", "*", "lib", "libnvrtc.so*"))
                  if "builtins" not in p and "alt" not in p)


def compile_cubin(src: str, arch: str, options: tuple[str, ...] | None = None) -> bytes:
    """Compile ``src`` for ``arch`` (e.g. ``"sm_80"``) with NVRTC and return the cubin (runs ptxas: checks inline PTX).
    Needs no GPU. Raises ``RuntimeError`` with the compiler log on failure."""
    lib = nvrtc()
    prog = lib.createProgram(src, "snn_kernels.cu", [], [])
    try:
        try:
            lib.compileProgram(prog, [f"-arch={arch}", *(CONFIG.options if options is None else options)])
        except Exception as err:
            raise RuntimeError(f"NVRTC failed for {arch}: {err}\n{lib.getProgramLog(prog)}") from err
        return lib.getCUBIN(prog)
    finally:
        lib.destroyProgram(prog)
