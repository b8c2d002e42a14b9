"""Kafka TLS and SASL, and the Redis password: from the settings to the clients.

What these show is the mapping: each setting lands in the option of aiokafka,
Faust or redis-py that carries it, and the TLS context holds the files named.
Whether a TLS or SASL broker then accepts the connection needs such a broker,
which the local servers do not run.
"""

from __future__ import annotations

import datetime
import logging
import os
import ssl
from pathlib import Path
from typing import Any

import certifi
import pytest
import redis.asyncio as redis
import structlog
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth
from pydantic import ValidationError

from tm_adapters import connections
from tm_adapters.outbox import KafkaPublisher
from tm_adapters.settings import ConnectionSettings
from tm_operator import main as operator_main
from tm_streams import brokers
from tm_streams.app import create_app
from tm_streams.settings import StreamsSettings

CA_FILE = Path(certifi.where())


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("TM_"):
            monkeypatch.delenv(name)


def write_client_certificate(folder: Path, name: str = "client") -> tuple[Path, Path]:
    """A self-signed certificate and its key, as PEM files in `folder`."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_file = folder / f"{name}.crt"
    key_file = folder / f"{name}.key"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )

    return cert_file, key_file


def sasl_ssl_settings() -> StreamsSettings:
    return StreamsSettings(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-256",
        kafka_sasl_username="tm-app",
        kafka_sasl_password="kafka-password-1",
        kafka_ssl_ca_file=CA_FILE,
    )


# ------------------------------------------------------------------ settings


def test_kafka_security_is_read_from_its_tm_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TM_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("TM_KAFKA_SASL_MECHANISM", "PLAIN")
    monkeypatch.setenv("TM_KAFKA_SASL_USERNAME", "tm-app")
    monkeypatch.setenv("TM_KAFKA_SASL_PASSWORD", "kafka-password-1")
    monkeypatch.setenv("TM_KAFKA_SSL_CA_FILE", "/etc/tls/kafka/ca.crt")
    monkeypatch.setenv("TM_REDIS_PASSWORD", "redis-password-1")

    settings = ConnectionSettings()

    assert settings.kafka_security_protocol == "SASL_SSL"
    assert settings.kafka_sasl_mechanism == "PLAIN"
    assert settings.kafka_sasl_username == "tm-app"
    assert settings.kafka_sasl_password is not None
    assert settings.kafka_sasl_password.get_secret_value() == "kafka-password-1"
    assert settings.kafka_ssl_ca_file == Path("/etc/tls/kafka/ca.crt")
    assert "kafka-password-1" not in repr(settings)
    assert "redis-password-1" not in repr(settings)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"kafka_security_protocol": "SASL_SSL"}, "needs TM_KAFKA_SASL_USERNAME"),
        (
            {"kafka_security_protocol": "SASL_PLAINTEXT", "kafka_sasl_username": "u"},
            "needs TM_KAFKA_SASL_USERNAME and TM_KAFKA_SASL_PASSWORD",
        ),
        ({"kafka_ssl_ca_file": CA_FILE}, "does not use TLS"),
        (
            {"kafka_security_protocol": "SSL", "kafka_ssl_cert_file": CA_FILE},
            "go together",
        ),
        (
            {
                "environment": "production",
                "kafka_security_protocol": "SASL_PLAINTEXT",
                "kafka_sasl_mechanism": "PLAIN",
                "kafka_sasl_username": "u",
                "kafka_sasl_password": "p",
            },
            "sends the Kafka password in clear",
        ),
        ({"kafka_security_protocol": "TLS"}, "PLAINTEXT"),
    ],
)
def test_inconsistent_kafka_security_is_refused_saying_what_to_fix(
    overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError) as refused:
        ConnectionSettings(**overrides)

    assert message in str(refused.value)


# --------------------------------------------------------------- aiokafka


def test_plaintext_gives_the_clients_no_tls_and_no_sasl() -> None:
    options = connections.kafka_options(ConnectionSettings())

    assert options == {"security_protocol": "PLAINTEXT", "ssl_context": None}


def test_sasl_ssl_gives_credentials_and_a_verifying_tls_context() -> None:
    options = connections.kafka_options(sasl_ssl_settings())

    context = options.pop("ssl_context")
    assert options == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-256",
        "sasl_plain_username": "tm-app",
        "sasl_plain_password": "kafka-password-1",
    }
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname is True
    assert context.cert_store_stats()["x509_ca"] > 0


def test_ssl_loads_the_client_certificate_and_refuses_a_key_of_another(
    tmp_path: Path,
) -> None:
    cert_file, key_file = write_client_certificate(tmp_path)
    _, other_key = write_client_certificate(tmp_path, "other")
    settings = ConnectionSettings(
        kafka_security_protocol="SSL",
        kafka_ssl_cert_file=cert_file,
        kafka_ssl_key_file=key_file,
    )
    mismatched = settings.model_copy(update={"kafka_ssl_key_file": other_key})

    options = connections.kafka_options(settings)

    assert options["security_protocol"] == "SSL"
    assert isinstance(options["ssl_context"], ssl.SSLContext)
    assert "sasl_mechanism" not in options
    with pytest.raises(ssl.SSLError):
        connections.kafka_options(mismatched)


async def test_the_outbox_producer_is_built_with_the_kafka_security() -> None:
    publisher = KafkaPublisher(sasl_ssl_settings())

    producer = publisher.new_producer()

    try:
        client = producer.client
        assert client._security_protocol == "SASL_SSL"
        assert client._sasl_mechanism == "SCRAM-SHA-256"
        assert client._sasl_plain_username == "tm-app"
        assert client._sasl_plain_password == "kafka-password-1"
        assert isinstance(client._ssl_context, ssl.SSLContext)
    finally:
        await producer.stop()


# ------------------------------------------------------------------ Faust


def test_the_worker_hands_faust_the_same_sasl_and_tls_options() -> None:
    settings = sasl_ssl_settings()

    app = create_app(settings)

    auth = dict(credentials_to_aiokafka_auth(app.conf.broker_credentials))
    assert isinstance(auth.pop("ssl_context"), ssl.SSLContext)
    assert auth == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-256",
        "sasl_plain_username": "tm-app",
        "sasl_plain_password": "kafka-password-1",
    }


def test_faust_gets_sasl_without_tls_for_sasl_plaintext() -> None:
    settings = StreamsSettings(
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_username="tm-app",
        kafka_sasl_password="kafka-password-1",
    )

    auth = credentials_to_aiokafka_auth(brokers.credentials(settings))

    assert auth["security_protocol"] == "SASL_PLAINTEXT"
    assert auth["sasl_mechanism"] == "SCRAM-SHA-512"
    assert auth["ssl_context"] is None


def test_faust_gets_tls_only_for_ssl_and_nothing_for_plaintext() -> None:
    tls = StreamsSettings(kafka_security_protocol="SSL", kafka_ssl_ca_file=CA_FILE)

    tls_auth = credentials_to_aiokafka_auth(brokers.credentials(tls))
    plain_auth = credentials_to_aiokafka_auth(brokers.credentials(StreamsSettings()))

    assert tls_auth["security_protocol"] == "SSL"
    assert isinstance(tls_auth["ssl_context"], ssl.SSLContext)
    assert plain_auth == {"security_protocol": "PLAINTEXT"}


# ------------------------------------------------------------------ Redis


def redis_connection_options(settings: ConnectionSettings) -> dict[str, Any]:
    client = redis.Redis.from_url(
        settings.redis_url, password=connections.redis_password(settings)
    )
    options = dict(client.connection_pool.connection_kwargs)
    options["connection_class"] = client.connection_pool.connection_class

    return options


def test_the_redis_password_setting_is_used_when_the_url_has_none() -> None:
    settings = ConnectionSettings(
        redis_url="rediss://redis.internal:6380/2?ssl_ca_certs=/etc/tls/redis/ca.crt",
        redis_password="redis-password-1",
    )

    options = redis_connection_options(settings)

    assert options["password"] == "redis-password-1"
    assert options["connection_class"] is redis.SSLConnection
    assert options["ssl_ca_certs"] == "/etc/tls/redis/ca.crt"
    assert options["db"] == 2


def test_a_password_in_the_redis_url_wins_over_the_setting() -> None:
    settings = ConnectionSettings(
        redis_url="redis://:from-url@redis.internal:6379/0",
        redis_password="from-setting",
    )

    options = redis_connection_options(settings)

    assert options["password"] == "from-url"
    assert options["connection_class"] is redis.Connection


# --------------------------------------------------------------- operator


def test_the_operator_serves_kopf_liveness_at_the_configured_endpoint(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[dict[str, Any]] = []
    monkeypatch.setenv("TM_OPERATOR_LIVENESS_ENDPOINT", "http://0.0.0.0:8080/healthz")
    monkeypatch.setattr(operator_main.kopf, "run", lambda **kw: calls.append(kw))
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)

    try:
        operator_main.main()
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
        structlog.reset_defaults()

    [options] = calls
    assert options["liveness_endpoint"] == "http://0.0.0.0:8080/healthz"
    assert options["standalone"] is True


def test_a_liveness_endpoint_that_is_not_an_http_url_is_refused(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TM_OPERATOR_LIVENESS_ENDPOINT", "0.0.0.0:8080")

    with pytest.raises(SystemExit) as stopped:
        operator_main.main()

    assert stopped.value.code == 2
    assert "TM_OPERATOR_LIVENESS_ENDPOINT" in capsys.readouterr().err
