"""The reminder worker: sends each reminder at its time, once per channel.

A Faust worker reads task events from Kafka and hands them to the domain's
`ReminderEngine`, which claims, sends and settles deliveries through the
MongoDB reminder store and the Twilio and SendGrid senders of `tm_adapters`.
The engine's periodic sweep of MongoDB, not the event stream, is the source of
truth, so a lost or replayed event never loses or repeats a reminder.

This package wires those parts and owns the worker's settings and logging. It
must not know the rules of a delivery (they are the domain's), how a document
is queried or updated (the store's), how a provider is called (the senders'),
nor anything of the HTTP API in `tm_service`.
"""
