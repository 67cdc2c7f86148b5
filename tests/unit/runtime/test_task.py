"""The trial task's process set-up (no Ray: the task body runs in this process)."""

import pytest
import torch

from speedster_dist.runtime._task import size_torch_threads


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_torch_threads_follow_the_reserved_cpus(restore_threads):
    torch.set_num_threads(1)  # what a reused Ray worker keeps after a zero-CPU probe
    assert size_torch_threads(2.0) == 2
    assert torch.get_num_threads() == 2
    assert size_torch_threads(3.5) == 3  # a GPU trial's fractional share: whole threads


def test_no_reservation_leaves_torch_as_it_is(restore_threads):
    torch.set_num_threads(2)
    assert size_torch_threads(None) == 2
    assert size_torch_threads(0.5) == 2  # under one CPU: nothing sensible to size to
    assert torch.get_num_threads() == 2
