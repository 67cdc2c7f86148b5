"""What counts as running out of memory in a trial (its reason then says so first, and a
Ray worker that ran it ends: tests/integration/test_out_of_memory.py)."""

import pytest

from speedster_dist.runtime._trial import OUT_OF_MEMORY, _out_of_memory


@pytest.mark.parametrize(
    "exc",
    [
        MemoryError(),
        RuntimeError(
            "[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory"
        ),
        RuntimeError("std::bad_alloc"),
        RuntimeError("onnxruntime: Failed to allocate memory for requested buffer of size 1"),
        RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"),
    ],
)
def test_allocation_failures_are_out_of_memory(exc):
    assert _out_of_memory(exc)


@pytest.mark.parametrize("exc", [RuntimeError("shape mismatch"), ValueError("bad knob")])
def test_other_failures_are_not(exc):
    assert not _out_of_memory(exc)


def test_the_reason_prefix_is_plain_words():
    assert OUT_OF_MEMORY == "out of memory"
