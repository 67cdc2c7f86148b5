"""docs/architecture.md's layout names every module of the package, one line each, so that a
reader finds where each thing lives (a folder described as a whole, like ``runtime/ray/``,
covers the modules in it)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "speedster_dist"
DOC = ROOT / "docs" / "architecture.md"
_ENTRY = re.compile(r"^( *)(\S+\.py|\S+/)(\s|$)")
# The Ray modules that issue 19's other half moves into runtime/ray/ (described there as a
# whole): listed here until that move lands, then this set goes.
PENDING_MOVE = {
    f"runtime/{name}.py"
    for name in (
        "_ray",
        "_ray_executor",
        "_membership",
        "_demand",
        "_placement",
        "_in_flight",
        "_started",
        "_export_task",
        "_exports",
    )
}


def _layout() -> list[str]:
    """The layout block's entries as paths relative to the package (folders end in /)."""
    text = DOC.read_text()
    block = text[text.index("## The layout") :]
    block = block[block.index("```\n") + 4 :]
    block = block[: block.index("```")]
    stack: list[tuple[int, str]] = []
    entries = []
    for line in block.splitlines():
        match = _ENTRY.match(line)
        if not match:
            continue  # a description's continuation
        depth, name = len(match.group(1)), match.group(2)
        stack = [(d, n) for d, n in stack if d < depth]
        path = "".join(n for _, n in stack) + name
        entries.append(path)
        if name.endswith("/"):
            stack.append((depth, name))
    return [e.removeprefix("speedster_dist/") for e in entries if e != "speedster_dist/"]


def _covered(module: str, entries: list[str]) -> bool:
    if module in entries:
        return True
    folders = [e for e in entries if e.endswith("/") and module.startswith(e)]
    # A folder covers its modules when the layout describes it as a whole (no file under it).
    return any(not any(x.startswith(f) and x.endswith(".py") for x in entries) for f in folders)


def test_every_module_has_its_line_in_the_layout():
    entries = _layout()
    modules = {
        p.relative_to(PACKAGE).as_posix()
        for p in PACKAGE.rglob("*.py")
        if p.name not in ("__init__.py", "__main__.py")
    }
    pending = {m for m in PENDING_MOVE if m in modules}
    missing = sorted(m for m in modules - pending if not _covered(m, entries))
    assert not missing, f"add a line for each of these to docs/architecture.md: {missing}"
    gone = sorted(e for e in entries if e.endswith(".py") and not (PACKAGE / e).exists())
    assert not gone, f"docs/architecture.md names modules that do not exist: {gone}"
    assert "runtime/ray/" in entries
