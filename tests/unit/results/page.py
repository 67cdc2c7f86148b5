"""Reading a report page as a reader does: the text of its tables' cells, the judged count,
the text drawn in its charts."""

import re
from html.parser import HTMLParser


class _Cells(HTMLParser):
    """The text of each cell of the table with id ``table_id``, row by row, and the text of
    the element with id ``judged``."""

    def __init__(self, table_id):
        super().__init__()
        self.table_id, self.inside, self.rows, self.cell = table_id, False, [], None
        self.judged, self.in_judged = "", False

    def handle_starttag(self, tag, attrs):
        ident = dict(attrs).get("id")
        if tag == "table" and ident == self.table_id:
            self.inside = True
        elif self.inside and tag == "tr":
            self.rows.append([])
        elif self.inside and tag in ("td", "th"):
            self.cell = ""
        elif tag == "br" and self.cell is not None:
            self.cell += " "
        if ident == "judged":
            self.in_judged = True

    def handle_endtag(self, tag):
        if tag == "table" and self.inside:
            self.inside = False
        elif self.inside and tag in ("td", "th") and self.cell is not None:
            self.rows[-1].append(" ".join(self.cell.split()))
            self.cell = None
        elif tag == "p":
            self.in_judged = False

    def handle_data(self, data):
        if self.cell is not None:
            self.cell += data
        if self.in_judged:
            self.judged += data


def cells(dom, table_id="winners"):
    parser = _Cells(table_id)
    parser.feed(dom)
    return parser


def chart_text(html):
    """Every text drawn in the page's charts, whitespace removed (a wrapped label reads as
    its words run together)."""
    drawn = "".join(re.findall(r"<text[^>]*>(.*?)</text>", html, flags=re.S))
    return re.sub(r"\s+", "", re.sub(r"<[^>]+>", "", drawn))


def chart_styles(html, fragment=None):
    """The style declarations the charts of ``fragment`` (default: the whole page) use: the
    page moves each chart's ``style`` attributes into its style sheet as classes."""
    rules = dict(re.findall(r"\.(s[0-9a-f]{10})\{([^}]*)\}", html))
    used = set(re.findall(r'class="[^"]*\b(s[0-9a-f]{10})\b', fragment or html))
    return {rules[name] for name in used}
