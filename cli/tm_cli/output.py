"""What tmctl prints: rich tables for people, JSON for scripts.

Results go to stdout; progress, prompts and errors go to stderr, so that
`tmctl ... -o json | jq` always reads clean JSON.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable, Sequence
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

stdout = Console(highlight=False)
stderr = Console(stderr=True, highlight=False)


class Format(enum.StrEnum):
    TABLE = "table"
    JSON = "json"


OutputOption = Annotated[
    Format,
    typer.Option(
        "--output", "-o", help="table for people, json for scripts", show_default=True
    ),
]


def emit(data: Any, output: Format, table: Callable[[Any], Table]) -> None:
    if output is Format.JSON:
        typer.echo(json.dumps(data, indent=2, sort_keys=True))
    else:
        stdout.print(table(data))


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> Table:
    grid = Table(title=title, title_justify="left")
    for column in columns:
        grid.add_column(column)
    for row in rows:
        grid.add_row(*("" if cell is None else str(cell) for cell in row))

    return grid


def pairs(title: str, values: dict[str, Any]) -> Table:
    return table(title, ["field", "value"], list(values.items()))


def download_bar() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TimeElapsedColumn(),
        console=stderr,
        transient=True,
    )


def count_bar() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=stderr,
        transient=True,
    )
