"""``speedster-dist report`` (the HTML page) and ``speedster-dist cluster`` (what is there)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from speedster_dist.cli._common import EXIT_FAILED, EXIT_OK, CliError, connect_cluster
from speedster_dist.errors import PriceError
from speedster_dist.present import say, show, terminal_table

__all__ = ["add_parsers"]


def add_parsers(sub: Any) -> None:
    report = sub.add_parser(
        "report",
        help="write the HTML report of a trial history",
        description="One self-contained HTML page (inline SVG, no script, nothing fetched).",
    )
    report.add_argument("--history", type=Path, required=True)
    report.add_argument("--out", type=Path, required=True, help="the .html file to write")
    report.add_argument("--title", default="speedster-dist report")
    report.add_argument("--threshold", type=float, default=0.2, help="as for rebench")
    report.add_argument("--tail-threshold", type=float, default=0.5, help="as for rebench")
    report.add_argument("--window", type=int, default=7, help="as for rebench")
    report.add_argument("--min-history", type=int, default=3, help="as for rebench")
    report.add_argument("--prices", type=Path, help="prices.yaml: adds cost per 1M inferences")
    report.set_defaults(run=run_report)
    cluster = sub.add_parser(
        "cluster",
        help="list the hardware types and nodes of the cluster",
        description="Probe every alive node: its hardware types and usable backends.",
    )
    cluster.add_argument(
        "--json", action="store_true", help="print one JSON document instead of a table"
    )
    cluster.set_defaults(run=run_cluster)


def run_report(args: argparse.Namespace) -> int:
    from speedster_dist.results import RegressionSettings, read_history, render_report

    try:
        rows = read_history(args.history).to_pylist()
        settings = RegressionSettings(
            args.threshold, args.window, args.min_history, tail_threshold=args.tail_threshold
        )
    except (FileNotFoundError, ValueError) as exc:
        raise CliError(str(exc)) from exc
    if not rows:
        raise CliError(f"the history {args.history} holds no trial", EXIT_FAILED)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    prices = _prices(getattr(args, "prices", None))
    args.out.write_text(render_report(rows, args.title, settings, prices=prices), encoding="utf-8")
    runs = len({r["run_id"] for r in rows})
    trials = sum(r["role"] != "confirmed" for r in rows)  # not a confirmation's re-timings
    say(f"report of {trials} trials from {runs} runs written to {args.out}")
    show(str(args.out))
    return EXIT_OK


def _prices(path: Path | None) -> Any:
    from speedster_dist.cost import load_prices

    try:
        return load_prices(path) if path is not None else None
    except PriceError as exc:
        raise CliError(str(exc)) from exc


def run_cluster(args: argparse.Namespace) -> int:
    from speedster_dist.runtime.ray import RayExecutor, node_addresses

    connect_cluster(args.cluster or "auto")
    groups = RayExecutor().discover()
    addresses = node_addresses()
    described: list[dict[str, Any]] = [
        {
            "hardware_type": g.hardware.key,
            "device": g.hardware.device.value,
            "description": g.hardware.description,
            "nodes": [{"node_id": n, "address": addresses.get(n, "")} for n in g.node_ids],
            "backends": [i.name for i in g.catalog if i.unavailable is None],
            "unavailable": {i.name: i.unavailable for i in g.catalog if i.unavailable},
        }
        for g in groups
    ]
    args.document["hardware_types"] = described  # --json: the CLI prints it
    if args.json:
        return EXIT_OK
    rows = [
        [
            d["hardware_type"],
            d["device"],
            str(len(d["nodes"])),
            ", ".join(f"{n['node_id'][:12]}@{n['address']}" for n in d["nodes"]),
            ", ".join(d["backends"]),
        ]
        for d in described
    ]
    show(terminal_table(["hardware type", "device", "nodes", "node ids", "backends"], rows))
    for d in described:
        show(f"\n{d['hardware_type']}: {d['description']}")
        for name, why in d["unavailable"].items():
            show(f"  not usable: {name}: {why}")
    return EXIT_OK
