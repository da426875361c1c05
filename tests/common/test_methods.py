"""Training rules (common/methods): every rule learns a fixed batch; online = no temporal gradient and one optimizer
step per batch; tandem = the ANN-path gradient of a hand-computed example; distillation losses = their formulas."""
import math
from functools import partial

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from common import cli, methods, training
from common.batch import Batch
from common.distributed import DistInfo
from common.errors import UsageError
from common.layers import MultiStep
from common.methods.base import StepContext
from common.methods.distill import response_kd, response_kd_survey
from common.methods.tandem import TandemLayer, to_tandem
from common.neuron import IFNode, NeuronConfig, build_neuron
from common.norm import build_norm
from common.state import detach_net, reset_net
from common.surrogate import get as get_surrogate
from common.task import Task, identity, keep_outputs, mean_over_time

T, N, D, H, C = 4, 24, 6, 16, 3


class TinyNet(nn.Sequential):
    """``Linear -> norm -> act -> Linear`` on ``[T, N, D]`` (SNN) or ``[N, D]`` (ANN), with ``activation_layers``."""

    def activation_layers(self):
        return [self[2]]


def tiny_snn(args):
    cfg = NeuronConfig.from_args(args)
    return TinyNet(MultiStep(nn.Linear(D, H)), build_norm(args.norm, H, args.T, 1), build_neuron(cfg, (H,)),
                   MultiStep(nn.Linear(H, C)))


def tiny_ann(args):
    return TinyNet(nn.Linear(D, H), nn.BatchNorm1d(H), nn.ReLU(), nn.Linear(H, C))


def build(args, kind="snn"):
    if kind == "tandem":
        return to_tandem(tiny_snn(args), args.tandem_bn_momentum)
    return {"snn": tiny_snn, "ann": tiny_ann}[kind](args)


def parse(*argv):
    return cli.parse(cli.base_parser("tiny", task="cf10"), ["-T", str(T), "--device", "cpu", *argv])


def make_task(args):
    spiking = methods.get(args.method).model_kind != "ann"
    return Task(
        name="tiny", build_model=lambda kind: build(args, kind), model_kind=methods.get(args.method).model_kind,
        train_loss=partial(F.cross_entropy, label_smoothing=args.label_smoothing), test_loss=F.cross_entropy,
        encode=(lambda x: x.unsqueeze(0).repeat(args.T, 1, 1)) if spiking else identity,
        decode=mean_over_time if spiking else keep_outputs)


def fixed_batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(C, D, generator=g) * 2
    y = torch.arange(N) % C
    return centres[y] + 0.5 * torch.randn(N, D, generator=g), y


def train_steps(method, model, x, y, steps, lr):
    ctx = StepContext(torch.device("cpu"), False, None, model)
    method.setup(ctx)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    losses = []
    model.train()
    for _ in range(steps):
        reset_net(model)
        opt.zero_grad(set_to_none=True)
        losses.append(float(method.train_step(model, Batch.of((x, y)), ctx).loss))
        opt.step()
    reset_net(model)
    return losses


@pytest.fixture(scope="module")
def teacher_path(tmp_path_factory):
    """A tiny ANN trained on the fixed batch, saved like an engine checkpoint."""
    torch.manual_seed(0)
    args = parse("--method", "ann")
    task = make_task(args)
    x, y = fixed_batch()
    train_steps(methods.get("ann")(args, task), task.model, x, y, 30, 0.1)
    path = tmp_path_factory.mktemp("teacher") / "checkpoint_latest.pt"
    torch.save({"model": task.model.state_dict()}, path)
    return path


METHOD_ARGS = {
    "bptt": [],
    "ann": [],
    "online": ["--neuron", "online_lif", "--norm", "osr"],
    "tandem": ["--neuron", "if", "--v-reset", "none"],
    "distill_response": ["--kd-alpha", "0.5", "--kd-temp", "2"],
    "distill_feature": ["--kd-beta", "0.5"],
}


@pytest.mark.parametrize("name", sorted(METHOD_ARGS))
def test_a_few_steps_lower_the_loss_of_a_fixed_batch(name, teacher_path):
    torch.manual_seed(1)
    extra = ["--teacher", str(teacher_path)] if name.startswith("distill") else []
    args = parse("--method", name, "--label-smoothing", "0", *METHOD_ARGS[name], *extra)
    task = make_task(args)
    x, y = fixed_batch()
    losses = train_steps(methods.get(name)(args, task), task.model, x, y, 25, 0.05)
    assert all(math.isfinite(v) for v in losses)
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:3]), losses


# ---------------------------------------------------------------- online


class CountingContext(StepContext):
    def __init__(self, model):
        super().__init__(torch.device("cpu"), False, None, model)
        self.backwards = 0

    def backward(self, loss):
        self.backwards += 1
        super().backward(loss)


def lif_net():
    torch.manual_seed(3)
    return nn.Sequential(MultiStep(nn.Linear(D, H)), build_neuron(NeuronConfig("lif", backend="torch"), (H,)),
                         MultiStep(nn.Linear(H, C)))


def reference_online_grads(net, x, y):
    """Hand-written LIF (tau 2, hard reset to 0, detached reset, ATan) with the membrane detached between steps and
    ``L = sum_t CE(out_t) / T``; gradients by one backward of the whole sum."""
    w1, b1, w2, b2 = (p.detach().clone().requires_grad_() for p in net.parameters())
    spike = get_surrogate("atan")
    v, total, fired = torch.zeros(N, H), 0.0, 0.0
    for _ in range(T):
        h = v.detach() + (x @ w1.T + b1 - v.detach()) / 2.0
        s = spike(h - 1.0)
        v = h * (1.0 - s.detach())
        total = total + F.cross_entropy(s @ w2.T + b2, y) / T
        fired += float(s.detach().sum())
    total.backward()
    assert fired > 0
    return [p.grad for p in (w1, b1, w2, b2)], float(total.detach())


def test_online_gradient_has_no_temporal_part_and_backpropagates_every_step():
    args = parse("--method", "online", "--label-smoothing", "0")
    net = lif_net()
    task = make_task(args)
    task.model = net
    x, y = fixed_batch()
    x = 2 * x
    expected, expected_loss = reference_online_grads(net, x, y)
    ctx = CountingContext(net)
    out = methods.get("online")(args, task).train_step(net, Batch.of((x, y)), ctx)
    assert ctx.backwards == T
    assert float(out.loss) == pytest.approx(expected_loss, rel=1e-5)
    for p, g in zip(net.parameters(), expected):
        torch.testing.assert_close(p.grad, g, rtol=1e-5, atol=1e-7)

    # full BPTT of the same loss differs in the first layer: the temporal part is really cut
    net.zero_grad()
    reset_net(net)
    out_seq = net(x.unsqueeze(0).repeat(T, 1, 1))
    sum(F.cross_entropy(o, y) / T for o in out_seq).backward()
    assert not torch.allclose(net[0][0].weight.grad, expected[0], rtol=1e-3, atol=1e-6)


def test_online_makes_one_optimizer_step_per_batch():
    args = parse("--method", "online", "--neuron", "online_lif", "--norm", "osr")
    task = make_task(args)
    env = training.Env(torch.device("cpu"), DistInfo())
    state = training.build_state(args, task, env, methods.get("online")(args, task), steps_per_epoch=3)
    steps = []
    state.optimizer.register_step_post_hook(lambda *a: steps.append(1))
    state.ctx = CountingContext(task.model)
    batches = [fixed_batch(seed) for seed in range(3)]
    training.train_one_epoch(state, batches, 3)
    assert len(steps) == 3 and state.ctx.backwards == 3 * T


def test_detach_net_cuts_the_graph_of_every_memory():
    net = lif_net()
    net(torch.randn(2, 3, D, requires_grad=True))
    assert net[1].v.requires_grad
    detach_net(net)
    assert not net[1].v.requires_grad


@pytest.mark.parametrize("neuron,norm,blocker", [("psn", "bn", "PSN"), ("masked_psn", "bn", "MaskedPSN"),
                                                 ("lif", "tebn", "TEBN")])
def test_online_rejects_modules_that_need_all_steps_at_once(neuron, norm, blocker):
    args = parse("--method", "online", "--neuron", neuron, "--norm", norm)
    with pytest.raises(UsageError, match=f"one time step at a time, but {blocker}"):
        methods.get("online")(args, make_task(args))


# ---------------------------------------------------------------- tandem


def soft_if_counts(current: np.ndarray, v_th: float = 1.0) -> np.ndarray:
    """IF with soft reset over the leading (time) axis; returns the spike counts."""
    v, count = np.zeros(current.shape[1:]), np.zeros(current.shape[1:])
    for i_t in current:
        v = v + i_t
        s = (v >= v_th).astype(float)
        v = v - v_th * s
        count += s
    return count


def test_tandem_value_is_the_snn_count_and_gradient_the_ann_path():
    torch.manual_seed(0)
    n, d, h, steps = 5, 2, 3, 4
    net = TinyNet(MultiStep(nn.Linear(d, h)), MultiStep(nn.BatchNorm1d(h)), IFNode(v_reset=None),
                  MultiStep(nn.Linear(h, 1)))
    with torch.no_grad():
        net[0][0].weight.copy_(torch.tensor([[0.5, -0.2], [0.3, 0.4], [-0.6, 0.1]]))
        net[0][0].bias.copy_(torch.tensor([0.1, -0.2, 0.05]))
        net[1][0].weight.copy_(torch.tensor([1.5, 0.8, 2.0]))
        net[1][0].bias.copy_(torch.tensor([0.3, 0.2, 1.0]))
        net[3][0].weight.copy_(torch.tensor([[1.0, -2.0, 0.5]]))
    tandem = to_tandem(net, bn_momentum=0.9)
    assert isinstance(tandem[0], TandemLayer) and len(tandem) == 2
    x = torch.tensor([[1.0, 0.5], [-0.3, 0.8], [0.7, -1.0], [0.2, 0.2], [-1.0, -0.4]])
    g = torch.tensor([[1.0], [-0.5], [2.0], [0.3], [-1.2]])
    out = tandem(x.unsqueeze(0).repeat(steps, 1, 1))
    y = out.mean(0)
    (y * g).sum().backward()

    W1, b1 = net[0][0].weight.detach().numpy(), net[0][0].bias.detach().numpy()
    gamma, beta = np.array([1.5, 0.8, 2.0]), np.array([0.3, 0.2, 1.0])
    W2 = net[3][0].weight.detach().numpy()
    gn = g.numpy()[:, 0]
    eps = 1e-5
    c = steps * x.numpy()                                    # input count: the image repeated T times
    pre = c @ W1.T + b1                                      # ANN pre-activation
    mu, var_b = pre.mean(0), pre.var(0)                      # batch statistics (biased for normalising)
    run_mean = 0.9 * mu                                      # momentum 0.9 from (0, 1)
    run_var = 0.1 + 0.9 * pre.var(0, ddof=1)
    k = gamma / np.sqrt(run_var + eps)
    current = (x.numpy() @ W1.T) * k + (k * b1 + beta - k * run_mean) / steps
    count = soft_if_counts(np.repeat(current[None], steps, 0))
    assert count.sum() > 0 and (count < steps).any()
    np.testing.assert_allclose(y.detach().numpy()[:, 0], count @ W2[0] / steps + net[3][0].bias.item(), rtol=1e-5)

    # ANN-path gradient: d count / d a = 1, a = ReLU(gamma xhat + beta), xhat from batch statistics
    xhat = (pre - mu) / np.sqrt(var_b + eps)
    bn_out = gamma * xhat + beta
    d_a = gn[:, None] * W2[0][None, :] / steps               # dL/d count = dL/d a
    d_bn = d_a * (bn_out > 0)
    assert (bn_out <= 0).any() and (bn_out > 0).any()
    np.testing.assert_allclose(net[3][0].weight.grad.numpy()[0], gn @ count / steps, rtol=1e-5)
    np.testing.assert_allclose(net[1][0].bias.grad.numpy(), d_bn.sum(0), rtol=1e-5)
    np.testing.assert_allclose(net[1][0].weight.grad.numpy(), (d_bn * xhat).sum(0), rtol=1e-5)
    d_xhat = d_bn * gamma
    d_pre = (n * d_xhat - d_xhat.sum(0) - xhat * (d_xhat * xhat).sum(0)) / (n * np.sqrt(var_b + eps))
    np.testing.assert_allclose(net[0][0].weight.grad.numpy(), d_pre.T @ c, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(net[0][0].bias.grad.numpy(), d_pre.sum(0), atol=1e-6)


def test_tandem_eval_is_the_snn_alone():
    args = parse("--method", "tandem", "--neuron", "if", "--v-reset", "none")
    model = build(args, "tandem").eval()
    x = torch.randn(T, 5, D)
    with torch.no_grad():
        spikes = model[0](x)
    assert set(spikes.unique().tolist()) <= {0.0, 1.0}


@pytest.mark.parametrize("flags,match", [(["--neuron", "lif"], "soft-reset IF"),
                                         (["--neuron", "if"], "soft-reset IF"),
                                         (["--neuron", "if", "--v-reset", "none", "--norm", "tebn"], "BatchNorm")])
def test_tandem_rejects_other_neurons_and_norms(flags, match):
    args = parse("--method", "tandem", *flags)
    with pytest.raises(UsageError, match=match):
        build(args, "tandem")


# ---------------------------------------------------------------- distillation


def test_response_kd_is_hintons_kl_and_the_quirk_is_ce_on_raw_logits():
    torch.manual_seed(0)
    y, z, tau = torch.randn(5, 4), torch.randn(5, 4) * 3, 2.5
    p_t = np.exp(z.numpy() / tau) / np.exp(z.numpy() / tau).sum(1, keepdims=True)
    log_p_s = y.numpy() / tau - np.log(np.exp(y.numpy() / tau).sum(1, keepdims=True))
    kl = (p_t * (np.log(p_t) - log_p_s)).sum(1).mean() * tau ** 2
    assert float(response_kd(y, z, tau)) == pytest.approx(kl, rel=1e-5)
    quirk = -((z.numpy() / tau) * log_p_s).sum(1).mean() * tau ** 2
    assert float(response_kd_survey(y, z, tau)) == pytest.approx(quirk, rel=1e-5)


def run_one_step(name, teacher_path, *flags):
    torch.manual_seed(2)
    args = parse("--method", name, "--teacher", str(teacher_path), "--label-smoothing", "0", *flags)
    task = make_task(args)
    method = methods.get(name)(args, task)
    ctx = StepContext(torch.device("cpu"), False, None, task.model)
    method.setup(ctx)
    x, y = fixed_batch(seed=5)
    reference_model = build(args)
    reference_model.load_state_dict(task.model.state_dict())
    out = method.train_step(task.model, Batch.of((x, y)), ctx)
    return method, reference_model, x, y, float(out.loss)


@pytest.mark.parametrize("quirk", [False, True])
def test_response_distillation_loss(teacher_path, quirk):
    flags = ["--kd-alpha", "0.3", "--kd-temp", "2"] + (["--survey-quirk", "kd_raw_teacher_logits"] if quirk else [])
    method, student, x, y, loss = run_one_step("distill_response", teacher_path, *flags)
    teacher = tiny_ann(None)
    teacher.load_state_dict(torch.load(teacher_path)["model"])
    teacher.eval()
    with torch.no_grad():
        z = teacher(x)
        logits = student(x.unsqueeze(0).repeat(T, 1, 1)).mean(0)
    kd = response_kd_survey if quirk else response_kd
    expected = 0.3 * kd(logits, z, 2.0) + 0.7 * F.cross_entropy(logits, y)
    assert loss == pytest.approx(float(expected), rel=1e-5)
    assert all(p.grad is None for p in method.teacher.parameters())


def test_feature_distillation_loss(teacher_path):
    method, student, x, y, loss = run_one_step("distill_feature", teacher_path, "--kd-beta", "0.7")
    teacher = tiny_ann(None)
    teacher.load_state_dict(torch.load(teacher_path)["model"])
    teacher.eval()
    with torch.no_grad():
        relu = F.relu(teacher[1](teacher[0](x)))
        spikes = student[2](student[1](student[0](x.unsqueeze(0).repeat(T, 1, 1))))
        logits = student[3](spikes).mean(0)
    expected = F.cross_entropy(logits, y) + 0.7 * ((spikes.mean(0) - relu) ** 2).mean()
    assert loss == pytest.approx(float(expected), rel=1e-5)


def test_distillation_needs_a_teacher_of_the_right_shape(tmp_path):
    args = parse("--method", "distill_response")
    with pytest.raises(UsageError, match="needs --teacher"):
        methods.get("distill_response")(args, make_task(args))
    bad = tmp_path / "bad.pt"
    torch.save({"model": {"0.weight": torch.zeros(1)}}, bad)
    args = parse("--method", "distill_feature", "--teacher", str(bad))
    method = methods.get("distill_feature")(args, make_task(args))
    with pytest.raises(UsageError, match="not a checkpoint of this task's ANN"):
        method.setup(StepContext(torch.device("cpu"), False))
