"""Shared test fixtures."""

from __future__ import annotations

import pytest
import torch

from learnscope import registry


@pytest.fixture
def one_thread():
    """Tiny tensors: intra-op threads only add overhead (a lot of it on a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def registries_restored():
    """A test (or docs block) that registers a model, dataset, preset ... leaves every registry
    as it found it, so what one test registers never changes another's names."""
    with registry.restoring():
        yield
