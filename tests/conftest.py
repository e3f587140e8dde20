"""Shared test fixtures."""

from __future__ import annotations

import pytest
import torch

import learnscope.data
import learnscope.experiments.presets
import learnscope.models
import learnscope.trajectory.projections  # noqa: F401 - with the others: see below
from learnscope import registry

# The built-in names register themselves when their modules are imported. Importing those
# modules here, before any test, makes the built-ins part of what `registries_restored` restores
# to; a module first imported inside a test would otherwise have its registrations undone after
# that test and be missing (already imported, never registered again) from every later one.


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
