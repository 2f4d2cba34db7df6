"""Options shared by the commands: one spelling, one help text and one check each.

Commands declare their parameters with these ``Annotated`` aliases. Choices come from the
library's own tables (presets, backbones, similarity measures), so a new preset or measure
appears in every command by itself. Option names say what they name (``--runs-dir``,
``--sweep-dir``, ``--chart``, ``--html``, ``--parquet``); the old ``--out`` keeps working as a
hidden alias (:data:`OutAlias`, :func:`either`). Everything here is cheap to import: it runs
on every ``hardstat`` call, ``--help`` included.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
import typer.core

from hardstat.analysis.measures import MEASURES
from hardstat.config import BACKBONES, PRESETS
from hardstat.errors import ConfigError

# -- commands whose help and errors read plainly ------------------------------------------------


class _Plain:
    """No type label on flags (typer shows ``<bool>``), and choice errors without pydantic's
    "Value error, " prefix."""

    def get_params(self, ctx: Any) -> list[Any]:
        params: list[Any] = super().get_params(ctx)  # type: ignore[misc]
        for p in params:
            if getattr(p, "is_flag", False) and p.metavar is None:
                p.metavar = ""
        return params

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)  # type: ignore[misc]
        except typer.BadParameter as e:
            e.message = e.message.removeprefix("Value error, ")
            raise


class Command(_Plain, typer.core.TyperCommand):
    """The class of every hardstat command (``app.command(..., cls=Command)``)."""


class Group(_Plain, typer.core.TyperGroup):
    """The class of hardstat and its command groups (``typer.Typer(cls=Group)``)."""


# -- choices from the library's tables ---------------------------------------------------------
Preset = StrEnum("Preset", {name: name for name in PRESETS})  # type: ignore[misc]
Backbone = StrEnum("Backbone", {name: name for name in BACKBONES})  # type: ignore[misc]
Measure = StrEnum("Measure", {name: name for name in MEASURES})  # type: ignore[misc]
DEFAULT_PRESET = Preset("tiny")
DEFAULT_MEASURE = Measure("wup")


class Format(StrEnum):
    """What an analysis (or ``eval``) prints on stdout."""

    table = "table"
    json = "json"


def preset_values(key: str) -> str:
    """Each preset's value of a config key, for help texts: ``tiny 3, demo 15, ...``."""
    values = []
    for name, conf in PRESETS.items():
        value: Any = conf.to_dict()
        for part in key.split("."):
            value = value[part]
        values.append(f"{name} {value}")
    return ", ".join(values)


def _preset_help() -> str:
    rows = [
        f"{name} ({c.data.dataset}, {c.model.backbone}, {c.optim.epochs} epochs)"
        for name, c in PRESETS.items()
    ]
    return (
        f"Starting configuration: {', '.join(rows)}. Default: {DEFAULT_PRESET.value}. "
        "How long each takes: see docs/timings.md."
    )


# -- arguments and output options ----------------------------------------------------------------
RunsArgument = Annotated[
    list[str],
    typer.Argument(
        metavar="RUN...",
        help="Run directories, sweep directories holding runs, or globs.",
        show_default=False,
    ),
]
FormatOption = Annotated[
    Format, typer.Option("--format", "-f", help="Print the result as a table (text) or JSON.")
]
ChartOption = Annotated[
    Path | None,
    typer.Option(
        "--chart",
        metavar="FILE",
        help="Also write the chart to FILE: .html, .png, .svg or .json.",
        show_default=False,
    ),
]
OutAlias = Annotated[Path | None, typer.Option("--out", hidden=True, show_default=False)]
"""The old name of an output option; pass both to :func:`either`."""
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress on stderr.")]


def either(new: Path | None, old: Path | None, name: str) -> Path | None:
    """The value of an output option given by its name or by its old name, ``--out``."""
    if new is not None and old is not None and new != old:
        raise typer.BadParameter(f"give {name} once (--out is its old name)", param_hint=name)
    return new if new is not None else old


def chart_path(chart: Path | None, out: Path | None) -> Path | None:
    """``--chart`` (or ``--out``), checked before any work: exit 1 for a suffix no chart
    format has."""
    from hardstat.charts import check_chart_path

    path = either(chart, out, "--chart")
    if path is not None:
        check_chart_path(path)
    return path


# -- the configuration block of train and sweep ------------------------------------------------
CONFIG = "Configuration"
PresetOption = Annotated[
    Preset | None,
    typer.Option(help=_preset_help(), show_default=False, rich_help_panel=CONFIG),
]
ConfigOption = Annotated[
    Path | None,
    typer.Option(
        metavar="FILE",
        help="TOML or JSON file with sections data, model, optim, log, eval and top-level keys "
        "(band, seed, device...), applied over the preset.",
        rich_help_panel=CONFIG,
    ),
]
DatasetOption = Annotated[
    str | None,
    typer.Option(
        metavar="SPEC",
        help="Dataset: synthetic[:N], demo, npz:DIR, cifar10[:ROOT], cifar100[:ROOT], "
        f"folder:DIR. Default: the preset's ({preset_values('data.dataset')}).",
        show_default=False,
        rich_help_panel=CONFIG,
    ),
]
SetOption = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        metavar="KEY=VALUE",
        help="Override any config key by its dotted path, e.g. --set optim.lr=0.1 --set "
        "model.width=64 (repeatable; values parsed as JSON when possible, else strings; "
        "applied after the other options).",
        show_default=False,
        rich_help_panel=CONFIG,
    ),
]


def parse_override(text: str) -> tuple[str, Any]:
    """One ``--set KEY=VALUE``: the dotted key and the value, parsed as JSON when it parses
    (numbers, true/false, null, "quoted strings"), else kept as the string."""
    import json

    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise typer.BadParameter(
            f"expected KEY=VALUE such as optim.lr=0.1, got {text!r}", param_hint="'--set'"
        )
    try:
        value: Any = json.loads(raw)
    except ValueError:
        value = raw
    return key, value


def overrides(flags: Mapping[str, tuple[str, Any]], sets: list[str] | None) -> dict[str, Any]:
    """Config overrides from typed flags (``{key: (flag, value)}``, None: not given) and then
    ``--set`` (which wins)."""
    given = {key: value for key, (_, value) in flags.items() if value is not None}
    return given | dict(parse_override(text) for text in sets or [])


@contextmanager
def in_flag_words(flags: Mapping[str, tuple[str, Any]], sets: list[str] | None) -> Iterator[None]:
    """Config errors name the flag the user typed (``--epochs must be >= 1``), not its config
    key (``optim.epochs``); keys set with ``--set``, a config file or a preset keep their name."""
    from_set = {parse_override(text)[0] for text in sets or []}
    words = {
        key: flag
        for key, (flag, value) in flags.items()
        if value is not None and key not in from_set
    }
    try:
        yield
    except ConfigError as e:
        message = str(e)
        for key, flag in words.items():
            if "." in key:
                message = re.sub(rf"(?<![\w.-]){re.escape(key)}(?![\w.])", flag, message)
            elif message.startswith(f"{key} "):
                message = flag + message[len(key) :]
        if message == str(e):
            raise
        raise e.reworded(message) from None
