"""Fixtures shared by the test files."""
import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture
def gnuradio():
    """For the tests that need GNU Radio: they skip one by one without it, the numpy/torch ones still run."""
    return pytest.importorskip("gnuradio.gr")
