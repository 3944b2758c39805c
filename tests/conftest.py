"""Fixtures shared by the test files."""
import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture
def gnuradio():
    """For the tests that need GNU Radio: they skip one by one without it, the numpy/torch ones still run."""
    return pytest.importorskip("gnuradio.gr")


@pytest.fixture
def one_torch_thread():
    """torch on one thread for the test (CPU figures comparable, no oversubscription of the 2-core box)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
