"""The worker's Kafka credentials, in the form Faust takes them.

Faust hands its credentials to every client it makes (consumer, producer,
admin); the TLS context and SASL options are the ones the API's producer
gets from `tm_adapters.connections`, so both connect alike.
"""

from __future__ import annotations

import faust
from faust.types.auth import CredentialsT

from tm_adapters import connections
from tm_streams.settings import StreamsSettings


def credentials(settings: StreamsSettings) -> CredentialsT | None:
    """Faust's broker credentials for the settings; None for PLAINTEXT."""
    protocol = settings.kafka_security_protocol
    context = connections.kafka_ssl_context(settings)

    if protocol.startswith("SASL_"):
        # NB: Faust derives SASL_SSL from a TLS context being given, and
        # SASL_PLAINTEXT from none, which is what the protocol says.
        return faust.SASLCredentials(
            username=settings.kafka_sasl_username,
            password=connections.kafka_sasl_password(settings),
            ssl_context=context,
            mechanism=settings.kafka_sasl_mechanism,
        )
    if context is not None:
        return faust.SSLCredentials(context)

    return None
