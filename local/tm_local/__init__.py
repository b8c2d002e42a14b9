"""The single-process mode: the time service and its reminders on one machine.

`tmctl dev` runs the API of `tm_service` and the delivery engine of
`tm_domain` in one process, over the SQLite stores of `tm_adapters`, with no
server to start first. The rules are not written again here: the routes,
validation and views are `tm_service.app.create_app` with stores injected,
and reminders go through the same `ReminderEngine` as in `tm-streams`, fed
by the same outbox relay. What this package adds is the wiring, a sender
that delivers to this machine, and the settings of the mode.

It may import the domain, the adapters and the service, never `tm_streams`
(Faust and Kafka have no place in it) or the operator.
"""
