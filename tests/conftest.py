import pytest
import torch

# Tests use tiny tensors: one thread avoids OpenMP threads waiting on each other on a loaded 2-core machine.
torch.set_num_threads(1)


@pytest.fixture(scope="module")
def cifar10_dir(tmp_path_factory):
    """A tiny CIFAR10 (16 train / 8 test images) in the real ``cifar-10-batches-py`` format, one per test module."""
    from tests.fakedata import write_fake_cifar10

    root = tmp_path_factory.mktemp("cifar")
    write_fake_cifar10(root, n_train=16, n_test=8)
    return root


@pytest.fixture
def cifar10_no_md5(monkeypatch):
    """Let torchvision accept the fake CIFAR10 files (their md5 sums cannot match); the product keeps the check."""
    from tests.fakedata import skip_cifar10_md5

    skip_cifar10_md5(monkeypatch)
