"""The report's templates (jinja2, autoescaped) and the page's Content-Security-Policy.

Every value a template writes is escaped unless it is :class:`markupsafe.Markup`: the
sections this package rendered, the charts matplotlib drew (their text escaped by
matplotlib's XML writer). Before escaping, text is made visible: bidi controls and other
control characters become ``[U+202E]``, so that a name in the history cannot reorder or hide
the page's text (Trojan Source). Data is only ever a template's *value*: ``{{7*7}}`` in a
model name is shown as written.

The page allows no script and fetches nothing (``default-src 'none'``). Its one ``<style>``
element is allowed by its SHA-256; the charts' inline ``style`` attributes (matplotlib's
SVG) are moved into that element as classes (:func:`styles_to_classes`), since a CSP that
allows a hash does not allow ``style`` attributes.
"""

from __future__ import annotations

import base64
import hashlib
import html
import re
import unicodedata
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

__all__ = [
    "content_security_policy",
    "render",
    "style_elements",
    "style_sheet",
    "styles_to_classes",
    "visible",
]

# Bidi embeddings, overrides, isolates and marks: they reorder the text around them.
_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_KEPT_CONTROLS = frozenset("\t\n\r")


def _shown(char: str) -> str:
    if char in _BIDI or (unicodedata.category(char) == "Cc" and char not in _KEPT_CONTROLS):
        return f"[U+{ord(char):04X}]"
    return char


def visible(text: str) -> str:
    """``text`` with bidi controls and control characters written as ``[U+XXXX]``."""
    if text.isprintable():  # the common case: nothing to replace (tabs, newlines are not)
        return text
    return "".join(_shown(char) for char in text)


def _finalize(value: Any) -> Any:
    """Every ``{{ value }}`` of a template: text made visible (then escaped by jinja2)."""
    if isinstance(value, str) and not isinstance(value, Markup):
        return visible(value)
    return value


_ENV = Environment(
    loader=PackageLoader("speedster_dist.results.report", "templates"),
    autoescape=True,
    finalize=_finalize,
    undefined=StrictUndefined,  # a misspelt name fails the render, never shows as ""
    trim_blocks=True,
    lstrip_blocks=True,
)


def render(template: str, **context: Any) -> Markup:
    """``template`` (a file of ``templates/``) rendered with ``context``: HTML, safe to
    place in another template."""
    return Markup(_ENV.get_template(template).render(**context))


# A start tag: in the page, "<" and ">" stand for themselves only in tags (text and attribute
# values are escaped: by jinja2, by html.escape, by matplotlib's XML writer), and attribute
# values hold no '"'. A tag is read attribute by attribute, so that a value holding
# ' style=' is never taken for an attribute.
_TAG = re.compile(r"<[A-Za-z][^<>]*>")
_NAME = re.compile(r"<[A-Za-z][\w:.-]*")
_ATTRIBUTE = re.compile(r'\s+([^\s="\'<>/]+)="([^"]*)"')
_STYLE_ELEMENT = re.compile(r"<style[^<>]*>([^<]*)</style>")


def _attributes(tag: str) -> tuple[str, list[tuple[str, str]], str] | None:
    """``<name``, its attributes and the tag's end; None for a tag not written as
    ``name="value"`` attributes only."""
    head = _NAME.match(tag)
    if head is None:
        return None
    found, at = [], head.end()
    for attribute in _ATTRIBUTE.finditer(tag, at):
        if attribute.start() != at:
            return None
        found.append((attribute.group(1), attribute.group(2)))
        at = attribute.end()
    end = tag[at:]
    return (head.group(0), found, end) if end.strip() in (">", "/>") else None


def styles_to_classes(markup: str, rules: dict[str, str]) -> str:
    """``markup`` with each tag's ``style="..."`` replaced by a class; ``rules`` (filled in)
    maps each class to its declarations, for the page's ``<style>``. The class name is a
    digest of the declarations: the same style, the same class on every chart. A tag it
    cannot read keeps its style attribute (which the policy then refuses: never run)."""

    def tag(match: re.Match[str]) -> str:
        parsed = _attributes(match.group(0))
        if parsed is None or not any(name == "style" for name, _ in parsed[1]):
            return match.group(0)
        head, attributes, end = parsed
        declarations = html.unescape(next(v for n, v in attributes if n == "style"))
        name = "s" + hashlib.sha256(declarations.encode()).hexdigest()[:10]
        rules[name] = declarations
        kept = [(n, v) for n, v in attributes if n not in ("style", "class")]
        classes = " ".join([*(v for n, v in attributes if n == "class"), name])
        text = "".join(f' {n}="{v}"' for n, v in kept)
        return f'{head} class="{classes}"{text}{end}'

    return _TAG.sub(tag, markup)


def style_elements(markup: str) -> tuple[str, list[str]]:
    """``markup`` without its ``<style>`` elements, and their contents (matplotlib writes
    one into each chart; in an HTML page it applies to the whole page anyway)."""
    found: list[str] = []

    def take(match: re.Match[str]) -> str:
        if match.group(1) not in found:
            found.append(match.group(1))
        return ""

    return _STYLE_ELEMENT.sub(take, markup), found


def style_sheet(parts: list[str], rules: dict[str, str]) -> str:
    """The page's one style sheet: ``parts`` and a rule per chart class. No ``<`` may occur
    in it (it could close the element): the declarations come from matplotlib's attributes,
    where it is escaped."""
    sheet = "".join(parts) + "".join(f".{name}{{{rules[name]}}}" for name in sorted(rules))
    if "<" in sheet:
        raise ValueError("a style declaration holds '<': refused")
    return sheet


def content_security_policy(sheet: str) -> str:
    """No script, nothing fetched, no form, no base URL; only the style sheet ``sheet``
    (exactly as the page's ``<style>`` holds it) by its SHA-256."""
    digest = base64.b64encode(hashlib.sha256(sheet.encode("utf-8")).digest()).decode()
    return f"default-src 'none'; style-src 'sha256-{digest}'; base-uri 'none'; form-action 'none'"
