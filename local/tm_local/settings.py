"""Settings of the single-process mode, read from `TM_` environment variables.

The service's settings and the delivery settings of the reminder worker,
with the same names and defaults, plus where the data lives. The MongoDB,
Kafka and Redis settings are read but not used.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field

from tm_adapters.settings import DeliverySettings
from tm_service.settings import ServiceSettings

DATABASE_FILE = "time-manager.sqlite3"
OUTBOX_FILE = "outbox.jsonl"


def default_data_dir() -> Path:
    """`time-manager` in the user's data directory: `$XDG_DATA_HOME`, or
    `~/.local/share` where it is unset, as the XDG base directories say."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")

    return Path(base) / "time-manager"


class LocalSettings(ServiceSettings, DeliverySettings):
    data_dir: Path = Field(default_factory=default_data_dir)
    """TM_DATA_DIR: the folder of the database and of the local outbox,
    created if missing. Default: `$XDG_DATA_HOME/time-manager`, or
    `~/.local/share/time-manager`."""

    @property
    def database_path(self) -> Path:
        return self.data_dir / DATABASE_FILE

    @property
    def outbox_path(self) -> Path:
        """The JSON-lines file of reminders delivered on this machine."""
        return self.data_dir / OUTBOX_FILE
