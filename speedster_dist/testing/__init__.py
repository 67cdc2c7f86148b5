"""Test helpers shipped with the package: tiny models, fakes and the backend contract suite."""
