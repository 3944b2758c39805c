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


@pytest.fixture(autouse=True)
def no_leaked_client_keys():
    """`semcom transmit/sweep --client-key` export the key paths into the
    environment of the process (bridge.auth.export_client_env); a test that
    calls it in-process must not hand its keys to every later test's clients
    and subprocesses."""
    names = ("SEMCOM_CLIENT_KEY", "SEMCOM_SERVER_KEY")
    saved = {k: os.environ.get(k) for k in names}
    yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
