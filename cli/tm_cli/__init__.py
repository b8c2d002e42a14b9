"""tmctl: the administrators' command line for a time-manager deployment.

It speaks only HTTP to the service's API, as any client would, so it imports
none of the service's packages and needs no database credentials. The one
exception is `tmctl dev`, which runs the service itself in its own process
(`tm_local`), and imports it only when it runs. Each
command group lives in its own module under `tm_cli.commands` and is joined
to the application in `tm_cli.main`.
"""
