"""Results: the trial history (Parquet), regression detection and the HTML report.

Nothing here imports torch, Ray or a backend library: reading the history and drawing the
report work on any machine with pyarrow.
"""

from speedster_dist.results._compact import CompactionStats, compact_history, live_files
from speedster_dist.results._history import (
    HistoryTarget,
    HistoryWriter,
    describe_model,
    open_history,
    read_history,
)
from speedster_dist.results._knowledge import (
    WARM_START_WINNERS,
    history_knowledge,
    knowledge_from_rows,
)
from speedster_dist.results._regress import Comparison, RegressionSettings, compare_run
from speedster_dist.results._schema import (
    HISTORY_SCHEMA,
    LOAD_COLUMNS,
    PARTITION_SCHEMA,
    ROLES,
    RUN_KINDS,
    SCHEMA_VERSION,
    SERVING_COLUMNS,
    TRIAL_SCHEMA,
    RunInfo,
    library_versions,
    new_run_id,
    trial_row,
)
from speedster_dist.results._winners import Winner, find_winners
from speedster_dist.results.report import WinnerColumn, render_report, write_report

__all__ = [
    "HISTORY_SCHEMA",
    "LOAD_COLUMNS",
    "PARTITION_SCHEMA",
    "ROLES",
    "RUN_KINDS",
    "SCHEMA_VERSION",
    "SERVING_COLUMNS",
    "TRIAL_SCHEMA",
    "WARM_START_WINNERS",
    "CompactionStats",
    "Comparison",
    "HistoryTarget",
    "HistoryWriter",
    "RegressionSettings",
    "RunInfo",
    "Winner",
    "WinnerColumn",
    "compact_history",
    "compare_run",
    "describe_model",
    "find_winners",
    "history_knowledge",
    "knowledge_from_rows",
    "library_versions",
    "live_files",
    "new_run_id",
    "open_history",
    "read_history",
    "render_report",
    "trial_row",
    "write_report",
]
