r"""Knowledge distillation from the task's ANN (a ``--ann`` / ``--method ann`` checkpoint, ``--teacher PATH``) into
the SNN. The teacher runs in eval mode, fp32, without gradient, on the same (augmented, mixed) images.

Response (``distill_response``), with student logits ``y = decode(model(encode(x)))``, teacher logits ``z``:

    L = alpha tau^2 KL(softmax(z / tau) || softmax(y / tau)) + (1 - alpha) CE_ls(y, target)        (Hinton et al.)

``--survey-quirk kd_raw_teacher_logits`` replaces the KL by the survey's ``CE(y / tau, z / tau)`` with the raw
scaled teacher logits as (unnormalised, possibly negative) class "probabilities":
``-mean_n sum_c (z_nc / tau) log softmax(y_n / tau)_c``.

Feature (``distill_feature``), with ``a_l`` the teacher's l-th ReLU output and ``s_l[t]`` the student's l-th
neuron output (``activation_layers()`` of both models, matched by index):

    L = CE_ls(y, target) + beta sum_l MSE(mean_t s_l[t], a_l)           (MSE averaged over elements)
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

from common import checkpoint, quirks
from common.errors import UsageError
from common.methods import METHODS
from common.methods.base import Method, StepOutput

quirks.register("kd_raw_teacher_logits", "response distillation uses tau^2 CE(y/tau, z/tau) with the raw scaled "
                "teacher logits as (unnormalised, possibly negative) soft targets instead of the KL between softmaxes",
                ("cf10",))


def response_kd(y: torch.Tensor, z: torch.Tensor, tau: float) -> torch.Tensor:
    """``tau^2 KL(softmax(z/tau) || softmax(y/tau))``, averaged over the batch."""
    return F.kl_div(F.log_softmax(y / tau, -1), F.log_softmax(z / tau, -1), reduction="batchmean",
                    log_target=True) * tau ** 2


def response_kd_survey(y: torch.Tensor, z: torch.Tensor, tau: float) -> torch.Tensor:
    """The survey's ``tau^2 F.cross_entropy(y/tau, z/tau)``: raw teacher logits used as soft targets."""
    return F.cross_entropy(y / tau, z / tau) * tau ** 2


@contextlib.contextmanager
def capture_outputs(layers: list[nn.Module]):
    """Collect the output of every module in ``layers`` (forward hooks) into the yielded list, in layer order."""
    outputs: list = [None] * len(layers)

    def hook(i):
        def record(module, inputs, output):
            outputs[i] = output
        return record

    handles = [layer.register_forward_hook(hook(i)) for i, layer in enumerate(layers)]
    try:
        yield outputs
    finally:
        for handle in handles:
            handle.remove()


class Distillation(Method):
    """Shared part: build and load the teacher in :meth:`setup`, run it in eval/fp32/no-grad."""

    def __init__(self, args, task):
        super().__init__(args, task)
        if not getattr(args, "teacher", None):
            raise UsageError(f"--method {self.name} needs --teacher PATH (a checkpoint of the --ann network)")
        # a run directory gives its last epoch, as the survey's teacher
        self.teacher_path = checkpoint.find(args.teacher, checkpoint.LATEST, "--teacher")
        self.teacher: nn.Module | None = None

    def setup(self, ctx) -> None:
        if self.task.build_model is None:
            raise UsageError(f"task {self.task.name} has no ANN variant to distil from")
        teacher = self.task.build_model("ann")
        state = checkpoint.load(self.teacher_path, map_location="cpu")
        try:
            teacher.load_state_dict(state["model"])
        except (RuntimeError, KeyError) as e:
            first = str(e).strip().splitlines()[0]
            raise UsageError(f"--teacher {self.teacher_path} is not a checkpoint of this task's ANN "
                             f"(same --channels?): {first}") from None
        self.teacher = teacher.to(ctx.device).eval().requires_grad_(False)

    @torch.no_grad()
    def teacher_forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):
            return self.teacher(x.float())


@METHODS.register("distill_response")
class DistillResponse(Distillation):
    """Response (logit) distillation; see the module docstring."""

    name = "distill_response"

    @classmethod
    def add_args(cls, parser) -> None:
        g = parser.add_argument_group("distillation (distill_response, distill_feature)")
        g.add_argument("--teacher", default=None, metavar="PATH",
                       help="ANN teacher: checkpoint file or run directory (its checkpoint_latest.pt)")
        g.add_argument("--kd-alpha", type=float, default=1e-3, help="response KD weight alpha")
        g.add_argument("--kd-temp", type=float, default=4.0, help="response KD temperature tau")
        g.add_argument("--kd-beta", type=float, default=0.1, help="feature KD weight beta")

    def name_parts(self) -> list[str]:
        a = self.args
        return [f"a{a.kd_alpha:g}", f"t{a.kd_temp:g}"] + (["quirk"] if quirks.on(a, "kd_raw_teacher_logits") else [])

    def train_step(self, model, batch, ctx) -> StepOutput:
        a = self.args
        kd = response_kd_survey if quirks.on(a, "kd_raw_teacher_logits") else response_kd
        z = self.teacher_forward(batch.inputs)
        with ctx.autocast():
            y = self.forward(model, batch)
            ce = self.task.train_loss(y, batch.targets)
        loss = a.kd_alpha * kd(y.float(), z, a.kd_temp) + (1.0 - a.kd_alpha) * ce.float()
        ctx.backward(loss)
        return StepOutput(loss.detach(), y.detach())


@METHODS.register("distill_feature")
class DistillFeature(Distillation):
    """Feature distillation: student firing rates regressed onto the teacher's ReLU outputs, layer by layer
    (``--teacher`` and ``--kd-beta`` are defined with the ``distill_response`` flags)."""

    name = "distill_feature"

    def name_parts(self) -> list[str]:
        return [f"b{self.args.kd_beta:g}"]

    def setup(self, ctx) -> None:
        super().setup(ctx)
        n_student, n_teacher = len(self.task.model.activation_layers()), len(self.teacher.activation_layers())
        if n_student != n_teacher:
            raise UsageError(f"feature distillation matches layers by index, but the student has {n_student} "
                             f"activation layers and the teacher {n_teacher}")

    def train_step(self, model, batch, ctx) -> StepOutput:
        with capture_outputs(self.teacher.activation_layers()) as teacher_acts:
            self.teacher_forward(batch.inputs)
        with capture_outputs(self.task.model.activation_layers()) as spikes, ctx.autocast():
            y = self.forward(model, batch)
            ce = self.task.train_loss(y, batch.targets)
        feature = sum(F.mse_loss(s.float().mean(0), a) for s, a in zip(spikes, teacher_acts))
        loss = ce.float() + self.args.kd_beta * feature
        ctx.backward(loss)
        return StepOutput(loss.detach(), y.detach())
