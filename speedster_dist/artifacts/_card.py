"""The model card: a ``README.md`` in every saved learner, for the people who find the folder.

It says what was optimized, the winner of each hardware type with its figures, the accuracy
guard (metric and threshold), how to load the learner and what loading it trusts. It is
rendered from the manifest being saved (``templates/model_card.md.j2``), and the manifest
lists it with its SHA-256 like every other file, so that a signature covers it and a README
changed after saving is refused at load (:func:`check_card`).

Markdown has no autoescape, so the card has its own: every value the template prints goes
through :func:`_finalize`, which writes a string as inline code (:func:`code_span`: no link,
image, HTML or table cell can come out of it) unless it is :class:`Markdown` the card wrote
itself. Model names, hardware descriptions and knob values are whatever the user's model and
machine said; a hostile name is shown, never interpreted.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from speedster_dist.artifacts._encoder import pooling_modes
from speedster_dist.artifacts._files import UnsafeName, read_plain_file, sha256_bytes
from speedster_dist.artifacts._schema import CARD_FILE
from speedster_dist.errors import ArtifactError

__all__ = ["CARD_FILE", "Markdown", "card_record", "check_card", "code_span", "render_card"]

_TEMPLATES = Path(__file__).parent / "templates"
_TEMPLATE = "model_card.md.j2"
_MAX_CARD_BYTES = 1 << 20
# Control, format (bidirectional overrides, zero-width) and line/paragraph separators: they
# would break a line of the card, or make a name read as something else.
_HIDDEN = ("Cc", "Cf", "Zl", "Zp")


class Markdown(str):
    """Text the card wrote as markdown itself (a filter's output): printed as it is."""


def code_span(value: object) -> Markdown:
    """``value`` as one line of inline code: markdown and HTML in it are shown, not read.

    Line breaks and invisible characters become spaces; a pipe is written ``\\|`` (GFM
    splits table cells before it reads code spans); the fence is one backtick longer than
    the longest run of backticks inside, as CommonMark requires.
    """
    text = "".join(" " if unicodedata.category(ch) in _HIDDEN else ch for ch in str(value))
    text = " ".join(text.split()).replace("|", "\\|")
    if not text:
        return Markdown("(none)")
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return Markdown(f"{fence}{pad}{text}{pad}{fence}")


def _finalize(value: Any) -> str:
    """What the template prints for ``value``: the card's own markdown as it is, numbers and
    flags as text, any other string escaped as inline code."""
    if isinstance(value, Markdown):
        return value
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return f"{value:g}"
    return code_span(value)


def _figure(value: Any, spec: str, unit: str = "") -> Markdown | None:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    return Markdown(f"{value:{spec}}{unit}")


def _speedup(metrics: Mapping[str, Any]) -> Markdown | None:
    confirmed = _figure(metrics.get("confirmed_speedup"), ".2f", "x")
    low = _figure(metrics.get("confirmed_speedup_low"), ".2f")
    high = _figure(metrics.get("confirmed_speedup_high"), ".2f")
    if confirmed and low and high:
        return Markdown(f"{confirmed} ({low}-{high}, confirmed)")
    p50, base = metrics.get("latency_p50_s"), metrics.get("baseline_p50_s")
    if isinstance(p50, int | float) and isinstance(base, int | float) and p50 > 0:
        return _figure(base / p50, ".2f", "x")
    return None


def _winner(key: str, raw: Mapping[str, Any]) -> dict[str, Any]:
    metrics = raw.get("metrics", {})
    technique = raw.get("technique", "")
    p50 = metrics.get("latency_p50_s")
    knobs = ", ".join(f"{name}={value}" for name, value in sorted(raw.get("knobs", {}).items()))
    return {
        "key": key,
        "description": raw.get("hardware", {}).get("description", ""),
        "label": f"{raw['backend']} {raw['precision']}" + (f"/{technique}" if technique else ""),
        "knobs": knobs or None,
        "p50": _figure(p50 * 1e3 if isinstance(p50, int | float) else None, ".3g", " ms"),
        "speedup": _speedup(metrics),
        "drop": _figure(metrics.get("metric_drop"), ".3g"),
    }


def _context(manifest: Mapping[str, Any], programs: Sequence[str], signed: bool) -> dict[str, Any]:
    about = manifest.get("about", {})
    io = manifest["io"]
    entries = manifest["entries"]
    encoder = manifest.get("encoder")
    portable = manifest.get("portable")
    threshold = about.get("metric_drop_ths")
    load_args = (", trust_code=True" if programs else "") + (", verify_key=key" if signed else "")
    return {
        "model": about.get("model") or Markdown("the model"),
        "fallback": Markdown(", else the portable fallback" if portable else ""),
        "inputs": Markdown(", ".join(code_span(name) for name in io["input_names"])),
        "call": Markdown("passed by keyword" if io["keyword"] else "passed in this order"),
        "batch": about.get("batch_size"),
        "metric": about.get("metric"),
        "threshold": threshold if threshold else Markdown("0 (no reduced precision tried)"),
        "winners": [_winner(key, raw) for key, raw in entries.items()],
        "confirmed": any("confirmed_speedup" in raw.get("metrics", {}) for raw in entries.values()),
        "portable": Markdown(f"{code_span(portable['backend'])} on the CPU") if portable else None,
        "load_args": Markdown(load_args),
        "programs": Markdown(", ".join(code_span(key) for key in programs)),
        "data_only": Markdown(
            ", ".join(
                f"{code_span(key)}: {code_span(raw['backend'])} {code_span(raw['precision'])}"
                for key, raw in manifest.get("data_only", {}).items()
            )
        ),
        "signed": signed,
        "encoder": _encoder(encoder) if encoder else None,
    }


def _encoder(raw: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "pooling": Markdown(", ".join(code_span(m) for m in pooling_modes(raw["pooling"]))),
        "normalize": Markdown(" and normalization" if raw["normalize"] else ""),
    }


def render_card(manifest: Mapping[str, Any], programs: Sequence[str], signed: bool) -> str:
    """The README of the learner ``manifest`` describes (a validated manifest's fields, as
    :func:`~speedster_dist.artifacts.save_learner` builds it). ``programs``: the entries
    (``"portable"`` included) saved as programs, which load only with ``trust_code=True``;
    ``signed``: whether the manifest is about to be signed."""
    import jinja2  # only when saving: loading a learner never renders a card

    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(_TEMPLATES),
        autoescape=False,  # markdown, not HTML: _finalize escapes every value instead
        finalize=_finalize,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    return environment.get_template(_TEMPLATE).render(_context(manifest, programs, signed))


def card_record(text: str) -> dict[str, str]:
    """The manifest's record of the card ``text`` written as ``README.md``."""
    return {"file": CARD_FILE, "sha256": sha256_bytes(text.encode("utf-8"))}


def check_card(root: Path, manifest: Mapping[str, Any]) -> None:
    """Refuse (:class:`ArtifactError`) a learner whose ``README.md`` differs from the one
    its manifest lists (nothing to check for a learner saved without a card)."""
    card = manifest.get("card")
    if card is None:
        return
    where = root / CARD_FILE
    try:
        data = read_plain_file(root, CARD_FILE, _MAX_CARD_BYTES)
    except FileNotFoundError:
        raise ArtifactError(f"{where} is missing, but manifest.json lists it") from None
    except (UnsafeName, OSError) as exc:
        raise ArtifactError(f"{where} cannot be read: {exc}") from exc
    if sha256_bytes(data) != card["sha256"]:
        raise ArtifactError(
            f"{where} does not match its checksum in manifest.json (the file was changed "
            "after the learner was saved)"
        )
