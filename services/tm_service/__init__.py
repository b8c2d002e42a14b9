"""tm-service: the HTTP API through which visitors plan their tasks and reminders.

It authenticates each request from its bearer token, validates the input,
runs the task operations of `tm_service.tasks` over a `TaskStore`, and answers
in the envelopes of the design document. Each write leaves its event in the
task's outbox, and the outbox relay running beside the API publishes it.

It must not know how a reminder is sent, which worker sends it, or how a store
keeps its data: the domain decides, the adapters store and publish.
"""
