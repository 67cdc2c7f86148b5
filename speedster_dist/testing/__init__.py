"""Test helpers shipped with the package: tiny models (``models``), fake backends (``fakes``),
the choice of backends a test sees (``registry``) and the backend contract suite
(``backend_contract``)."""
