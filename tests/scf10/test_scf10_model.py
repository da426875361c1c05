"""The sequential-CIFAR10 network: size, time layout, and the survey's per-layer SOP numbers (spec §3.2, §4.2)."""
import pytest
import torch

from common import sop
from common.neuron import NeuronConfig
from scf10.model import SeqCIFAR10Net
from scf10.train import columns_as_steps, mean_over_time


def net(channels=128, neuron="lif", norm="bn"):
    return SeqCIFAR10Net(NeuronConfig(neuron, T=32), norm, channels)


def test_parameter_count_and_shapes():
    model = net()
    assert sum(p.numel() for p in model.parameters()) == 513_418
    assert [type(m).__name__ for m in model.activation_layers()] == ["LIFNode"] * 7
    out = model(torch.randn(32, 2, 3, 32))
    assert out.shape == (32, 2, 10)


def test_columns_are_time_steps():
    x = torch.arange(2 * 3 * 32 * 32, dtype=torch.float32).view(2, 3, 32, 32)
    x_seq = columns_as_steps(x)
    assert x_seq.shape == (32, 2, 3, 32)
    for t in (0, 7, 31):
        assert torch.equal(x_seq[t], x[:, :, :, t])
    assert torch.equal(mean_over_time(torch.ones(32, 2, 10) * 3), torch.full((2, 10), 3.0))


def test_paper_sop_counter_gives_the_survey_layer_numbers():
    loader = [(torch.randn(2, 3, 32, 32), torch.tensor([0, 1]))]
    res = sop.count_sops(net(), loader, columns_as_steps, mean_over_time, sop.SopOptions(mode="paper"))
    ops = [layer["ops_per_step"] for layer in res["per_layer"]]
    assert ops == [1_280] + [49_280] * 5 + [262_400, 2_570]
    assert res["first_layer_flop_m"] == pytest.approx(32 * 1_280 / 1e6)  # the survey's 0.041
    assert all(layer["steps_per_sample"] == 32 for layer in res["per_layer"])
