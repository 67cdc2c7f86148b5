"""A loaded TorchScript model that Ray can ship to the trial workers."""

from __future__ import annotations

import io
from typing import Any

import torch

__all__ = ["ScriptedModel"]


def _from_archive(data: bytes) -> ScriptedModel:
    return ScriptedModel(torch.jit.load(io.BytesIO(data), map_location="cpu"))


class ScriptedModel(torch.nn.Module):
    """Calls a TorchScript module; pickles as the module's own archive bytes.

    A ``ScriptModule`` refuses to be pickled, and the trial payload travels through Ray's
    object store by pickle. Unpickling loads the archive with ``torch.jit.load``: the bytes
    are this process's own ``torch.jit.save``, never read from an untrusted file.
    """

    def __init__(self, scripted: Any) -> None:
        super().__init__()
        self.scripted = scripted

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.scripted(*args, **kwargs)

    def __reduce__(self) -> tuple[Any, tuple[bytes]]:
        buffer = io.BytesIO()
        torch.jit.save(self.scripted, buffer)
        return _from_archive, (buffer.getvalue(),)
