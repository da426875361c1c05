"""Data -> model -> loss -> SGD on the fake dataset: the training loss falls; evaluation runs end to end."""
from __future__ import annotations

import torch

from coco import data, metrics
from coco import model as M
from coco.augment import Hyp
from coco.loss import YoloLoss
from common.state import reset_net
from common.task import repeat_over_time
from tests.coco.fake_coco import write_fake_coco


def test_loss_falls_and_evaluation_runs(tmp_path):
    torch.manual_seed(0)
    root = write_fake_coco(tmp_path, n_train=4, n_val=4)
    train = data.COCODetection(root / "train2017.txt", 64, augment=True, workers=1,
                               hyp=Hyp(mosaic=0.0, translate=0.0, scale=0.0, fliplr=0.0, hsv_h=0, hsv_s=0, hsv_v=0))
    images, targets, _ = data.collate([train[i] for i in range(4)])
    T = 2
    model = M.build_model(M.neuron_config("if", T=T), "bn", T=T, img_size=64)
    crit = YoloLoss(model.detect.anchors, model.detect.strides.tolist())
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    losses = []
    for _ in range(6):
        loss = crit(M.mean_over_time(model(repeat_over_time(images, T))), targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
        reset_net(model)
        losses.append(loss.item())
    assert losses[-1] < 0.85 * losses[0], losses

    val = data.COCODetection(root / "val2017.txt", 64, rect=True, batch_size=2, workers=1)
    evaluator = metrics.YoloAP(model.detect.anchors, model.detect.strides.tolist())
    model.eval()
    with torch.no_grad():
        for start in (0, 2):
            images, targets, extras = data.collate([val[start], val[start + 1]])
            evaluator.update(M.mean_over_time(model(repeat_over_time(images, T))), targets, extras)
            reset_net(model)
    result = evaluator.compute()
    assert set(result) == {"P", "R", "AP50", "AP", "fitness"} and all(0 <= v <= 1 for v in result.values())
