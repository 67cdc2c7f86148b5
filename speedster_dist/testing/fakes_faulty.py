"""Registry entry point of the ``fake_faulty`` backend (:mod:`speedster_dist.testing.fakes`)."""

from speedster_dist.testing.fakes import FAULTY as BACKEND

__all__ = ["BACKEND"]
