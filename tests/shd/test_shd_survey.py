"""Survey-compatibility of the SHD task (issue 13 §2.3, §2.5), each against an independent reference: a NumPy
forward of the 2 x 256 network written from the spec's equations, and SpikingJelly 2.0's own SHD frame dataset."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from common.neuron import NeuronConfig
from common.state import reset_net
from shd import data
from shd import model as shd_model
from tests.shd.fake_shd import random_samples, write_file

SURVEY_T = 126


# ------------------------------------------------------------------------------------------ §2.3 TEBN padding
def np_if(x: np.ndarray) -> np.ndarray:
    """IF, threshold 1, hard reset to 0, over the first axis."""
    v, out = np.zeros_like(x[0]), []
    for xt in x:
        h = v + xt
        s = (h >= 1.0).astype(x.dtype)
        out.append(s)
        v = h * (1 - s)
    return np.stack(out)


def np_tebn(z: np.ndarray, pad_to: int) -> np.ndarray:
    """TEBN at init (gamma 1, beta 0, p 1) in training mode: zero-pad time to ``pad_to``, BN with the batch
    statistics over (time, batch) per channel (biased variance, eps 1e-5), crop back."""
    padded = np.concatenate([z, np.zeros((pad_to - len(z), *z.shape[1:]))])
    mean, var = padded.mean((0, 1)), padded.var((0, 1))
    return ((padded - mean) / np.sqrt(var + 1e-5))[:len(z)]


def np_shd_loss(x: np.ndarray, y: np.ndarray, weights: list[np.ndarray], whole_batch_padded: bool) -> float:
    """Survey loss of IF + TEBN on one batch, padded steps not masked: only TEBN sees 126 steps (AutoPadding), or
    (the old suite) the whole batch padded to 126 steps before the network."""
    if whole_batch_padded:
        x = np.concatenate([x, np.zeros((SURVEY_T - len(x), *x.shape[1:]))])
    h = x
    for w in weights[:2]:
        h = np_if(np_tebn(h @ w.T, SURVEY_T))
    v, decay, m = np.zeros((x.shape[1], 20)), 1 - 1 / 1.005, 0.0
    for zt in h @ weights[2].T:
        v = decay * v + zt
        e = np.exp(v - v.max(-1, keepdims=True))
        m = m + e / e.sum(-1, keepdims=True)
    logp = m - m.max(-1, keepdims=True) - np.log(np.exp(m - m.max(-1, keepdims=True)).sum(-1, keepdims=True))
    return float(-logp[np.arange(len(y)), y].mean())


def shd_batch(n=6, seed=0):
    """Frames of fake samples padded to the batch's longest (lengths differ)."""
    times, units, labels = random_samples(n, seed, duration_s=(0.3, 1.2))
    frames, lengths = data.integrate_events(times, units)
    ds = data.SHDFrames(frames, lengths, labels)
    x, y, lengths = data.pad_collate([ds[i] for i in range(n)])
    return x.double(), y, lengths


def test_tebn_pads_only_its_input_to_126_steps_like_autopadding():
    x, y, lengths = shd_batch()
    assert len(x) < SURVEY_T and len(set(lengths.tolist())) > 1
    torch.manual_seed(0)
    cfg = NeuronConfig(name="if", tau=1.005, decay_input=False, sg_alpha=5.0)
    net = shd_model.SHDNet(cfg, "tebn", T=SURVEY_T, dropout=0.0).double().train()
    weights = [m.weight.detach().numpy() for m in net.modules() if isinstance(m, torch.nn.Linear)]
    reset_net(net)
    m = shd_model.decode(net(x), {"lengths": lengths}, mask_padding=False)
    ours = float(shd_model.sum_softmax_loss(m, y).detach())
    survey = np_shd_loss(x.numpy(), y.numpy(), weights, whole_batch_padded=False)
    old_suite = np_shd_loss(x.numpy(), y.numpy(), weights, whole_batch_padded=True)
    assert ours == pytest.approx(survey, rel=1e-6)  # the model takes the softmax in fp32
    assert abs(survey - old_suite) > 1e-3  # the whole-batch padding adds (126 - L) softmax steps to m


# ------------------------------------------------------------------------------------------- §2.5 test order
def test_folder_order_hand_computed():
    labels = np.array([2, 10, 2, 1, 10, 1, 1])
    # folders "1" < "10" < "2"; files "3.npz" < "5.npz" < "6.npz" and "1.npz" < "4.npz", "0.npz" < "2.npz"
    assert data.folder_order(labels).tolist() == [3, 5, 6, 1, 4, 0, 2]
    assert data.folder_label(np.array([0, 1, 2, 9, 10, 19])).tolist() == [0, 1, 12, 19, 2, 11]


def test_folder_order_matches_spikingjelly_shd_frames(tmp_path):
    """SpikingJelly 2.0 builds <label>/<index>.npz frame folders from the HDF5 file and reads them with torchvision's
    DatasetFolder: its sample order and class indices must equal ours."""
    sj_shd = pytest.importorskip("spikingjelly.datasets.shd")
    rng = np.random.default_rng(3)
    n = 31  # > 10 samples per split so that file names "10.npz" ... sort between "1.npz" and "2.npz"
    written = {}
    for split, seed in (("train", 0), ("test", 1)):
        times, units, _ = random_samples(n if split == "test" else 20, seed, max_spikes=20)
        labels = rng.permutation(np.arange(len(times)) % data.N_CLASSES)  # every class folder has a sample
        write_file(tmp_path / "events_h5" / f"shd_{split}.h5", times, units, labels)
        written[split] = labels
    ds = sj_shd.SpikingHeidelbergDigits(str(tmp_path), train=False, data_type="frame", duration=10)
    sj_order = [int(Path(path).stem) for path, _ in ds.samples]
    sj_labels = [target for _, target in ds.samples]
    assert sj_order == data.folder_order(written["test"]).tolist()
    assert sj_labels == data.folder_label(written["test"][sj_order]).tolist()


def test_folder_dataset_reorders_test_frames(tmp_path):
    times, units, labels = random_samples(12, 4)
    frames, lengths = data.integrate_events(times, units)
    ds = data.SHDFrames(frames, lengths, labels)
    test = data.as_folder_dataset(ds, reorder=True)
    order = data.folder_order(labels)
    for k, i in enumerate(order):
        torch.testing.assert_close(test[k][0], ds[int(i)][0])
        assert test[k][1] == data.folder_label(labels[[i]])[0]
    train = data.as_folder_dataset(ds, reorder=False)
    assert [train[i][1] for i in range(len(ds))] == data.folder_label(labels).tolist()
    torch.testing.assert_close(train[3][0], ds[3][0])


def test_the_survey_cell_reads_the_test_set_in_folder_order(tmp_path):
    """The SHD cells' --survey-quirk shd_folder_test_order reaches the loaded splits (labels renumbered as
    DatasetFolder does, test samples class-grouped); the default keeps the HDF5 order and labels."""
    from common import cli, survey
    from shd import train
    from tests.shd.fake_shd import write_fake_shd

    written = write_fake_shd(tmp_path / "SHD", n_train=12, n_test=15)
    flags = [a for a in survey.find("shd", "LIF").args if a not in ("--epochs", "150")]
    base = ["--data-dir", str(tmp_path / "SHD"), "--no-cache", "--device", "cpu", "--out-dir", str(tmp_path)]
    labels = written["test"][2]
    survey_test = train.load_data(cli.parse(train.build_parser(), [*flags, *base]))[1]
    assert survey_test.labels.tolist() == data.folder_label(labels[data.folder_order(labels)]).tolist()
    plain_test = train.load_data(cli.parse(train.build_parser(), base))[1]
    assert plain_test.labels.tolist() == labels.tolist()
