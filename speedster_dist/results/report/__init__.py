"""The HTML report of a history: one self-contained page (inline CSS and SVG, no script).

``_page`` lays the page out; each section has its module (``_winner_table``: what runs where,
``_nights``: regressions night over night, ``_costs``: cost per 1M inferences and the
latency/cost frontier) and the charts are matplotlib's (``_plots`` picks the figures,
``_charts`` draws them). A new section is a function returning HTML, given to
``render_report(..., sections=...)``; a new column of the winners table is a
:class:`WinnerColumn`.
"""

from speedster_dist.results.report._charts import PALETTE, REGRESSION_RED
from speedster_dist.results.report._costs import FRONTIER_COLOR
from speedster_dist.results.report._page import render_report, write_report
from speedster_dist.results.report._winner_table import WinnerColumn

__all__ = [
    "FRONTIER_COLOR",
    "PALETTE",
    "REGRESSION_RED",
    "WinnerColumn",
    "render_report",
    "write_report",
]
