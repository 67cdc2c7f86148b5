"""Hostile text in every field that reaches the report is shown as text: escaped, never markup,
never a template expression, never a reordering of the page; and the page's policy allows no
script and only its own style sheet."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from html.parser import HTMLParser

import pytest

from speedster_dist.cli import main
from speedster_dist.cost import parse_prices
from speedster_dist.records import TrialStatus
from speedster_dist.results import read_history, render_report
from speedster_dist.results.report._templates import styles_to_classes, visible

from ..conftest import run, trial
from ..fleet import fleet
from ..page import cells

# Markup, an attribute breaking out of its quotes, a template expression, mathtext, a
# right-to-left override (and its isolate), a script URL, a style element's end.
HOSTILE = (
    '<script>alert(1)</script> "><img src=x onerror=alert(1)> {{7*7}} $\\frac{1}{$ '
    "\u202eevil\u2066 javascript:alert(1) </style><b onmouseover=alert(1)>"
)
SHOWN = visible(HOSTILE)  # what a reader sees: the controls written as [U+202E], [U+2066]
# Text fields of a history row; status, role and the JSON columns keep their meaning.
TEXT_FIELDS = (
    "model_name",
    "model_fingerprint",
    "learner",
    "backend",
    "precision",
    "technique",
    "hardware_type",
    "reason",
    "run_id",
    "node_id",
    "host",
)
_DANGEROUS_TAGS = {"script", "img", "iframe", "object", "embed", "link", "base", "form", "a"}


class _Page(HTMLParser):
    """Every start tag (and whether it is inside a chart), every text, every style element."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None], bool]] = []
        self.text: list[str] = []
        self.styles: list[str] = []
        self._svg = 0
        self._in_style = False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs), self._svg > 0))
        self._svg += tag == "svg"
        self._in_style = tag == "style"

    def handle_endtag(self, tag):
        self._svg -= tag == "svg"
        self._in_style = False

    def handle_data(self, data):
        (self.styles if self._in_style else self.text).append(data)


def parsed(html: str) -> _Page:
    page = _Page()
    page.feed(html)
    return page


def hostile(value: str) -> str:
    return f"{value}{HOSTILE}"


def _hostile_rows(rows):
    """The same history, each text field with HOSTILE appended (the same value stays the same
    value: groups and comparisons are unchanged), knobs and library versions too."""
    out = []
    for row in rows:
        row = dict(row)
        for name in TEXT_FIELDS:
            if row[name]:
                row[name] = hostile(row[name])
        if row["run_kind"] != "rebench":  # a search's kind is shown as text ("... search")
            row["run_kind"] = hostile(row["run_kind"])
        row["knobs"] = json.dumps({**json.loads(row["knobs"] or "{}"), HOSTILE: HOSTILE})
        row["versions"] = json.dumps({HOSTILE: HOSTILE})
        out.append(row)
    return out


def _page(rows, title):
    hardware = {r["hardware_type"] for r in rows}
    prices = parse_prices(
        {"prices": dict.fromkeys(hardware, 1.0), "source": HOSTILE, "currency": HOSTILE}
    )
    return render_report(
        rows,
        title,
        winner_columns=[(HOSTILE, lambda w: HOSTILE)],
        sections=[(HOSTILE, "<p>given</p>")],
        prices=prices,
    )


def _assert_inert(page: _Page) -> None:
    for tag, attrs, _ in page.tags:
        assert tag not in _DANGEROUS_TAGS, (tag, attrs)
        assert not any(name.startswith("on") for name in attrs), (tag, attrs)
        urls = [(value or "").strip().lower() for value in attrs.values()]
        assert not any(url.startswith("javascript:") for url in urls), attrs
        assert "style" not in attrs, (tag, attrs)  # every style is in the one style sheet
    assert len(page.styles) == 1


def test_hostile_text_in_every_field_is_shown_escaped_and_never_runs(history):
    fleet(history)
    clean = read_history(history).to_pylist()
    rows = _hostile_rows(clean)
    html = _page(rows, HOSTILE)
    page = parsed(html)
    _assert_inert(page)
    # No element comes from data: outside the charts, the hostile page has the clean page's
    # elements, tag for tag.
    reference = parsed(_page(clean, "title"))
    outside = [(tag, sorted(attrs)) for tag, attrs, in_svg in page.tags if not in_svg]
    assert outside == [(tag, sorted(attrs)) for tag, attrs, in_svg in reference.tags if not in_svg]
    # Escaped in the source, shown whole: markup as text, {{7*7}} as written, the controls
    # made visible (none is left to reorder the page).
    assert "<script" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "\u202e" not in html and "\u2066" not in html and "[U+202E]evil[U+2066]" in html
    assert "{{7*7}}" in html and "49" not in "".join(page.text)
    text = "".join(page.text)
    assert text.count(SHOWN) >= 20
    # Each field, in its cell: the winners table...
    header, *winners = cells(html).rows
    assert header[-2:] == [SHOWN, f"cost per 1M ({SHOWN})"]  # a column given, the cost column
    # (latency rows: the throughput priced is derived from the p50, and the cell says so)
    assert all(row[-2] == SHOWN and row[-1].endswith(f" {SHOWN} (from p50)") for row in winners)
    searched = next(row for row in winners if "search" in row[10])
    assert f"optimize{SHOWN} search" in searched[10]  # the field that went unescaped before
    for row in winners:
        assert row[0].startswith(f"bert-base{SHOWN}") and f"learner bert{SHOWN}" in row[0]
        assert row[1].endswith(SHOWN) and row[2].endswith(SHOWN) and SHOWN in row[3]
        assert f"{SHOWN}={SHOWN}" in row[4]  # a knob: its name and its value
    # ... the nights (run, model, hardware, candidate), the failures (reason, run), the
    # overview (library versions), the headings, the cost section.
    judged = cells(html).judged
    assert judged.startswith(f"Latest night (night-5{SHOWN})")
    latest = cells(html, "latest-night").rows[1:]
    assert all(row[0] == f"bert-base{SHOWN} (bert{SHOWN})" and SHOWN in row[3] for row in latest)
    failures = cells(html, "failures").rows[1:]
    assert all(row[7].endswith(SHOWN) and row[6].startswith(f"optimize{SHOWN}") for row in failures)
    assert f"Latest run used: {SHOWN} {SHOWN}." in text
    assert f"Prices: {SHOWN} ({SHOWN} per node-hour)" in text
    assert text.count(SHOWN) > sum(1 for tag, _, _ in page.tags if tag == "td") // 4


def test_a_hostile_history_on_disk_reports_through_the_command(tmp_path, capsys):
    history = tmp_path / f"history {HOSTILE[:20]}"
    run_id = hostile("search").replace("/", "|").replace("\\", "|")  # part of file names
    writer = run(history, run_id, model=hostile("bert"), learner=hostile("l"))
    hardware = hostile("cpu").replace(" ", "_")  # a key is a word: the partition's folder
    writer.append(trial("torch", "fp32", hardware, 0.010, baseline=True))
    writer.append(trial(hostile("ort"), "fp32", hardware, 0.004, technique=HOSTILE))
    writer.append(trial(hostile("ov"), "int8", hardware, status=TrialStatus.FAILED, reason=HOSTILE))
    out = tmp_path / "report.html"
    assert main(["report", "--history", str(history), "--out", str(out), "--title", HOSTILE]) == 0
    html = out.read_text(encoding="utf-8")
    page = parsed(html)
    _assert_inert(page)
    assert "<script" not in html and "\u202e" not in html
    (row,) = cells(html).rows[1:]
    assert row[0] == f"bert{SHOWN} learner l{SHOWN}" and row[1] == visible(hardware)
    assert row[2] == f"ort{SHOWN}" and row[3] == f"fp32/{SHOWN}"
    assert cells(html, "failures").rows[1][7] == SHOWN
    with pytest.raises(ValueError, match="part of file names"):
        run(history, "../../elsewhere")


def test_the_policy_allows_no_script_and_the_one_style_sheet_by_its_hash(history):
    fleet(history)
    html = render_report(read_history(history).to_pylist())
    page = parsed(html)
    metas = [attrs for tag, attrs, _ in page.tags if tag == "meta" and "http-equiv" in attrs]
    assert len(metas) == 1 and metas[0]["http-equiv"] == "Content-Security-Policy"
    content = str(metas[0]["content"])
    policy = dict(part.split(" ", 1) for part in content.strip().split("; "))
    assert policy["default-src"] == "'none'"  # no script, no image, no font, nothing fetched
    assert policy["base-uri"] == policy["form-action"] == "'none'"
    (sheet,) = page.styles
    digest = base64.b64encode(hashlib.sha256(sheet.encode()).digest()).decode()
    assert policy["style-src"] == f"'sha256-{digest}'"  # this sheet, and no inline style
    assert "'unsafe-inline'" not in content
    # The charts' styles are classes of that sheet, each declared once.
    used = {c for _, attrs, _ in page.tags for c in (attrs.get("class") or "").split()}
    declared = re.findall(r"\.(s[0-9a-f]{10})\{", sheet)
    assert len(declared) == len(set(declared)) and set(declared) == used & set(declared)
    assert {c for c in used if re.fullmatch(r"s[0-9a-f]{10}", c)} == set(declared)


def test_controls_are_made_visible_and_plain_text_is_kept():
    assert visible("plain text, tabs\tand\nnewlines") == "plain text, tabs\tand\nnewlines"
    assert visible("a\u202eb\u200fc\x00d") == "a[U+202E]b[U+200F]c[U+0000]d"


def test_a_value_that_reads_like_a_style_attribute_stays_in_its_value():
    rules: dict[str, str] = {}
    chart = '<svg aria-label="bert style=" width="10pt"><path d="M 0" style="fill: #fff"/></svg>'
    moved = styles_to_classes(chart, rules)
    assert moved.startswith('<svg aria-label="bert style=" width="10pt">')  # untouched
    assert list(rules.values()) == ["fill: #fff"] and f'class="{next(iter(rules))}"' in moved
