"""Registry entry point of the ``fake_deadly`` backend (:mod:`speedster_dist.testing.fakes`)."""

from speedster_dist.testing.fakes import DEADLY as BACKEND

__all__ = ["BACKEND"]
