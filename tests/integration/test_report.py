"""The report page rendered by a real browser: headless Chromium takes a screenshot, and the
plots must be on it (their colours counted in the decoded pixels), not only in the HTML; the
text a reader sees (the winners table's cells, the judged count) is read from the DOM Chromium
rendered."""

import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from speedster_dist.cli import EXIT_OK, main
from speedster_dist.results.report import PALETTE, REGRESSION_RED

from ..unit.results.fleet import CPU, GPU, fleet
from ..unit.results.page import cells

pytestmark = pytest.mark.integration

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
needs_chromium = pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason="headless Chromium is not installed (apt-get install -y chromium; .ci/run does it)",
)
WIDTH, HEIGHT = 1400, 2600


def chromium(page, user_data, *args):
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={user_data}",
        *args,
        page.as_uri(),
    ]
    return subprocess.run([CHROMIUM, *flags], capture_output=True, text=True, timeout=120)


def _unfilter(data, width, channels, height):
    """PNG scanline filters (None, Sub, Up, Average, Paeth) undone: raw rows of bytes."""
    stride, rows, previous, at = width * channels, [], bytearray(width * channels), 0
    for _ in range(height):
        kind, line = data[at], bytearray(data[at + 1 : at + 1 + stride])
        at += 1 + stride
        for i in range(stride):
            a = line[i - channels] if i >= channels else 0
            b, c = previous[i], previous[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + a) & 255
            elif kind == 2:
                line[i] = (line[i] + b) & 255
            elif kind == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        previous = line
    return rows


def pixel_counts(png):
    """How many pixels of each exact RGB colour an 8-bit RGB(A) PNG holds."""
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height, depth, color = struct.unpack(">IIBB", data[16:26])
    assert depth == 8 and color in (2, 6), (depth, color)
    channels, at, idat = (3 if color == 2 else 4), 8, b""
    while at < len(data):
        length, kind = struct.unpack(">I4s", data[at : at + 8])
        if kind == b"IDAT":
            idat += data[at + 8 : at + 8 + length]
        at += 12 + length
    counts: dict[bytes, int] = {}
    for row in _unfilter(zlib.decompress(idat), width, channels, height):
        for x in range(0, len(row), channels):
            rgb = row[x : x + 3]
            counts[rgb] = counts.get(rgb, 0) + 1
    return (width, height), counts


@needs_chromium
def test_the_report_renders_in_headless_chromium_with_its_plots(tmp_path):
    history, page = tmp_path / "history", tmp_path / "report.html"
    fleet(history)
    assert main(["report", "--history", str(history), "--out", str(page)]) == EXIT_OK

    shot = tmp_path / "report.png"
    done = chromium(
        page, tmp_path / "profile", f"--window-size={WIDTH},{HEIGHT}", f"--screenshot={shot}"
    )
    assert done.returncode == 0 and shot.is_file(), done.stderr[-2000:]
    size, counts = pixel_counts(shot)
    assert size == (WIDTH, HEIGHT)
    colour = {h: bytes.fromhex(h[1:]) for h in PALETTE}
    # The speed-up bars are solid blocks of the first two palette colours (one per hardware
    # type); the regression ring is pure red; the white page is mostly background.
    assert counts.get(colour[PALETTE[0]], 0) > 1500
    assert counts.get(colour[PALETTE[1]], 0) > 1500
    assert counts.get(bytes.fromhex(REGRESSION_RED[1:]), 0) > 20
    assert counts.get(b"\xff\xff\xff", 0) > WIDTH * HEIGHT // 2

    dom = chromium(page, tmp_path / "profile", "--dump-dom").stdout
    assert dom.count("<svg") == 5 and "<script" not in dom
    # What a reader sees first: the winner of each model x hardware type, with its figures.
    header, *rows = cells(dom).rows
    assert header[:11] == [
        "model",
        "hardware type",
        "backend",
        "precision",
        "knobs",
        "p50",
        "p90",
        "speed-up",
        "metric drop",
        "confirmed",
        "measured",
    ]
    by_hardware = {row[1]: row for row in rows}
    assert set(by_hardware) == {CPU, GPU}
    cpu, gpu = by_hardware[CPU], by_hardware[GPU]
    # The CPU winner as re-measured on night 5 (2x slower: regressed), 1.25x its baseline.
    assert cpu[0] == "bert-base learner bert" and cpu[2:5] == ["onnxruntime", "int8/dynamic", "-"]
    assert cpu[5:8] == ["8 ms", "8.8 ms", "1.25x"] and cpu[9] == "REGRESSED on 2024-03-06"
    assert cpu[10] == "2024-03-06 02:00 UTC nightly re-measure"
    # The GPU winner comes from the search only: never re-measured, said so.
    assert gpu[2:8] == ["onnxruntime", "int8/dynamic", "-", "1 ms", "1.1 ms", "2.50x"]
    assert gpu[8] == "0.012 (limit 0.05)" and gpu[9] == "not re-measured"
    assert cells(dom).judged == "Latest night (night-5): 6 of 6 figures judged (needs 3 nights)."
    failures = cells(dom, "failures").rows[1:]
    assert [row[4] for row in failures] == ["failed", "rejected", "rejected"]


@needs_chromium
def test_the_cost_section_and_its_frontier_plot_render_in_headless_chromium(tmp_path):
    from speedster_dist.results.report import FRONTIER_COLOR

    history, page = tmp_path / "history", tmp_path / "report.html"
    fleet(history)
    prices = tmp_path / "prices.yaml"
    prices.write_text(f"source: test prices\nprices: {{{CPU}: 0.36, {GPU}: 3.6}}\n")
    args = ["report", "--history", str(history), "--out", str(page), "--prices", str(prices)]
    assert main(args) == EXIT_OK
    html = page.read_text()
    # Only the cost section on a page of its own: the screenshot shows the frontier plot.
    section = html.split("<h2>Cost per 1M inferences</h2>")[1].split("<h2>")[0]
    alone = tmp_path / "cost.html"
    alone.write_text(html.split("<h2>")[0] + "<h2>Cost per 1M inferences</h2>" + section)
    shot = tmp_path / "cost.png"
    done = chromium(alone, tmp_path / "profile", "--window-size=1000,900", f"--screenshot={shot}")
    assert done.returncode == 0 and shot.is_file(), done.stderr[-2000:]
    _, counts = pixel_counts(shot)
    assert counts.get(bytes.fromhex(FRONTIER_COLOR[1:]), 0) > 200  # the frontier line, drawn
    dom = chromium(alone, tmp_path / "profile", "--dump-dom").stdout
    assert dom.count("<svg") == 1 and "cheapest" in dom and "0.4 USD" in dom
    # The winners table carries each winner's cost per 1M inferences too; this history holds
    # latency searches only, so each cost is priced at the throughput derived from p50, said so.
    full = chromium(page, tmp_path / "profile", "--dump-dom").stdout
    header, *rows = cells(full).rows
    assert header[-1] == "cost per 1M (USD)"
    assert all(row[-1].endswith(" USD (from p50)") for row in rows), rows


@needs_chromium
def test_the_pages_policy_is_enforced_and_allows_its_own_style_sheet(tmp_path):
    """The Content-Security-Policy allows the page's one style sheet by its hash: as written
    the page is drawn with its charts' colours; the same page with one rule of the sheet
    changed is drawn without any (the browser refuses the sheet), so the policy is live."""
    history, page = tmp_path / "history", tmp_path / "report.html"
    fleet(history)
    assert main(["report", "--history", str(history), "--out", str(page)]) == EXIT_OK
    html = page.read_text()
    tampered = tmp_path / "tampered.html"
    tampered.write_text(html.replace("h1{font-size:22px}", "h1{font-size:23px}", 1))
    blue = bytes.fromhex(PALETTE[0][1:])
    drawn = {}
    for name, path in (("page", page), ("tampered", tampered)):
        shot = tmp_path / f"{name}.png"
        done = chromium(
            path, tmp_path / "profile", "--window-size=1400,2600", f"--screenshot={shot}"
        )
        assert done.returncode == 0 and shot.is_file(), done.stderr[-2000:]
        drawn[name] = pixel_counts(shot)[1].get(blue, 0)
    assert drawn["page"] > 1500 and drawn["tampered"] == 0
