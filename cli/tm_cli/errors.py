"""Errors of tmctl, each with the exit code a script can test.

CliError                       printed on stderr, then exit with `code`
├── code 1  FAILED             anything not listed below
├── code 3  UNAUTHORISED       no valid token or API key, or not an administrator
├── code 4  NOT_FOUND          no such user, task or tenant in the tenant
├── code 5  UNREACHABLE        the API did not answer (refused, timed out, DNS)
├── code 6  REFUSED            the API refused the input or it conflicts
├── code 7  SERVER_ERROR       the API failed or a server behind it is down
└── code 8  ABORTED            a confirmation was declined

Code 2 is a usage error (unknown option, missing argument), from Typer itself.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console

OK = 0
FAILED = 1
USAGE = 2
UNAUTHORISED = 3
NOT_FOUND = 4
UNREACHABLE = 5
REFUSED = 6
SERVER_ERROR = 7
ABORTED = 8

stderr = Console(stderr=True, highlight=False)


class CliError(Exception):
    """A failure the user should read; its exit code says which kind."""

    def __init__(self, message: str, *, code: int = FAILED) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = code


F = TypeVar("F", bound=Callable[..., Any])


def reported(command: F) -> F:
    """Run a command so that a CliError ends it with its message and code."""

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except CliError as exc:
            stderr.print(f"[bold red]error:[/] {exc.message}", soft_wrap=True)
            raise typer.Exit(code=exc.exit_code) from None

    return run  # type: ignore[return-value]
