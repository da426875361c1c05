"""Bit packing of spikes (NumPy packbits as the reference) and the spike contract of every registered neuron."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from common.kernels import bitpack
from common.memory.spikes import Packed
from common.neuron import NEURONS, SPIKING_TYPES, NeuronConfig, build_neuron

DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


@pytest.fixture(params=["native", "torch"])
def path(request, monkeypatch):
    """Run the compiled CPU kernels (when a compiler is found) and the torch-op fallback."""
    if request.param == "torch":
        monkeypatch.setattr(bitpack, "_native", lambda t: None)
    elif bitpack._library() is None:
        pytest.skip("no C++ compiler: the native bit-packing kernel is not built")
    return request.param


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 7, 8, 9, 64, 1003])
def test_pack_bits_equals_numpy_packbits(path, dtype, n):
    gen = torch.Generator().manual_seed(n)
    x = (torch.rand(n, generator=gen) < 0.3).to(dtype)
    packed = bitpack.pack_bits(x)
    expected = np.packbits(x.float().numpy().astype(bool), bitorder="little")
    assert packed.dtype == torch.uint8 and packed.numel() == (n + 7) // 8
    np.testing.assert_array_equal(packed.numpy(), expected)
    back = bitpack.unpack_bits(packed, n, dtype)
    assert back.dtype == dtype and torch.equal(back, x)


def test_pack_bits_treats_negative_zero_as_zero(path):
    x = torch.tensor([-0.0, 1.0, 0.0, 1.0, -0.0, -0.0, 1.0, 1.0, 1.0])
    np.testing.assert_array_equal(bitpack.pack_bits(x).numpy(), [0b11001010, 0b1])


@pytest.mark.parametrize("mode, nbytes", [("bits", 8), ("bool", 60)])
def test_packed_roundtrip_keeps_shape_dtype_and_layout(mode, nbytes):
    x = (torch.rand(3, 5, 2, 2) < 0.5).float()
    for t in (x, x.contiguous(memory_format=torch.channels_last)):
        packed = Packed.of(t, mode)
        assert packed.nbytes == nbytes  # ceil(60 / 8) bytes or one byte per element
        back = packed.unpack()
        assert torch.equal(back, t) and back.stride() == t.stride() and back.dtype == t.dtype


@pytest.mark.parametrize("name", NEURONS.names())
def test_every_registered_neuron_emits_exact_spikes(name):
    """common.memory stores neuron outputs as bits: each registered neuron must return only 0.0 / 1.0."""
    cfg = NeuronConfig(name=name, T=4)
    neuron = build_neuron(cfg, (3, 5))
    assert isinstance(neuron, SPIKING_TYPES), f"{type(neuron).__name__} missing from common.neuron.SPIKING_TYPES"
    x = torch.randn(4, 6, 3, 5, dtype=torch.float64) * 2 + 0.8
    out = neuron(x)
    assert out.dtype == x.dtype
    assert set(out.unique().tolist()) <= {0.0, 1.0} and 0 < out.sum() < out.numel()
