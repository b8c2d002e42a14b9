"""tmctl: the administrators' command line for a time-manager deployment.

It speaks only HTTP to the service's API, as any client would, so it imports
none of the service's packages and needs no database credentials. Each
command group lives in its own module under `tm_cli.commands` and is joined
to the application in `tm_cli.main`.
"""
