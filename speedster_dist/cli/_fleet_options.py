"""Cluster and study options shared by ``optimize`` and ``sweep`` (docs/cli.md)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

__all__ = ["add_fleet_options", "fleet_settings"]


def add_fleet_options(parser: argparse.ArgumentParser, *, overrides: bool = False) -> None:
    """``--node-groups``, ``--group-wait``, ``--study-storage``, ``--prices``, ``--resume``; with
    ``overrides`` (sweep) they default to None and override the YAML's settings only when given."""
    parser.add_argument(
        "--node-groups",
        help="comma-separated node groups to bring up (or a cluster YAML declaring them); "
        "default: the groups of the cluster's nodes and autoscaler config",
    )
    parser.add_argument(
        "--group-wait",
        type=float,
        default=None if overrides else 600.0,
        help="seconds to wait for each node group to join (default 600)",
    )
    parser.add_argument(
        "--study-storage",
        metavar="URL|FILE|DIR",
        help="where the Optuna studies live, as Optuna takes it: a database URL "
        "(sqlite:///studies.db, postgresql://...), a journal file, or a folder of journal "
        "files (default: the cache); optuna-dashboard opens the URL or the journal file",
    )
    parser.add_argument(
        "--prices", type=Path, help="prices.yaml: cost per 1M inferences in the summary"
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        default=None if overrides else False,
        help="continue the stored studies: finished trials are not measured again",
    )


def _groups(text: str) -> tuple[str, ...]:
    if text.endswith((".yaml", ".yml")):
        return (text,)
    return tuple(n.strip() for n in text.split(",") if n.strip())


def fleet_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The JobSpec fields the fleet options give (only those given, for overrides)."""
    settings: dict[str, Any] = {
        "node_groups": _groups(args.node_groups) if args.node_groups else None,
        "group_wait": args.group_wait,
        "study_storage": args.study_storage,
        "resume": args.resume,
        "prices": args.prices,
    }
    return {k: v for k, v in settings.items() if v is not None}
