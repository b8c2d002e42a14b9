"""The worker's log lines: JSON key-value events, recipients never in clear."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from tm_streams import logs
from tm_streams.settings import StreamsSettings


@pytest.fixture
def json_logs() -> Iterator[None]:
    """Logging as the worker sets it up, undone after the test."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    levels = {
        name: logging.getLogger(name).level
        for name in ("twilio", "python_http_client", "aiokafka")
    }
    try:
        yield
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
        root.handlers[:], level = saved
        root.setLevel(level)
        structlog.reset_defaults()


def configure() -> None:
    # NB: inside the test, so the handler writes to the stdout capsys reads.
    logs.configure(StreamsSettings(log_format="json", log_level="INFO"))


def lines(capsys: pytest.CaptureFixture[str]) -> list[dict]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


@pytest.mark.usefixtures("json_logs")
def test_our_events_are_json_lines_with_their_fields(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure()

    structlog.get_logger("tm_streams.test").info("delivery", task_id="t1", attempts=2)

    [line] = lines(capsys)

    assert line["event"] == "delivery"
    assert (line["task_id"], line["attempts"]) == ("t1", 2)
    assert line["level"] == "info"
    assert line["logger"] == "tm_streams.test"
    assert line["timestamp"].endswith("Z")


@pytest.mark.usefixtures("json_logs")
def test_library_records_render_the_same_with_their_extra_fields(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure()

    logging.getLogger("tm_domain.delivery").warning(
        "delivery outcome unknown", extra={"count": 3}
    )

    [line] = lines(capsys)

    assert (line["event"], line["count"], line["level"]) == (
        "delivery outcome unknown",
        3,
        "warning",
    )


@pytest.mark.usefixtures("json_logs")
def test_phone_numbers_and_addresses_are_masked_whoever_logs_them(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure()

    structlog.get_logger("x").warning("refused", detail="To +14155550100 is bad")
    logging.getLogger("aiokafka.x").error("mail to ada@example.com failed")

    out = lines(capsys)

    assert out[0]["detail"] == "To <phone> is bad"
    assert out[1]["event"] == "mail to <email> failed"


@pytest.mark.usefixtures("json_logs")
def test_sdk_loggers_that_print_payloads_stay_quiet(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure()

    logging.getLogger("python_http_client.client").info("PAYLOAD: ada@example.com")
    logging.getLogger("twilio.http_client").info("-- BEGIN Twilio API Request --")

    assert capsys.readouterr().out == ""
