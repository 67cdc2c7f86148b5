"""The sweep file's shape, as pydantic models: each field's type checked strictly (``kit:
"false"`` is text, not a boolean: refused), a name list given as one string taken as a
one-item list (``ignore_compilers: tensorrt``, never its letters), unknown keys refused with
the closest known one. The values themselves (a metric's name, a threshold's range, a
backend's name) are then checked by the options parser, as ``optimize_model`` checks them.

:func:`validate_sweep` turns pydantic's errors into one :class:`InputError` that names each
field by its place in the file (``jobs[0].settings[1].kit``).
"""

from __future__ import annotations

import difflib
import typing
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationError,
)

from speedster_dist.errors import InputError

__all__ = ["JobFile", "SweepFile", "VariantFile", "validate_sweep"]


def _one_or_many(value: Any) -> Any:
    """A name list: one string is one name, never split into its letters."""
    return [value] if isinstance(value, str) else value


def _one_or_many_numbers(value: Any) -> Any:
    """Load points: one whole number is a list of one."""
    return [value] if isinstance(value, int) and not isinstance(value, bool) else value


def _budget(value: Any) -> str | float:
    """``constrained``, ``unconstrained`` or seconds; text or a number (not a boolean)."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError("give constrained, unconstrained or a number of seconds")
    return value if isinstance(value, str) else float(value)


Names = Annotated[list[str], BeforeValidator(_one_or_many)]
Budget = Annotated[str | float, PlainValidator(_budget)]
Positive = Annotated[int, Field(ge=1)]
# Load points (batch sizes, requests in flight): whole numbers >= 1, at least one.
LoadPoints = Annotated[list[Positive], BeforeValidator(_one_or_many_numbers), Field(min_length=1)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class JobSettings(_Strict):
    """What ``defaults``, a job and each of its ``settings`` may set: ``optimize``'s options,
    with underscores (docs/cli.md). Paths are relative to the sweep file."""

    tokenizer: str | None = None
    model_class: str = "AutoModel"
    max_length: Positive | None = None
    batch_size: Positive = 1
    metric_drop_ths: float | None = None
    metric: str = "numeric_precision"
    optimization_time: Budget = "constrained"
    device: str | None = None
    ignore_compilers: Names = []
    ignore_compressors: Names = []
    trial_timeout: float = 900.0
    kit: bool = True
    node_groups: Names = []  # or one cluster YAML that declares them
    group_wait: float = 600.0
    study_storage: str | None = None  # a URL as Optuna takes it, a journal file, a folder
    resume: bool = False
    prices: str | None = None
    # What the search optimizes, and its constraints (docs/throughput.md).
    objective: str = "latency"
    batch_sizes: LoadPoints | None = None
    concurrency: LoadPoints | None = None
    latency_budget_ms: float | None = None
    latency_percentile: float = 99.0
    max_memory_mb: float | None = None
    # Generation (docs/generation.md): "" decides from the model.
    task: str = ""
    max_new_tokens: Positive = 32


class VariantFile(JobSettings):
    """One entry of a job's ``settings``: a learner of the job's model, ``<job>-<name>``."""

    name: str | None = None


class JobFile(JobSettings):
    """One job: a model, its inputs, its settings (and optional variants of them)."""

    name: str | None = None
    model: str
    inputs: str
    settings: list[VariantFile] | None = None


class SweepFile(_Strict):
    """The whole file."""

    out: str = "learners"
    history: str | None = None
    cluster: str | None = None
    concurrency: Positive | None = None
    defaults: JobSettings | None = None
    jobs: list[JobFile] = Field(min_length=1)


_HINTS = {
    "bool_type": "give true or false, unquoted",
    "string_type": "give it as text (in quotes if it looks like a number)",
    "int_type": "give a whole number",
    "float_type": "give a number",
    "list_type": "give a list",
    "model_type": "give a mapping of settings",
    "dict_type": "give a mapping",
}


def _place(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "the file"


def _model_at(loc: tuple[int | str, ...]) -> type[BaseModel]:
    """The model that holds the field at ``loc`` (for a did-you-mean)."""
    model: type[BaseModel] = SweepFile
    for part in loc:
        if not isinstance(part, str) or part not in model.model_fields:
            continue
        annotation = model.model_fields[part].annotation
        for candidate in (annotation, *typing.get_args(annotation)):
            inner = typing.get_args(candidate) or (candidate,)
            found = [t for t in inner if isinstance(t, type) and issubclass(t, BaseModel)]
            if found:
                model = found[0]
                break
    return model


def _unknown(loc: tuple[int | str, ...]) -> str:
    key = str(loc[-1])
    known = sorted(_model_at(loc[:-1]).model_fields)
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    guess = f"did you mean {close[0]!r}?" if close else f"allowed: {', '.join(known)}"
    if len(loc) == 1:
        return f"unknown key {key!r}: {guess}"
    return f"{_place(loc[:-1])}: unknown setting {key!r}: {guess}"


def _message(error: Any) -> str:
    loc = tuple(error["loc"])
    if error["type"] == "extra_forbidden":
        return _unknown(loc)
    if error["type"] == "missing":
        return f"{_place(loc)} is missing"
    if error["type"] == "too_short" and loc == ("jobs",):
        return "the sweep has no job: list at least one under 'jobs'"
    hint = _HINTS.get(error["type"], "")
    detail = error["msg"].removeprefix("Value error, ") + (f" ({hint})" if hint else "")
    return f"{_place(loc)}={error['input']!r} is invalid: {detail}"


def validate_sweep(raw: Any, where: str) -> SweepFile:
    """``raw`` (the parsed YAML) as a :class:`SweepFile`; InputError names ``where`` and each
    wrong field."""
    if not isinstance(raw, dict):
        raise InputError(f"{where} must hold a mapping with a 'jobs' list")
    try:
        return SweepFile.model_validate(raw)
    except ValidationError as exc:
        lines = [_message(error) for error in exc.errors()]
        text = lines[0] if len(lines) == 1 else "".join(f"\n  - {line}" for line in lines)
        raise InputError(f"{where}: {text}") from None
