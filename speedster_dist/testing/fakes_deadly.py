"""Registry entry point for the ``fake_deadly`` backend (see :mod:`speedster_dist.testing.fakes`)."""

from speedster_dist.testing.fakes import DEADLY as BACKEND

__all__ = ["BACKEND"]
