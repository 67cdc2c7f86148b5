import io

from speedster_dist.present import is_terminal, knob_text, render_table

HEADERS = ["hardware type", "winner", "p50"]
ROWS = [
    [
        "cpu-amd-epyc-9654-avx512bf16-avx512vnni-avx512fp16-192c",
        "openvino fp32 " + "x=1 " * 40,
        "1 ms",
    ],
    ["gpu-nvidia-l4", "failed", "n/a"],
]


def test_plain_tables_have_no_colour_and_one_line_per_row_however_wide():
    text = render_table(HEADERS, ROWS)
    assert "\x1b" not in text
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    assert len(lines) == 3  # the header and two rows: nothing wrapped
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    assert cells[0] == HEADERS
    assert cells[1] == [cell.strip() for cell in ROWS[0]]  # in full, never cut
    assert cells[2] == ROWS[1]


def test_markdown_tables_are_markdown():
    lines = render_table(HEADERS, ROWS, markdown=True).splitlines()
    assert lines[0].startswith("| hardware type") and set(lines[1]) <= set("|-: ")


def test_styled_tables_wrap_to_the_terminal_and_colour_the_cells_asked():
    text = render_table(HEADERS, ROWS, styled=True, width=60, styles={"failed": "red"})
    assert "╭" in text and "\x1b[31mfailed" in text
    assert max(len(line) for line in _strip(text).splitlines()) <= 60
    first_column = "".join(
        line.split("│")[1].strip() for line in _strip(text).splitlines() if line.startswith("│")
    )
    assert ROWS[0][0] in first_column  # wrapped over lines, never cut


def _strip(text):
    import re

    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def test_knobs_show_the_samples_there_were():
    knobs = {"calibration_samples": 32, "threads": 4}
    assert knob_text(knobs) == " calibration_samples=32 threads=4"
    assert knob_text(knobs, calibration=8) == " calibration_samples=8 threads=4"
    assert knob_text({"calibration_samples": 0}, calibration=8) == " calibration_samples=8"
    assert knob_text({"calibration_samples": 4}, calibration=8) == " calibration_samples=4"
    assert knob_text({}) == ""


def test_only_an_interactive_terminal_is_a_terminal(monkeypatch):
    assert not is_terminal(io.StringIO())
    closed = io.StringIO()
    closed.close()
    assert not is_terminal(closed)

    class Tty(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setenv("TERM", "xterm")
    assert is_terminal(Tty())
    monkeypatch.setenv("TERM", "dumb")
    assert not is_terminal(Tty())
