"""--memopt levels: gradients, outputs and state equal the plain autograd path's bit for bit, for every registered
neuron and norm; saved bytes shrink by the amounts computed from the shapes."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from common import memory
from common.errors import UsageError
from common.layers import MultiStep
from common.memory import MemoryPlan, count_saved
from common.neuron import NEURONS, NeuronConfig, build_neuron
from common.norm import NORMS, build_norm
from common.state import detach_net, reset_net

T, N, C, SIZE = 4, 3, 4, 4
PLANS = {"m1": 1, "m2": 2, "bool": MemoryPlan("bool", True, True), "pack-only": MemoryPlan("bits", False, False)}


def conv_net(neuron: str, norm: str, backend: str = "auto") -> nn.Sequential:
    """conv -> norm -> neuron (x2) -> pool -> flatten -> linear -> neuron -> linear, as the suite's networks."""
    torch.manual_seed(0)
    cfg = NeuronConfig(name=neuron, T=T, backend=backend)
    return nn.Sequential(
        MultiStep(nn.Conv2d(2, C, 3, padding=1, bias=False)), build_norm(norm, C, T, 2),
        build_neuron(cfg, (C, SIZE, SIZE)),
        MultiStep(nn.Conv2d(C, C, 3, padding=1, bias=False)), build_norm(norm, C, T, 2),
        build_neuron(cfg, (C, SIZE, SIZE)),
        MultiStep(nn.AvgPool2d(2)), MultiStep(nn.Flatten()), MultiStep(nn.Linear(C * SIZE * SIZE // 4, 8)),
        build_neuron(cfg, (8,)), MultiStep(nn.Linear(8, 3)))


def inputs(seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(T, N, 2, SIZE, SIZE, generator=gen) * 3).requires_grad_()


def train_steps(model: nn.Module, steps: int = 2) -> dict:
    """Two training steps (no optimizer): outputs, parameter and input gradients, and every buffer afterwards."""
    result = {}
    for step in range(steps):
        x = inputs(step)
        reset_net(model)
        out = model(x)
        weight = torch.linspace(-1, 1, out.numel()).view_as(out)
        (out * weight).sum().backward()
        result[f"out{step}"], result[f"x.grad{step}"] = out.detach(), x.grad
    reset_net(model)  # folds OSR statistics into its running buffers
    result.update({f"grad:{k}": p.grad for k, p in model.named_parameters()})
    result.update({f"buffer:{k}": b.clone() for k, b in model.named_buffers()})
    return result


def assert_bit_equal(got: dict, ref: dict) -> None:
    assert got.keys() == ref.keys()
    for key in ref:
        assert (got[key] is None) == (ref[key] is None), key
        if ref[key] is not None:
            assert torch.equal(got[key], ref[key]), key


@pytest.mark.parametrize("norm", NORMS.names())
@pytest.mark.parametrize("neuron", NEURONS.names())
def test_every_level_matches_plain_autograd(neuron, norm):
    net = conv_net(neuron, norm)
    ref = train_steps(copy.deepcopy(net))
    for plan in PLANS.values():
        assert_bit_equal(train_steps(memory.apply(copy.deepcopy(net), plan)), ref)


@pytest.mark.parametrize("backend", ["torch", "fused", "cpp"])
def test_lif_backends_match_plain_autograd(backend):
    net = conv_net("lif", "bn", backend)
    ref = train_steps(copy.deepcopy(net))
    for plan in PLANS.values():
        assert_bit_equal(train_steps(memory.apply(copy.deepcopy(net), plan)), ref)


def test_osr_fold_next_batch_quirk_matches_plain_autograd():
    """The recomputation replays the fold of the previous batch's statistics that the forward pass did."""
    net = conv_net("lif", "osr")
    for module in net.modules():
        if hasattr(module, "use_quirks"):
            module.use_quirks(frozenset({"osr_fold_next_batch"}))
    ref = train_steps(copy.deepcopy(net), steps=3)
    for plan in PLANS.values():
        assert_bit_equal(train_steps(memory.apply(copy.deepcopy(net), plan), steps=3), ref)


@pytest.mark.parametrize("neuron, norm", [("online_lif", "osr"), ("lif", "bn"), ("sliding_psn", "osr")])
def test_step_by_step_training_matches(neuron, norm):
    """The online rule: one step per call, backward per step, state detached in between (state carried across)."""
    def run(model):
        x = inputs()
        reset_net(model)
        outs = []
        for t in range(T):
            out = model(x[t:t + 1])
            out.sum().backward()
            detach_net(model)
            outs.append(out.detach())
        reset_net(model)
        return {"out": torch.cat(outs), "x.grad": x.grad, **{k: p.grad for k, p in model.named_parameters()},
                **{k: b.clone() for k, b in model.named_buffers()}}

    net = conv_net(neuron, norm)
    assert_bit_equal(run(memory.apply(copy.deepcopy(net), 2)), run(copy.deepcopy(net)))


def test_cpu_autocast_matches():
    net = conv_net("lif", "bn", "torch")

    def run(model):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return train_steps(model, steps=1)

    assert_bit_equal(run(memory.apply(copy.deepcopy(net), 2)), run(copy.deepcopy(net)))


def test_eval_and_no_grad_unchanged_and_names_kept():
    net = conv_net("lif", "bn")
    opt = memory.apply(copy.deepcopy(net), 2)
    assert list(opt.state_dict()) == list(net.state_dict())
    x = inputs()
    for model in (net, opt):
        model.eval()
        reset_net(model)
    with count_saved() as meter, torch.no_grad():
        assert torch.equal(opt(x), net(x))
    assert meter.total == 0


def test_apply_replaces_and_remove_restores():
    net = memory.apply(conv_net("lif", "bn"), 2)
    memory.apply(net, 1)
    assert net._memopt_blocks == ((1, 3), (4, 6), (6, 9))  # norm -> neuron, pool -> flatten -> linear at level 1
    hooks = sum(len(m._forward_hooks) for m in net.modules())
    assert hooks == 3  # one spike-marking hook per neuron, not two
    memory.remove(net)
    assert "forward" not in net.__dict__ and sum(len(m._forward_hooks) for m in net.modules()) == 0


def test_deepcopy_runs_its_own_modules():
    """EMA deep-copies the model: the copy's block-wise forward must use the copy's layers."""
    net = memory.apply(conv_net("lif", "bn"), 2)
    twin = copy.deepcopy(net)
    with torch.no_grad():
        for p in twin.parameters():
            p.mul_(0.5)
    x = inputs()
    reset_net(net)
    reset_net(twin)
    assert not torch.equal(net(x), twin(x))
    assert twin.forward.__self__ is twin


def test_unknown_level_is_a_usage_error():
    with pytest.raises(UsageError, match="--memopt 7"):
        memory.plan_for(7)


# ------------------------------------------------------------------------------------ saved bytes, by hand
F_IN, H, O = 5, 6, 3


def mlp() -> nn.Sequential:
    """linear -> LIF -> linear: level 0 keeps x, the LIF's h [T, N, H] and the float spikes; level 1 the spikes as
    bits; level 2 recomputes linear -> LIF from x."""
    torch.manual_seed(0)
    return nn.Sequential(MultiStep(nn.Linear(F_IN, H, bias=False)), build_neuron(NeuronConfig(T=T), (H,)),
                         MultiStep(nn.Linear(H, O, bias=False)))


def saved_bytes(model: nn.Module, x: torch.Tensor) -> int:
    reset_net(model)
    with count_saved() as meter:
        loss = model(x).sum()
    loss.backward()
    return meter.total


@pytest.mark.parametrize("level", [0, 1, 2])
def test_saved_bytes_of_linear_lif_linear(level):
    x = torch.rand(T, N, F_IN) * 4  # no gradient: the first linear keeps x for its weight gradient only
    spikes, h = T * N * H * 4, T * N * H * 4
    weight2 = H * O * 4  # kept to back-propagate into the spikes
    expected = {0: T * N * F_IN * 4 + h + spikes + weight2,
                1: T * N * F_IN * 4 + h + -(-T * N * H // 8) + weight2,
                2: T * N * F_IN * 4 + -(-T * N * H // 8) + weight2}[level]
    assert saved_bytes(memory.apply(mlp(), level), x) == expected


def test_norm_neuron_saved_once():
    """conv -> BN -> LIF: level 1 drops the LIF's h and BN's small tensors (weight, running mean / var, batch mean /
    inverse std: 5 C floats); level 2 keeps only the block input x (not the conv weight or the BN input)."""
    torch.manual_seed(0)
    net = nn.Sequential(MultiStep(nn.Conv2d(2, C, 3, padding=1, bias=False)), build_norm("bn", C, T, 2),
                        build_neuron(NeuronConfig(T=T), (C, SIZE, SIZE)))
    x = torch.rand(T, N, 2, SIZE, SIZE)
    act = T * N * C * SIZE * SIZE * 4
    plain = saved_bytes(memory.apply(copy.deepcopy(net), 0), x)
    conv_weight = C * 2 * 3 * 3 * 4
    assert plain == x.numel() * 4 + conv_weight + act + 5 * C * 4 + act  # conv: x, weight; BN: input + 5 C; LIF: h
    assert saved_bytes(memory.apply(copy.deepcopy(net), 1), x) == plain - act - 5 * C * 4
    assert saved_bytes(memory.apply(copy.deepcopy(net), 2), x) == x.numel() * 4


def test_ddp_matches(tmp_path):
    """Under DistributedDataParallel (one gloo process) the recomputed blocks give the plain gradients."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        net = conv_net("lif", "bn")
        results = [train_steps(nn.parallel.DistributedDataParallel(model), steps=1)
                   for model in (copy.deepcopy(net), memory.apply(copy.deepcopy(net), 2))]
    finally:
        dist.destroy_process_group()
    assert_bit_equal(results[1], results[0])


def test_blocks_follow_the_structure():
    """Pooling joins a block only after a neuron (its input is then spikes, kept as bits); other pooling stays out."""
    from common.memory.blocks import PATTERNS, find_blocks

    def lif():
        return build_neuron(NeuronConfig(T=T), (C,))

    def conv():
        return MultiStep(nn.Conv1d(C, C, 1))

    net = nn.Sequential(conv(), MultiStep(nn.AvgPool1d(1)), conv(), build_norm("bn", C, T, 1), lif(),
                        MultiStep(nn.AvgPool1d(1)), MultiStep(nn.Flatten()), MultiStep(nn.Linear(C, C)), nn.ReLU(),
                        lif())
    assert find_blocks(net, PATTERNS["recompute"]) == ((2, 5),)  # the ReLU breaks linear -> neuron
    assert find_blocks(net, PATTERNS["pooled"]) == ((5, 8),)
    assert find_blocks(net, PATTERNS["save_once"]) == ((3, 5),)


def test_sync_batch_norm_is_not_recomputed():
    net = nn.SyncBatchNorm.convert_sync_batchnorm(conv_net("lif", "bn"))
    memory.apply(net, 2)
    assert net._memopt_blocks == ((6, 10),)  # only pool -> flatten -> linear -> neuron
