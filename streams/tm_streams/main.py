"""`tm-streams`: run the reminder worker until SIGTERM or Ctrl-C.

Settings come from `TM_` environment variables (see `tm_streams.settings`);
the command takes no arguments.
"""

from __future__ import annotations

import faust

from tm_streams import logs
from tm_streams.app import create_app
from tm_streams.settings import StreamsSettings


def main() -> None:
    settings = StreamsSettings()
    logs.configure(settings)
    app = create_app(settings)

    # NB: our logging stays as configured above (override_logging), and no
    # banner or redirected print lands among the JSON lines on stdout.
    worker = faust.Worker(
        app,
        loglevel=settings.log_level,
        quiet=True,
        redirect_stdouts=False,
        override_logging=False,
    )
    # NB: without a terminal spinner, whose escape codes would land on stdout,
    # the worker logs "Ready" instead.
    worker.spinner = None
    worker.execute_from_commandline()


if __name__ == "__main__":
    main()
