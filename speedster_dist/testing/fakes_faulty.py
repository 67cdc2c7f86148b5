"""Registry entry point for the ``fake_faulty`` backend (see :mod:`speedster_dist.testing.fakes`)."""

from speedster_dist.testing.fakes import FAULTY as BACKEND

__all__ = ["BACKEND"]
