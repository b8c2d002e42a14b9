"""The options every command shares, resolved once per run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import typer

from tm_cli import config
from tm_cli.api import Api, Target


@dataclass
class Session:
    config_path: Path
    context: str | None
    api_url: str | None
    token: str | None
    timeout_s: float

    def target(self) -> Target:
        """Options and environment first, then the context, then the default."""
        chosen = config.Config.load(self.config_path).context(self.context)

        return Target(
            api_url=self.api_url or chosen.get("apiUrl") or config.DEFAULT_API_URL,
            token=self.token or chosen.get("token"),
            timeout_s=self.timeout_s,
        )


def of(ctx: typer.Context) -> Session:
    session: Session = ctx.find_root().obj
    return session


def api(ctx: typer.Context) -> Api:
    """The API client of this command, closed when the command ends."""
    client = Api(of(ctx).target())
    # NB: the root context, which is closed however the command ends.
    ctx.find_root().call_on_close(client.close)

    return client
