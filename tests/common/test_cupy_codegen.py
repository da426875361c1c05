"""Generated CUDA kernels without a GPU: NVRTC compiles every variant (sm_80, sm_90); a golden source; and the very
same source compiled with g++ (CUDA keywords defined away, one loop over the grid) runs the ``cupy`` code paths on
CPU tensors, checked against the torch references (spikes bitwise, gradients 1e-5)."""
from __future__ import annotations

import ctypes
import os
import subprocess
from pathlib import Path

import pytest
import torch

from common import kernels, surrogate
from common.errors import UsageError
from common.kernels import cupy_codegen as cg
from common.kernels import cupy_ops
from common.kernels.clif import ClifParams
from common.kernels.online import OnlineParams
from common.kernels.params import ChargeParams

GOLDEN = Path(__file__).with_name("golden") / "cupy_lif_hard_att_float32_atan.cu"
ATAN = surrogate.get("atan")


def _structural_variants(sg):
    lif = [cg.Variant.make("lif", d, sg, hard_reset=h, detach_reset=det)
           for d in cg.DTYPES for h in (True, False) for det in (True, False)]
    clif = [cg.Variant.make("clif", d, sg, sigmoid_carry=c) for d in cg.DTYPES for c in (False, True)]
    return lif + clif + [cg.Variant.make("online_lif", d, sg) for d in cg.DTYPES]


def all_variants():
    """Every kind/reset/detach/dtype with atan, plus every registered surrogate (float and double math; the
    expression is inlined the same way in every kind)."""
    extra = [cg.Variant.make("lif", d, surrogate.get(name)) for name in surrogate.names() if name != "atan"
             for d in ("float32", "float64")]
    return _structural_variants(ATAN) + extra


def _nvrtc_available() -> bool:
    try:
        cg.nvrtc()
        return True
    except Exception:  # noqa: BLE001
        return False


@pytest.mark.skipif(not _nvrtc_available(), reason="CuPy's NVRTC bindings are not usable (pip install cupy-cudaNNx)")
@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_every_variant_compiles_with_nvrtc(arch):
    variants = all_variants()
    cubin = cg.compile_cubin(cg.source(variants), arch)
    assert len(variants) > 60 and cubin[:4] == b"\x7fELF"


def test_golden_source_is_stable():
    """Regenerate after an intended change with ``SNN_REGEN_GOLDEN=1 pytest tests/common/test_cupy_codegen.py``."""
    src = cg.source([cg.Variant.make("lif", "float32", ATAN, hard_reset=True, detach_reset=False)])
    if os.environ.get("SNN_REGEN_GOLDEN"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(src)
        pytest.skip(f"regenerated {GOLDEN}")
    assert src == GOLDEN.read_text(), "generated CUDA changed; see the docstring to regenerate the golden file"


def test_variant_validation():
    with pytest.raises(ValueError, match="unsupported dtype"):
        cg.Variant.make("lif", "int8", ATAN)
    with pytest.raises(ValueError, match="unknown kernel kind"):
        cg.Variant.make("plif", "float32", ATAN)
    a, b = (cg.Variant.make("lif", "float32", surrogate.get("sigmoid", alpha=a)) for a in (4.0, 5.0))
    assert a.tag != b.tag and a == cg.Variant.make("lif", "float32", surrogate.get("sigmoid"))


def test_cupy_request_without_gpu_is_one_clear_line(monkeypatch):
    x, v0 = torch.zeros(2, 3), torch.zeros(3)
    with pytest.raises(UsageError, match="^--backend cupy cannot run the lif neuron: it runs on cuda tensors, got "
                                         "cpu tensors$"):
        kernels.multistep("lif", "cupy", x, (v0,), ChargeParams.integrate_and_fire(), ATAN)
    monkeypatch.setattr(cupy_ops.importlib.util, "find_spec", lambda name: None)
    monkeypatch.setattr(cupy_ops.torch.version, "cuda", "12.4")
    assert cupy_ops.unavailable_reason("cpu").endswith("CuPy is not installed: pip install cupy-cuda12x "
                                                       "(torch is built for CUDA 12.4)")
    if not torch.cuda.is_available():
        kernels.forget()
        with pytest.warns(RuntimeWarning, match="backend 'cupy' cannot run here \\(torch sees no CUDA device"):
            assert kernels.resolve("lif", "auto", "cuda", torch.float32, ATAN) == "fused"
        with pytest.raises(UsageError, match="^--backend cupy cannot run the clif neuron: torch sees no CUDA device"):
            kernels.resolve("clif", "cupy", "cuda", torch.float32, ATAN)
        kernels.forget()


def test_float64_variant_uses_double_math():
    src = cg.kernels(cg.Variant.make("lif", "float64", surrogate.get("sigmoid")))["bwd"].source
    assert "expf" not in src and "exp(" in src and "double" in src


# ---------------------------------------------------------------- host emulation of the CUDA source
_PRELUDE = """\
#include <cmath>
#include <cstring>
#define __global__
#define __device__
#define __forceinline__ inline
struct snn_dim3 { unsigned int x; };
static snn_dim3 blockIdx, threadIdx, blockDim;
static inline unsigned int __float_as_uint(float f) { unsigned int u; std::memcpy(&u, &f, 4); return u; }
static inline float __uint_as_float(unsigned int u) { float f; std::memcpy(&f, &u, 4); return f; }
"""
_CTYPES = {"ptr": ctypes.c_void_p, "theta": ctypes.c_void_p, "index": ctypes.c_longlong}
SIGMOID = surrogate.get("sigmoid")
HOST_VARIANTS = [
    *(cg.Variant.make("lif", d, ATAN, hard_reset=h, detach_reset=det)
      for d in ("float32", "float64") for h in (True, False) for det in (True, False)),
    cg.Variant.make("lif", "float32", SIGMOID, hard_reset=True, detach_reset=False),
    cg.Variant.make("lif", "bfloat16", ATAN, hard_reset=True, detach_reset=False),
    *(cg.Variant.make("clif", d, ATAN, sigmoid_carry=c) for d in ("float32", "float64") for c in (False, True)),
    *(cg.Variant.make("online_lif", d, ATAN) for d in ("float32", "float64")),
]


def _wrapper(k: cg.Kernel, ct: cg.CType) -> str:
    decl = {"ptr": f"{ct.storage}* ", "theta": f"const {ct.compute}* ", "scalar": f"const {ct.compute} ",
            "index": "const long long "}
    params = ", ".join(decl[p.kind] + p.name for p in k.params)
    call = ", ".join(p.name for p in k.params)
    return (f'extern "C" void host_{k.name}({params}, long long blocks, unsigned int threads) {{\n'
            f"  blockDim.x = threads;\n  for (long long snn_b = 0; snn_b < blocks; ++snn_b)\n"
            f"    for (unsigned int snn_t = 0; snn_t < threads; ++snn_t) {{\n"
            f"      blockIdx.x = (unsigned int)snn_b; threadIdx.x = snn_t; {k.name}({call});\n    }}\n}}\n")


@pytest.fixture(scope="module")
def host_launch(tmp_path_factory):
    """``cupy_ops.launch`` replacement running the g++-compiled CUDA source on CPU tensors."""
    cxx = os.environ.get("CXX", "g++")
    out = tmp_path_factory.mktemp("host_kernels")
    wrappers = [_wrapper(k, v.ctype) for v in HOST_VARIANTS for k in cg.kernels(v).values()]
    (out / "k.cpp").write_text(_PRELUDE + cg.source(HOST_VARIANTS) + "".join(wrappers))
    try:
        subprocess.run([cxx, "-O1", "-ffp-contract=off", "-shared", "-fPIC", str(out / "k.cpp"), "-o",
                        str(out / "k.so")], check=True, capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError) as err:
        pytest.skip(f"no working host C++ compiler: {err}")
    lib = ctypes.CDLL(str(out / "k.so"))

    def launch(variant, role, device, **args):
        assert variant in HOST_VARIANTS, f"add {variant.tag} to HOST_VARIANTS"
        spec = cg.kernels(variant)[role]
        scalar = ctypes.c_double if variant.ctype.compute == "double" else ctypes.c_float
        fn = lib[f"host_{spec.name}"]
        fn.argtypes = [_CTYPES.get(p.kind, scalar) for p in spec.params] + [ctypes.c_longlong, ctypes.c_uint]
        values = [(0 if args[p.name] is None else args[p.name].data_ptr()) if p.kind in ("ptr", "theta")
                  else args[p.name] for p in spec.params]
        threads = 64
        fn(*values, (args["n"] + threads - 1) // threads, threads)

    return launch


@pytest.fixture
def emulated_cupy(monkeypatch, host_launch):
    """The ``cupy`` kernel functions (called directly: the dispatch would refuse CPU tensors) on the host launch."""
    monkeypatch.setattr(cupy_ops, "launch", host_launch)
    return kernels.BACKENDS.get("cupy").functions


N = 203  # several 64-thread blocks, the last one partial


def _grads(run, inputs, weights):
    """Outputs of ``run(*inputs)`` and d(sum_i <out_i, w_i>)/d inputs."""
    inputs = [t.clone().requires_grad_(True) for t in inputs]
    outs = run(*inputs)
    loss = sum((o * w).sum() for o, w in zip(outs, weights))
    return [o.detach() for o in outs], torch.autograd.grad(loss, inputs)


def _assert_same(a, b, tol):
    (outs_a, grads_a), (outs_b, grads_b) = a, b
    assert torch.equal(outs_a[0], outs_b[0]), "spikes differ"
    assert outs_a[0].sum() > 0
    for x, y in zip([*outs_a[1:], *grads_a], [*outs_b[1:], *grads_b]):
        torch.testing.assert_close(x, y, rtol=tol, atol=tol)


def _torch(kind):
    return kernels.BACKENDS.get("torch").functions[kind]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_emulated_cupy_lif_matches_torch(emulated_cupy, dtype):
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    gen = torch.Generator().manual_seed(1)
    for T in (1, 4, 32):
        x = torch.randn(T, N, generator=gen, dtype=dtype) + 0.5
        v0 = torch.rand(N, generator=gen, dtype=dtype) * 0.3
        weights = (torch.randn(T, N, generator=gen, dtype=dtype), torch.randn(N, generator=gen, dtype=dtype))
        for v_reset in (0.0, -0.1, None):
            for detach in (False, True):
                p = ChargeParams.leaky(1.6, True, 1.0, v_reset, detach)
                runs = [_grads(lambda x, v, fn=fn, p=p: fn(x, v, p, ATAN), (x, v0), weights)
                        for fn in (emulated_cupy["lif"], _torch("lif"))]
                _assert_same(*runs, tol)


def test_emulated_cupy_lif_other_surrogate_and_inference(emulated_cupy):
    p = ChargeParams.integrate_and_fire(1.0, 0.0, False)
    x, v0 = torch.randn(8, N) * 0.8, torch.zeros(N)
    w = (torch.randn(8, N), torch.randn(N))
    run = lambda fn: lambda x, v: fn(x, v, p, SIGMOID)  # noqa: E731
    cupy, ref = run(emulated_cupy["lif"]), run(_torch("lif"))
    _assert_same(_grads(cupy, (x, v0), w), _grads(ref, (x, v0), w), 1e-5)
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(cupy(x, v0), ref(x, v0)))


@pytest.mark.parametrize("reduce", ["sum", "per_step"])
def test_emulated_cupy_lif_reads_broadcast_spike_gradients_in_place(emulated_cupy, reduce):
    """A spike gradient with strides ``(s, 0)`` (the gradient of a sum) is read at ``t * gs_t`` by every thread."""
    p = ChargeParams.leaky(1.6, True, 1.0, 0.0, False)
    x = torch.randn(6, N, generator=torch.Generator().manual_seed(5)) + 0.5
    weight = torch.linspace(0.5, 2.0, 6)
    loss = {"sum": lambda s: s.sum(), "per_step": lambda s: (s.sum(1) * weight).sum()}[reduce]
    grads = []
    for fn in (emulated_cupy["lif"], _torch("lif")):
        xr = x.clone().requires_grad_(True)
        grads.append(torch.autograd.grad(loss(fn(xr, torch.zeros(N), p, ATAN)[0]), xr)[0])
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-5, atol=1e-6)


def test_emulated_cupy_lif_bfloat16_close_to_float32(emulated_cupy):
    """bf16 storage, float math: h is rounded to bf16 each step, so spikes mostly (not all) agree with float32."""
    p = ChargeParams.leaky(2.0, True, 1.0, 0.0, False)
    x = (torch.randn(16, N) + 1.0).to(torch.bfloat16)
    s16, v16 = emulated_cupy["lif"](x, torch.zeros(N, dtype=torch.bfloat16), p, ATAN)
    s32, _ = _torch("lif")(x.float(), torch.zeros(N), p, ATAN)
    assert s16.dtype == v16.dtype == torch.bfloat16
    assert (s16.float() == s32).float().mean() > 0.97


@pytest.mark.parametrize("carry", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_emulated_cupy_clif_matches_torch_loop(emulated_cupy, carry, dtype):
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    gen = torch.Generator().manual_seed(2)
    p = ClifParams.from_tau(2.0, 1.0, carry)
    for T in (1, 4, 32):
        x = torch.randn(T, N, generator=gen, dtype=dtype) + 0.6
        u0, m0 = torch.rand(N, generator=gen, dtype=dtype) * 0.3, torch.rand(N, generator=gen, dtype=dtype)
        w = (torch.randn(T, N, generator=gen, dtype=dtype), *torch.randn(2, N, generator=gen, dtype=dtype))
        runs = [_grads(lambda x, u, m, fn=fn: fn(x, u, m, p, ATAN), (x, u0, m0), w)
                for fn in (emulated_cupy["clif"], _torch("clif"))]
        _assert_same(*runs, tol)
    with torch.no_grad():
        assert torch.equal(emulated_cupy["clif"](x, u0, m0, p, ATAN)[0], runs[1][0][0])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_emulated_cupy_online_matches_module(emulated_cupy, dtype):
    from common.neuron.online import OnlineLIFNode

    gen = torch.Generator().manual_seed(3)
    x = torch.randn(6, 4, 51, generator=gen, dtype=dtype) + 0.4  # [T, batch, features]: theta uses the whole step
    w = torch.randn(6, 4, 51, generator=gen, dtype=dtype)
    ref_node, node = OnlineLIFNode(tau=2.0, backend="torch"), OnlineLIFNode(tau=2.0, backend="torch")

    def threshold(h):
        theta = node.threshold(h)
        node.t += 1
        return theta

    ref = _grads(lambda x: (ref_node(x), ref_node.v), (x,), (w, w[0]))
    mine = _grads(lambda x: emulated_cupy["online_lif"](x, torch.zeros_like(x[0]), OnlineParams(0.5, threshold), ATAN),
                  (x,), (w, w[0]))
    _assert_same(mine, ref, 1e-5 if dtype == torch.float32 else 1e-12)
    assert torch.equal(node.run_th, ref_node.run_th)
