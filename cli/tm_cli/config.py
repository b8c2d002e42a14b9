"""Contexts: named API addresses and tokens, kept in a small JSON file.

The file is `$TMCTL_CONFIG`, or `~/.config/tmctl/config.json`:

    {"current": "prod",
     "contexts": {"prod": {"apiUrl": "https://tm.example.com", "token": "..."}}}

It may hold tokens, so it is written readable by its owner only. Options and
environment variables (`--api-url`/`TM_API_URL`, `--token`/`TM_TOKEN`) win
over the context's values.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tm_cli.errors import CliError

DEFAULT_API_URL = "http://127.0.0.1:5500"


def default_path() -> Path:
    return Path.home() / ".config" / "tmctl" / "config.json"


@dataclass
class Config:
    path: Path
    current: str | None = None
    contexts: dict[str, dict[str, str]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> Config:
        if not path.exists():
            return cls(path)
        try:
            raw: Any = json.loads(path.read_text())
            contexts = {
                str(name): {str(k): str(v) for k, v in values.items()}
                for name, values in (raw.get("contexts") or {}).items()
            }
            current = raw.get("current")
        except (OSError, ValueError, AttributeError) as exc:
            raise CliError(f"cannot read {path}: {exc}") from None

        return cls(path, None if current is None else str(current), contexts)

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        body = {"current": self.current, "contexts": self.contexts}
        # Created with owner-only permissions before any token is written.
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(body, out, indent=2)
            out.write("\n")

    def context(self, name: str | None) -> dict[str, str]:
        """The named context, or the current one; empty when there is none."""
        wanted = name or self.current
        if wanted is None:
            return {}
        if wanted not in self.contexts:
            raise CliError(f"no context named {wanted!r} in {self.path}")

        return self.contexts[wanted]
