"""SOP counter: hand-computed SOP/FLOP on tiny networks in both modes, rate sources, real-input layers, nominal
shapes, mode extras and the ``--sop-mode`` flag."""
from __future__ import annotations

import argparse
import dataclasses
import json

import pytest
import torch
from torch import nn

from common.errors import UsageError
from common.layers import MultiStep
from common.methods.online import stepwise_forward
from common.sop import SOP_MODES, SopMode, SopOptions, add_args, count_sops, synapses, write_sop_json


class Step(nn.Module):
    """Deterministic 'neuron': spike where the input exceeds 0.5."""

    def forward(self, x):
        return (x > 0.5).to(x.dtype)


def tiny_mlp() -> nn.Module:
    fc1 = nn.Linear(2, 4, bias=False)
    fc2 = nn.Linear(4, 3, bias=False)
    with torch.no_grad():
        fc1.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.0]]))
        fc2.weight.copy_(torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 2.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]]))
    return MultiStep(nn.Sequential(fc1, Step(), fc2))


# two samples [N, T=2, 2]; spikes of fc1 (threshold 0.5):
#   A: t0 x=(1,0) -> (1,0,1,0); t1 x=(0,1) -> (0,1,1,0);  B: t0 x=(0,0) -> 0000; t1 x=(1,1) -> (1,1,1,0)
# 7 spikes over 4 neurons x 2 steps x 2 samples = 16 -> rate 7/16.
# logits = mean_t fc2(s): A (0.5, 1, 0) -> 1; B (0.5, 1, 0) -> 1; labels (1, 2) -> acc 0.5.
X = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[0.0, 0.0], [1.0, 1.0]]])
Y = torch.tensor([1, 2])
LOADER = [(X, Y)]


def encode(x):
    return x.transpose(0, 1)  # [N, T, F] -> [T, N, F]


def decode(out_seq, extras=None):
    return out_seq.mean(0)


def test_mlp_corrected():
    r = count_sops(tiny_mlp(), LOADER, encode, decode, SopOptions(mode="corrected"))
    assert r["acc"] == 0.5 and r["n_samples"] == 2
    assert r["sop_m_per_sample"] * 1e6 == pytest.approx(7 / 16 * 12 * 2)  # = 7 spikes * 3 targets / 2 samples
    assert r["sop_m_per_step"] * 1e6 == pytest.approx(7 / 16 * 12)
    assert r["first_layer_flop_m"] * 1e6 == pytest.approx(2 * 4 * 2)  # D_in D_out per step, 2 distinct steps
    assert r["first_layer"] == "0.0"
    fc2 = r["per_layer"][1]
    assert fc2["rate"] == pytest.approx(7 / 16) and fc2["ops_per_step"] == 12 and fc2["steps_per_sample"] == 2


def test_mlp_paper_and_static_input():
    r = count_sops(tiny_mlp(), LOADER, encode, decode, SopOptions(mode="paper", static_input=True))
    assert r["sop_m_per_sample"] * 1e6 == pytest.approx(7 / 16 * (12 + 3) * 2)  # D_in D_out + D_out
    assert r["first_layer_flop_m"] * 1e6 == pytest.approx(2 * 4 + 4)  # counted once: same input every step


def test_first_layer_as_sop_and_limit_batches():
    loader = [(X, Y), (X * 0, Y)]
    r = count_sops(tiny_mlp(), loader, encode, decode, SopOptions(first_layer_sop=True, limit_batches=1))
    # fc1 inputs: sum 1+1+0+2 = 4 over 8 elements -> rate 0.5, ops 8, 2 steps
    assert r["first_layer"] is None and r["first_layer_flop_m"] == 0
    assert r["sop_m_per_sample"] * 1e6 == pytest.approx(0.5 * 8 * 2 + 7 / 16 * 12 * 2)


def test_stepwise_forward_counts_the_same():
    full = count_sops(tiny_mlp(), LOADER, encode, decode)
    online = count_sops(tiny_mlp(), LOADER, encode, decode, forward=stepwise_forward)
    assert online["sop_m_per_sample"] == pytest.approx(full["sop_m_per_sample"])
    assert online["acc"] == full["acc"]


class ConvNet(nn.Module):
    """conv1 (real input) -> spikes -> avgpool -> conv2 -> spikes -> flatten -> fc; all multi-step."""

    def __init__(self, conv=nn.Conv2d, pool=nn.AvgPool2d):
        super().__init__()
        self.conv1 = MultiStep(nn.Sequential(conv(1, 2, 3, padding=1, bias=False), Step()))
        self.pool = MultiStep(pool(2))
        self.conv2 = MultiStep(nn.Sequential(conv(2, 3, 3, padding=1, bias=False), Step(), nn.Flatten()))
        self.fc = MultiStep(nn.Linear(12, 5))  # 3 x 2 x 2 (4x4 images) or 3 x 4 (length 8)
        for m in self.modules():
            if isinstance(m, (nn.Conv1d, nn.Conv2d)):
                nn.init.constant_(m.weight, 0.2)

    def forward(self, x):
        return self.fc(self.conv2(self.pool(self.conv1(x))))


def test_conv2d_counts_by_shape():
    torch.manual_seed(0)
    x = torch.rand(3, 2, 1, 4, 4) * 2  # [N, T, C, H, W]
    model = ConvNet()
    s1 = model.conv1(x.transpose(0, 1))  # spikes of conv1, [T, N, 2, 4, 4]
    rate = s1.mean().item()  # = mean of the avg-pooled conv2 input
    s2 = model.conv2(model.pool(s1))
    res = {}
    for mode in ("corrected", "paper"):
        res[mode] = count_sops(model, [(x, torch.zeros(3, dtype=torch.long))], encode, decode, SopOptions(mode=mode))
    conv1_c, conv2_c, fc_c = res["corrected"]["per_layer"]
    assert conv1_c["ops_per_step"] == 9 * 1 * 2 * 16  # k^2 C_in C_out H W
    assert conv2_c["ops_per_step"] == 9 * 2 * 3 * 4
    assert fc_c["ops_per_step"] == 12 * 5
    conv1_p, conv2_p, fc_p = res["paper"]["per_layer"]
    assert conv1_p["ops_per_step"] == (9 * 2 + 2) * 4  # survey quirk: only W_out survives
    assert conv2_p["ops_per_step"] == (9 * 2 * 3 + 3) * 2
    assert fc_p["ops_per_step"] == 12 * 5 + 5
    assert conv2_p["rate_from"] == "pool.0" and conv2_c["rate_from"] == "conv2.0.0"
    assert conv2_p["rate"] == pytest.approx(rate) and conv2_c["rate"] == pytest.approx(rate)
    fc_rate = s2.mean().item()
    expected = 2 * (rate * 9 * 2 * 3 * 4 + fc_rate * 60)
    assert res["corrected"]["sop_m_per_sample"] * 1e6 == pytest.approx(expected)
    assert res["corrected"]["first_layer_flop_m"] * 1e6 == pytest.approx(2 * 9 * 2 * 16)


def test_conv1d_paper_drops_length():
    x = torch.rand(2, 2, 1, 8)  # [N, T, C, L]
    model = ConvNet(nn.Conv1d, nn.AvgPool1d)
    r = count_sops(model, [(x, torch.zeros(2, dtype=torch.long))], encode, decode, SopOptions(mode="paper"))
    assert [layer["ops_per_step"] for layer in r["per_layer"]] == [3 * 2 + 2, 3 * 2 * 3 + 3, 12 * 5 + 5]
    r = count_sops(model, [(x, torch.zeros(2, dtype=torch.long))], encode, decode)
    assert [layer["ops_per_step"] for layer in r["per_layer"]] == [3 * 2 * 8, 3 * 2 * 3 * 4, 12 * 5]


def test_model_mode_restored_and_json(tmp_path):
    model = tiny_mlp().train()
    corrected = count_sops(model, LOADER, encode, decode)
    paper = count_sops(model, LOADER, encode, decode, SopOptions(mode="paper"))
    assert model.training
    write_sop_json(tmp_path, corrected, checkpoint="best.pt")
    path = write_sop_json(tmp_path, paper)
    data = json.loads(path.read_text())
    assert path.name == "sop.json" and set(data) == {"corrected", "paper"}
    assert data["corrected"]["checkpoint"] == "best.pt"
    assert data["paper"]["sop_m_per_sample"] == pytest.approx(paper["sop_m_per_sample"])


def test_paper_mode_reproduces_survey_cf10_layer_counts():
    """Spec §4.2: the survey's per-layer F for CIFAR10Net(128), summing to 33,329,162 without conv1."""
    c = 128
    layers = []
    for i in range(6):
        layers += [nn.Conv2d(3 if i == 0 else c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), Step()]
        if i in (2, 5):
            layers.append(nn.AvgPool2d(2))
    layers += [nn.Flatten(), nn.Linear(c * 64, c * 16), Step(), nn.Linear(c * 16, 10)]
    model = MultiStep(nn.Sequential(*layers))
    x = torch.randn(1, 1, 3, 32, 32)
    r = count_sops(model, [(x, torch.zeros(1, dtype=torch.long))], encode, decode,
                   SopOptions(mode="paper", static_input=True))
    ops = [layer["ops_per_step"] for layer in r["per_layer"]]
    assert ops == [114_688, 4_722_688, 4_722_688, 2_361_344, 2_361_344, 2_361_344, 16_779_264, 20_490]
    assert sum(ops[1:]) == 33_329_162
    assert r["first_layer_flop_m"] == pytest.approx(0.114688)


class NormConvNet(nn.Module):
    """conv1 -> spikes -> [BN -> conv2] -> spikes -> head conv3 (no norm before it); pre-activation order."""

    def __init__(self):
        super().__init__()
        self.conv1 = MultiStep(nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, bias=False), Step()))
        self.block = nn.Sequential(MultiStep(nn.BatchNorm2d(2)), MultiStep(nn.Conv2d(2, 3, 1, bias=False)))
        self.head = MultiStep(nn.Conv2d(3, 4, 1, bias=False))

    def forward(self, x):
        return self.head(Step()(self.block(self.conv1(x)))).flatten(2)


def test_norm_input_rates_float_layers_and_nominal_shapes():
    """``norm_input``: conv2's rate is its norm's input (conv1's spikes), the head (no norm before it) takes its
    own input; ``float_layers`` counts the head as FLOPs; ``nominal_shape`` counts F at 2x2 for 4x4 inputs (one
    sample: T = 3 steps of 1x2x2)."""
    torch.manual_seed(0)
    model = NormConvNet().eval()
    with torch.no_grad():
        model.block[0][0].running_mean.fill_(0.5)  # a norm output far from the spike values
    x = torch.rand(2, 3, 1, 4, 4) * 2  # [N, T, C, H, W]
    spikes = model.conv1(x.transpose(0, 1))
    head_in = Step()(model.block(spikes))
    options = SopOptions("corrected", float_layers=("head",), nominal_shape=(3, 1, 2, 2))
    r = count_sops(model, [(x, torch.zeros(2, dtype=torch.long))], encode, lambda o, e=None: o.mean((0, 2)),
                   replace_mode(options, "norm_test"))
    conv1, conv2, head = r["per_layer"]
    assert conv2["rate_from"] == "block.0" and conv2["rate"] == pytest.approx(spikes.mean().item())
    assert head["rate_from"] == "head.0" and head["rate"] == pytest.approx(head_in.mean().item())
    assert [e["ops_per_step"] for e in r["per_layer"]] == [9 * 2 * 4, 2 * 3 * 4, 3 * 4 * 4]  # at 2x2
    assert [e["spiking"] for e in r["per_layer"]] == [False, True, False]
    assert r["float_layers"] == ["conv1.0.0", "head.0"] and r["first_layer"] == "conv1.0.0"
    assert r["sop_m_per_step"] * 1e6 == pytest.approx(spikes.mean().item() * 24)
    assert r["sop_m_per_sample"] * 1e6 == pytest.approx(3 * spikes.mean().item() * 24)
    assert r["float_input_flop_m_per_step"] * 1e6 == 72 + 48
    assert r["first_layer_flop_m"] * 1e6 == pytest.approx(3 * 72)  # not static: every step
    assert r["extras"] == {"spiking_layers": 1}


def replace_mode(options: SopOptions, mode: str) -> SopOptions:
    return dataclasses.replace(options, mode=mode)


SOP_MODES.register("norm_test", SopMode(synapses, "norm_input",
                                        lambda layers: {"spiking_layers": sum(e["spiking"] for e in layers)}))


def test_sop_mode_flag_lists_the_task_modes():
    parser = argparse.ArgumentParser()
    add_args(parser, modes=("corrected", "norm_test"))
    assert parser.parse_args([]).sop_mode == "corrected"
    assert parser.parse_args(["--sop-mode", "norm_test"]).sop_mode == "norm_test"
    with pytest.raises(UsageError, match="unknown --sop-mode 'paper'; valid: corrected, norm_test"):
        parser.parse_args(["--sop-mode", "paper"])  # registered, but not one of this task's
