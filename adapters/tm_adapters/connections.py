"""How the clients reach the servers: Kafka's TLS and SASL, Redis' password.

The settings say what the servers require; this module turns them into the
options of aiokafka and redis-py, so the API's outbox producer and the worker
connect the same way. MongoDB needs nothing here: its TLS and credentials are
options of its URI.
"""

from __future__ import annotations

import ssl
from typing import Any

from aiokafka.helpers import create_ssl_context

from tm_adapters.settings import ConnectionSettings


def kafka_ssl_context(settings: ConnectionSettings) -> ssl.SSLContext | None:
    """The TLS context of the Kafka clients, or None when the protocol has no TLS.

    It checks the brokers' certificates and host names; the CA file, when
    set, replaces the system's trust store.
    """
    if not settings.kafka_security_protocol.endswith("SSL"):
        return None

    context: ssl.SSLContext = create_ssl_context(
        cafile=settings.kafka_ssl_ca_file,
        certfile=settings.kafka_ssl_cert_file,
        keyfile=settings.kafka_ssl_key_file,
    )

    return context


def kafka_options(settings: ConnectionSettings) -> dict[str, Any]:
    """The keyword arguments of an aiokafka client for the brokers' security."""
    options: dict[str, Any] = {
        "security_protocol": settings.kafka_security_protocol,
        "ssl_context": kafka_ssl_context(settings),
    }
    if settings.kafka_security_protocol.startswith("SASL_"):
        options |= {
            "sasl_mechanism": settings.kafka_sasl_mechanism,
            "sasl_plain_username": settings.kafka_sasl_username,
            "sasl_plain_password": kafka_sasl_password(settings),
        }

    return options


def kafka_sasl_password(settings: ConnectionSettings) -> str | None:
    """TM_KAFKA_SASL_PASSWORD in clear, for the Kafka clients."""
    if settings.kafka_sasl_password is None:
        return None

    return settings.kafka_sasl_password.get_secret_value()


def redis_password(settings: ConnectionSettings) -> str | None:
    """TM_REDIS_PASSWORD in clear, for redis-py; a password in the URL wins."""
    if settings.redis_password is None:
        return None

    return settings.redis_password.get_secret_value()
