"""The neuron implementations that ``speed/bench.py`` times, discovered at run time.

Each implementation turns a shared input ``x = torch.rand(T, N)`` into a :class:`Case`: ``run()`` is one timed call
(train: forward + ``spikes.sum().backward()`` + dropping the input/parameter gradients; infer: forward under
``torch.no_grad()``), ``spikes()`` the forward spikes for the agreement check. Names:

* ``loop``: the survey's reference LIF (``cmp_speed2.py``): decay 0.5 (``h = 0.5 x[t] + 0.5 v``), fire ``h >= 1``,
  hard reset to 0, nothing detached, ATan(alpha=2); train = Python loop over ``x[t]`` calling TorchScript
  charge/reset helpers, infer = the whole loop in one TorchScript function. Like the survey it reads ``x[t]``, whose
  backward adds a full ``[T, N]`` gradient per step (``O(T^2 N)`` memory traffic; the ``torch`` backend is the same
  autograd loop over ``x.unbind(0)``).
* ``psn``: the survey's PSN, ``h = addmm(b, x[N, T], W[T, T])``, ``s = H(h)`` (ATan in train); ``x, W, b ~ U[0, 1)``.
* every registered LIF backend by its name (``torch``, ``fused``, ``cpp``, ``cupy``, ...) and ``auto``:
  ``common.neuron.LIFNode(tau=2, decay_input, v_th=1, v_reset=0, detach_reset=False, ATan)``, the loop's equations.
* ``clif``, ``alif-L<l>``, ``blockalif-L<l>``: registered neurons (``common.neuron.NEURONS``); ALIF/BlockALIF get
  ``[T, 1, N]`` (batch 1, ``N`` neurons with their own parameters, as the survey's ``[1, N, T]``), latency ``l``.
* ``spikingjelly``: SpikingJelly 2.0 ``LIFNode(step_mode='m')`` with the same parameters; its default path on the
  device (CPU: its torch reference op; CUDA: its automatic cuda/triton/torch selection).
* the survey's own implementations (``survey`` expands to all of them): ``loop``, ``psn``, ``spikingjelly-cupy``
  (the survey's ``cp`` column: SpikingJelly's ``LIFNode(backend='cupy')``, which only SpikingJelly releases before
  2.0 have, on CUDA), ``blockalif-survey-L<l>`` / ``alif-survey-L<l>`` (the authors' conv-based ``Blocks`` and
  step-by-step ``ALIF`` with FastSigmoid on ``[1, N, T]``: :mod:`speed.survey_impls`).
* ``snntorch``: ``snntorch.Leaky`` looped over ``x.unbind(0)``. It computes ``mem = beta mem + in`` and fires on
  ``mem - thr > 0``, so it gets ``beta = 0.5``, input ``0.5 x`` (pre-scaled outside the timed call),
  ``thr = nextafter(1, 0)`` (``mem > thr`` is ``mem >= 1`` in float32), ``reset_mechanism='zero'``,
  ``reset_delay=False`` (reset in the same step, gradient through the reset like ``detach_reset=False``), ATan(2).
"""
from __future__ import annotations

import importlib
import importlib.metadata
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch

LOOP_DECAY, V_TH = 0.5, 1.0
LIF_PEERS = ("spikingjelly", "snntorch")
NEURON_KINDS = ("clif", "alif", "blockalif")  # registry neurons benchmarked besides LIF
SURVEY_KINDS = ("blockalif-survey", "alif-survey")  # the survey's own adaptive neurons (speed.survey_impls)
LATENCY_GROUPS = ("alif", "blockalif", *SURVEY_KINDS)  # expanded to NAME-L<l> per latency
GROUPS = ("all", "survey", "backends", *LATENCY_GROUPS)  # names that expand() turns into several


class Unavailable(Exception):
    """The implementation cannot run here; the message says why."""


@dataclass
class Case:
    run: Callable[[], object]
    spikes: Callable[[], torch.Tensor] | None
    note: str = ""


def _script(fn):
    """TorchScript as in the survey (deprecated in recent torch; eager if scripting is gone)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            return torch.jit.script(fn)
    except (AttributeError, RuntimeError, OSError):  # TorchScript removed or unable to compile: stay eager
        return fn


def _loop_infer(x_seq: torch.Tensor, decay: float, v_th: float) -> torch.Tensor:
    h = torch.zeros_like(x_seq[0])
    out = []
    for t in range(x_seq.shape[0]):
        h = decay * x_seq[t] + (1.0 - decay) * h
        s = (h >= v_th).to(x_seq.dtype)
        out.append(s)
        h = (1.0 - s) * h
    return torch.stack(out)


def _loop_charge(x: torch.Tensor, h: torch.Tensor, decay: float) -> torch.Tensor:
    return decay * x + (1.0 - decay) * h


def _loop_reset(s: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    return (1.0 - s) * h


loop_infer, loop_charge, loop_reset = _script(_loop_infer), _script(_loop_charge), _script(_loop_reset)


def _atan():
    from common import surrogate

    return surrogate.get("atan", alpha=2.0)


def loop_spikes(x: torch.Tensor) -> torch.Tensor:
    """Reference spikes of the survey's LIF for ``x [T, N]``."""
    with torch.no_grad():
        return loop_infer(x, LOOP_DECAY, V_TH)


def _leaf(x: torch.Tensor, train: bool) -> torch.Tensor:
    return x.detach().clone().requires_grad_(train)


def _train_or_infer(forward: Callable[[], torch.Tensor], train: bool, leaves, reset=lambda: None):
    """``run()`` for a forward closure: backward of the spike sum (train) or a no-grad forward (infer)."""

    def run_train():
        reset()
        forward().sum().backward()
        for leaf in leaves:
            leaf.grad = None

    def run_infer():
        reset()
        with torch.no_grad():
            return forward()

    return run_train if train else run_infer


def build_loop(x: torch.Tensor, train: bool) -> Case:
    xs = _leaf(x, train)
    sg = _atan()

    def forward_train():
        h = torch.zeros_like(xs[0])
        out = []
        for t in range(xs.shape[0]):
            h = loop_charge(xs[t], h, LOOP_DECAY)
            s = sg(h - V_TH)
            out.append(s)
            h = loop_reset(s, h)
        return torch.stack(out)

    forward = forward_train if train else (lambda: loop_infer(xs, LOOP_DECAY, V_TH))
    return Case(_train_or_infer(forward, train, [xs]), lambda: loop_spikes(x))


def build_psn(x: torch.Tensor, train: bool) -> Case:
    T, N = x.shape
    gen = torch.Generator(device="cpu").manual_seed(1)
    xs = _leaf(x.t().contiguous(), train)
    w = torch.rand(T, T, generator=gen).to(x.device).requires_grad_(train)
    b = torch.rand(T, generator=gen).to(x.device).requires_grad_(train)
    sg = _atan()
    forward = (lambda: sg(torch.addmm(b, xs, w))) if train else (lambda: (torch.addmm(b, xs, w) >= 0).to(xs.dtype))
    return Case(_train_or_infer(forward, train, [xs, w, b]), None, "x[N,T] @ W[T,T] + b")


def build_backend(backend: str, x: torch.Tensor, train: bool) -> Case:
    from common import kernels
    from common.errors import UsageError
    from common.neuron import LIFNode

    try:
        resolved = kernels.resolve("lif", backend, x.device, x.dtype, _atan())
    except UsageError as err:
        raise Unavailable(str(err)) from None
    node = LIFNode(tau=2.0, decay_input=True, v_threshold=V_TH, v_reset=0.0, detach_reset=False,
                   surrogate=_atan(), backend=backend)
    return _lif_case(node, x, train, f"auto -> {resolved}" if backend == "auto" else "")


def _lif_case(node, x: torch.Tensor, train: bool, note: str) -> Case:
    """The :class:`Case` of a multi-step LIF module on ``x [T, N]`` (reset before every call)."""
    xs = _leaf(x, train)

    def spikes():
        node.reset()
        with torch.no_grad():
            out = node(x)
        node.reset()
        return out.reshape(x.shape)

    return Case(_train_or_infer(lambda: node(xs), train, [xs], node.reset), spikes, note)


def build_neuron(kind: str, latency: int | None, x: torch.Tensor, train: bool) -> Case:
    from common.neuron import NEURONS, NeuronConfig
    from common.neuron import build_neuron as build_registered

    if kind not in NEURONS:
        raise Unavailable(f"neuron '{kind}' is not registered (have: {', '.join(NEURONS.names())})")
    T, N = x.shape
    extra = {} if latency is None else {"latency": latency}
    cfg = NeuronConfig(name=kind, tau=2.0, v_threshold=V_TH, v_reset=0.0, detach_reset=False, surrogate="atan",
                       backend="auto", T=T, extra=extra)
    per_neuron = latency is not None  # ALIF/BlockALIF: batch 1, N neurons with their own parameters
    shape, features = ((T, 1, N), (N,)) if per_neuron else ((T, N), ())
    node = build_registered(cfg, features).to(x.device)
    xs = _leaf(x.reshape(shape), train)
    reset = getattr(node, "reset", lambda: None)
    return Case(_train_or_infer(lambda: node(xs), train, [xs, *node.parameters()], reset), None,
                "[T, 1, N], per-neuron parameters" if per_neuron else "")


def _spikingjelly_lif(**backend):
    """SpikingJelly's multi-step ``LIFNode`` with the loop's parameters (``backend``: e.g. ``backend='cupy'``)."""
    sj_neuron = importlib.import_module("spikingjelly.activation_based.neuron")
    sj_surrogate = importlib.import_module("spikingjelly.activation_based.surrogate")
    return sj_neuron.LIFNode(tau=2.0, decay_input=True, v_threshold=V_TH, v_reset=0.0, detach_reset=False,
                             surrogate_function=sj_surrogate.ATan(alpha=2.0), step_mode="m", **backend)


def build_spikingjelly(x: torch.Tensor, train: bool) -> Case:
    try:
        node = _spikingjelly_lif()
    except ImportError as error:
        raise Unavailable(f"spikingjelly is not installed ({error})") from error
    return _lif_case(node, x, train, _spikingjelly_path(x.device))


def _spikingjelly_path(device: torch.device) -> str:
    """Which of its implementations SpikingJelly runs (its private selection API; informative only)."""
    version = importlib.metadata.version("spikingjelly")
    if device.type != "cuda":
        return f"spikingjelly {version}, CPU path (torch ops loop)"
    try:
        selection = importlib.import_module("spikingjelly._ops.lif")._selection
        return f"spikingjelly {version}, CUDA path {selection.diagnostics(device)['implementation']}"
    except (ImportError, AttributeError, KeyError, RuntimeError):
        return f"spikingjelly {version}, CUDA default path"


def snntorch_threshold() -> float:
    """The largest float32 below 1: ``mem > thr`` then equals ``mem >= 1`` (our firing rule)."""
    return torch.nextafter(torch.tensor(1.0), torch.tensor(0.0)).item()


def build_snntorch(x: torch.Tensor, train: bool) -> Case:
    try:
        snn = importlib.import_module("snntorch")
        snn_surrogate = importlib.import_module("snntorch.surrogate")
    except ImportError as error:
        raise Unavailable(f"snntorch is not installed ({error})") from error
    leaky = snn.Leaky(beta=0.5, threshold=snntorch_threshold(), spike_grad=snn_surrogate.atan(alpha=2.0),
                      reset_mechanism="zero", reset_delay=False).to(x.device)

    def forward(inp):
        mem = leaky.reset_mem()
        out = []
        for x_t in inp.unbind(0):
            spk, mem = leaky(x_t, mem)
            out.append(spk)
        return torch.stack(out)

    xs = _leaf(0.5 * x, train)

    def spikes():
        with torch.no_grad():
            return forward(0.5 * x)

    return Case(_train_or_infer(lambda: forward(xs), train, [xs]), spikes,
                f"snntorch {snn.__version__}, Leaky(beta=0.5, reset='zero', reset_delay=False), input 0.5 x")


def build_spikingjelly_cupy(x: torch.Tensor, train: bool) -> Case:
    """SpikingJelly's CuPy LIF (``LIFNode(backend='cupy', step_mode='m')``, the survey's ``cp`` column)."""
    if x.device.type != "cuda":
        raise Unavailable("SpikingJelly's CuPy LIF needs a CUDA device")
    try:
        node = _spikingjelly_lif(backend="cupy")
    except (ImportError, TypeError, ValueError, AssertionError) as error:
        raise Unavailable(f"this SpikingJelly has no CuPy LIF backend (the survey used 0.0.0.0.15; releases before "
                          f"2.0 have it): {error}") from error
    return _lif_case(node, x, train, f"spikingjelly {importlib.metadata.version('spikingjelly')}, backend cupy")


def build_survey_adaptive(kind: str, latency: int, x: torch.Tensor, train: bool) -> Case:
    """The authors' ``Blocks`` (``blockalif``) or ``ALIF`` (``alif``) on ``x.T [1, N, T]``, FastSigmoid."""
    from speed.survey_impls import SurveyALIF, SurveyBlocks

    T, N = x.shape
    node = (SurveyBlocks if kind == "blockalif" else SurveyALIF)(N, latency).to(x.device)
    xs = _leaf(x.t().contiguous().unsqueeze(0), train)
    return Case(_train_or_infer(lambda: node(xs), train, [xs, *node.parameters()]), None,
                "authors' layout [1, N, T], FastSigmoid")


def split_latency(name: str) -> tuple[str, int | None]:
    """``'blockalif-L3'`` -> ``('blockalif', 3)``; other names -> ``(name, None)``."""
    kind, sep, lat = name.rpartition("-L")
    return (kind, int(lat)) if sep and lat.isdigit() else (name, None)


def build(name: str, mode: str, x: torch.Tensor) -> Case:
    """The :class:`Case` of implementation ``name``; raises :class:`Unavailable` with the reason."""
    train = mode == "train"
    kind, latency = split_latency(name)
    fixed = {"loop": build_loop, "psn": build_psn, "spikingjelly": build_spikingjelly, "snntorch": build_snntorch,
             "spikingjelly-cupy": build_spikingjelly_cupy}
    if name in fixed:
        return fixed[name](x, train)
    if kind in SURVEY_KINDS:
        return build_survey_adaptive(kind.removesuffix("-survey"), latency, x, train)
    if kind in NEURON_KINDS:
        return build_neuron(kind, latency, x, train)
    return build_backend(name, x, train)


def is_lif(name: str) -> bool:
    """Implementations of the loop's LIF equations (spike check against the loop; bandwidth floor)."""
    return split_latency(name)[0] not in ("psn", *NEURON_KINDS, *SURVEY_KINDS)


def expand(names: list[str], latencies: list[int]) -> list[str]:
    """Expand ``all``, ``backends`` and the latency-less ``alif``/``blockalif`` into concrete names."""
    from common import kernels

    out: list[str] = []
    for name in names:
        if name == "all":
            out += expand(["loop", "psn", "backends", "auto", "clif", "alif", "blockalif", *LIF_PEERS], latencies)
        elif name == "survey":
            out += expand(["loop", "psn", "spikingjelly-cupy", *SURVEY_KINDS], latencies)
        elif name == "backends":
            out += [b for b in ("torch", "fused") if b in kernels.BACKENDS]
            out += [b for b in kernels.BACKENDS.names() if b not in ("torch", "fused")]
        elif name in LATENCY_GROUPS:
            out += [f"{name}-L{lat}" for lat in latencies]
        else:
            out.append(name)
    return list(dict.fromkeys(out))
