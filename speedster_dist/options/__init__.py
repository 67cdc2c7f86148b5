"""Every setting of a search, parsed and validated once: :class:`RunOptions`.

``optimize_model``'s arguments and keyword extras, and the settings a rebench kit recorded,
go through :func:`parse_run_options` before any model is touched or any Ray is started.
Each wrong value raises :class:`~speedster_dist.errors.InputError` saying what was wrong and
how to fix it; no value (NaN and infinity included) can switch the accuracy guard off.

The fields of :class:`RunOptions` are the one list of settings (``_settings``): each names
the keyword that sets it and the parser that checks it (``_parsers``), and its default is the
keyword's, so that :data:`EXTRA_KWARGS`, the defaults and the checks cannot drift apart.
"""

from speedster_dist.options._parsers import (
    COMPRESSORS,
    SEARCHERS,
    HistoryLocation,
    RuntimeEnv,
    check_output_folder,
)
from speedster_dist.options._settings import (
    DEFAULT_TRIAL_TIMEOUT_S,
    EXTRA_KWARGS,
    SPEEDSTER_ARGS,
    RunOptions,
    parse_run_options,
)
from speedster_dist.search import DEFAULT_CONFIRM_ROUNDS, DEFAULT_CONFIRM_TOP, DEFAULT_GROUP_WAIT_S

__all__ = [
    "COMPRESSORS",
    "DEFAULT_CONFIRM_ROUNDS",
    "DEFAULT_CONFIRM_TOP",
    "DEFAULT_GROUP_WAIT_S",
    "DEFAULT_TRIAL_TIMEOUT_S",
    "EXTRA_KWARGS",
    "SEARCHERS",
    "SPEEDSTER_ARGS",
    "HistoryLocation",
    "RunOptions",
    "RuntimeEnv",
    "check_output_folder",
    "parse_run_options",
]
