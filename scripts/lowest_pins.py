"""The lowest versions pyproject.toml allows, as a pip constraints file (used by
scripts/test-lowest.sh): ``python scripts/lowest_pins.py test > lowest.txt``.

Every ``name>=X`` (or ``~=X``, ``==X``) of the core dependencies and of the named extras
becomes ``name==X``, following the project's references to its own extras
(``speedster-dist[openvino]``); a name with several floors takes the highest; a requirement
without a floor (``ray[client]``) adds no pin, and extras never appear in a pin (pip refuses
them in a constraints file).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, as a package
    import tomli as tomllib

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
_FLOOR_OPERATORS = (">=", "~=", "==")


def _requirements(project: dict[str, Any], extras: Iterable[str]) -> list[Requirement]:
    """The core requirements and those of ``extras``, the project's own extras expanded."""
    own = canonicalize_name(project["name"])
    optional = project.get("optional-dependencies", {})
    pending, done = list(extras), set()
    found = [Requirement(text) for text in project.get("dependencies", [])]
    while pending:
        extra = pending.pop()
        if extra in done:
            continue
        if extra not in optional:
            raise SystemExit(f"pyproject.toml has no extra {extra!r}: {sorted(optional)}")
        done.add(extra)
        for text in optional[extra]:
            requirement = Requirement(text)
            if canonicalize_name(requirement.name) == own:
                pending.extend(requirement.extras)
            else:
                found.append(requirement)
    return found


def lowest_pins(pyproject: Path, extras: Iterable[str]) -> dict[str, str]:
    """Distribution name -> its lowest allowed version, for the core and ``extras``."""
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    pins: dict[str, str] = {}
    for requirement in _requirements(project, extras):
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        name = canonicalize_name(requirement.name)
        for spec in requirement.specifier:
            if spec.operator not in _FLOOR_OPERATORS:
                continue
            if name not in pins or Version(spec.version) > Version(pins[name]):
                pins[name] = spec.version
    return pins


def main(argv: list[str]) -> int:
    for name, version in sorted(lowest_pins(PYPROJECT, argv).items()):
        print(f"{name}=={version}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
