"""The backend contract: one :class:`Backend` per name, with the neuron kinds, devices and dtypes it runs, and the
dispatch that every neuron module goes through.

A kernel kind is a recurrence with one call signature, ``fn(x_seq, *state, params, surrogate) -> (spike_seq,
*state_last)`` on time-first ``x_seq [T, ...]`` (``state`` tensors shaped like ``x_seq[0]``):

* ``lif``: ``state = (v,)``, ``params`` a :class:`~common.kernels.params.ChargeParams` (IF and LIF);
* ``clif``: ``state = (u, m)``, ``params`` a :class:`~common.kernels.clif.ClifParams`;
* ``online_lif``: ``state = (v,)``, ``params`` an :class:`~common.kernels.online.OnlineParams`.

Resolution (:func:`resolve`, cached per kind / name / device / dtype / surrogate expression): a backend the user
named runs or fails with one :class:`~common.errors.UsageError` line saying why; ``auto`` takes the first backend of
:data:`AUTO_ORDER` that can run and warns once when a backend it prefers is missing from the environment (no
compiler, no CuPy) or failed to build for this surrogate expression. Build failures are recorded per (backend,
surrogate expression), so one bad expression does not disable a backend for the others.
"""
from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch

from common.errors import UsageError
from common.registry import Registry

KINDS = ("lif", "clif", "online_lif")
BACKENDS = Registry("backend")
# ``auto`` tries these in order on a device type; ``torch`` (every kind, device and dtype) is the last resort.
AUTO_ORDER = {"cuda": ("cupy", "fused"), "cpu": ("cpp", "fused")}
FLOATS = frozenset({torch.float16, torch.bfloat16, torch.float32, torch.float64})
_failed: dict[tuple[str, str], str] = {}  # (backend, surrogate expression) -> why its kernels cannot be built
_warned: set[str] = set()


def _runs_everywhere(device: torch.device) -> None:
    return None


@dataclass(frozen=True)
class Backend:
    """``functions[kind]`` runs kernel kind ``kind``; ``devices`` are device types (None: any). ``compiled``
    backends inline ``surrogate.cuda_expr`` and cannot run a surrogate without one. ``unavailable(device)`` says
    why the environment cannot run it (None: it can); ``build(expr)`` builds its kernels for a surrogate expression
    ahead of the first call (raises on failure)."""

    name: str
    functions: Mapping[str, Callable]
    devices: frozenset[str] | None = None
    dtypes: frozenset[torch.dtype] = FLOATS
    compiled: bool = False
    unavailable: Callable[[torch.device], str | None] = _runs_everywhere
    build: Callable[[str], object] | None = None

    def unsupported(self, kind: str, device: torch.device, dtype: torch.dtype, expr: str | None) -> str | None:
        """Why this backend does not cover ``kind`` / ``device`` / ``dtype`` / surrogate by design (None: it does)."""
        if kind not in self.functions:
            return f"it has no {kind} kernel (it runs {', '.join(self.functions)})"
        if self.devices is not None and device.type not in self.devices:
            return f"it runs on {', '.join(sorted(self.devices))} tensors, got {device.type} tensors"
        if dtype not in self.dtypes:
            return f"it runs {', '.join(sorted(str(d) for d in self.dtypes))}, got {dtype}"
        if self.compiled and expr is None:
            return "the surrogate has no C expression (cuda_expr) to inline"
        return None

    def environment_problem(self, device: torch.device, expr: str | None) -> str | None:
        """Why this machine cannot run it now (missing tools, a failed build for ``expr``), or None."""
        reason = self.unavailable(device)
        if reason is not None or self.build is None or expr is None:
            return reason
        key = (self.name, expr)
        if key not in _failed:
            try:
                self.build(expr)
            except Exception as err:  # noqa: BLE001 - compiler, loader and OS errors come in many types
                _failed[key] = " ".join(str(err).split()) or type(err).__name__
        return _failed.get(key)


def register(backend: Backend) -> Backend:
    unknown = set(backend.functions) - set(KINDS)
    if unknown:
        raise ValueError(f"backend '{backend.name}' registers unknown kernel kinds {sorted(unknown)}; valid: {KINDS}")
    return BACKENDS.register(backend.name, backend)


def cuda_expr(surrogate) -> str | None:
    """``surrogate.cuda_expr("x")``, or None for a surrogate that cannot be inlined (a user-defined one)."""
    try:
        return surrogate.cuda_expr("x")
    except NotImplementedError:
        return None


def names_for(kind: str) -> list[str]:
    """Backends that have a ``kind`` kernel (``auto`` not included)."""
    return [name for name in BACKENDS.names() if kind in BACKENDS.get(name).functions]


def check(kind: str, name: str) -> str:
    """``name`` if it is ``auto`` or a backend with a ``kind`` kernel, else :class:`UsageError` naming the valid
    ones (machine-independent: whether it can run here is decided on the first call, see :func:`resolve`)."""
    if name != "auto" and (name not in BACKENDS or kind not in BACKENDS.get(name).functions):
        what = "has no" if name in BACKENDS else "is not a backend; none has a"
        raise UsageError(f"--backend {name} {what} {kind} kernel; valid for {kind}: auto, {', '.join(names_for(kind))}")
    return name


def resolve(kind: str, name: str, device: torch.device | str, dtype: torch.dtype, surrogate) -> str:
    """The backend that runs ``kind`` for ``name`` (``auto`` or a backend name) on ``device`` / ``dtype`` with
    ``surrogate``; raises :class:`UsageError` (one line) when a named backend cannot run it."""
    return _resolve(kind, name, torch.device(device), dtype, cuda_expr(surrogate))


@functools.lru_cache(maxsize=256)
def _resolve(kind: str, name: str, device: torch.device, dtype: torch.dtype, expr: str | None) -> str:
    if kind not in KINDS:
        raise ValueError(f"unknown kernel kind '{kind}'; valid: {', '.join(KINDS)}")
    if name != "auto":
        backend = BACKENDS.get(check(kind, name))
        reason = backend.unsupported(kind, device, dtype, expr) or backend.environment_problem(device, expr)
        if reason is not None:
            raise UsageError(f"--backend {name} cannot run the {kind} neuron: {reason}")
        return name
    for candidate in (*AUTO_ORDER.get(device.type, ("fused",)), "torch"):
        backend = BACKENDS.get(candidate)
        if backend.unsupported(kind, device, dtype, expr) is not None:
            continue
        reason = backend.environment_problem(device, expr)
        if reason is None:
            return candidate
        if reason not in _warned:
            _warned.add(reason)
            warnings.warn(f"backend '{candidate}' cannot run here ({reason}); --backend auto uses the next one",
                          RuntimeWarning, stacklevel=4)
    raise UsageError(f"no backend runs the {kind} neuron on {device} {dtype}")


def forget() -> None:
    """Drop cached resolutions and recorded failures (after the environment changed, e.g. ``SNN_CXX``)."""
    _resolve.cache_clear()
    _failed.clear()
    _warned.clear()


def multistep(kind: str, name: str, x_seq: torch.Tensor, state: tuple, params, surrogate) -> tuple:
    """Run kernel ``kind`` with backend ``name`` (``auto`` resolved for ``x_seq``): ``(spike_seq, *state_last)``."""
    backend = BACKENDS.get(resolve(kind, name, x_seq.device, x_seq.dtype, surrogate))
    return backend.functions[kind](x_seq, *state, params, surrogate)

