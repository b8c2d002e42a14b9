"""Twilio and SendGrid as the official SDKs see them, served from loopback.

One HTTP server answers both providers' send calls the way the real APIs do
(status codes, headers and JSON shapes), checks their credentials, and records
every request it receives with the moment it arrived, so a test can tell what
was sent, how often, and how late. A small control API scripts failures:

    GET  /_control/messages   every request received so far, oldest first
    POST /_control/reset      forget the requests and the script
    POST /_control/script     {"status": 503, "count": 2, "to": "+1...",
                               "provider": "twilio", "delayMs": 0}
                              or a list of such rules; the next `count`
                              matching requests answer `status` (after
                              `delayMs`), or are only delayed when no status

Run it on its own with `python tests/support/fake_providers.py --port 8999`,
or start it on a background thread from a test with `FakeProviders().start()`.
It binds 127.0.0.1 and nothing else.
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass
from email.utils import formatdate
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

TWILIO_ACCOUNT_SID = "AC" + "0" * 31 + "1"
TWILIO_AUTH_TOKEN = "fake-twilio-token"
SENDGRID_API_KEY = "SG.fake-sendgrid-key"

_TWILIO_MESSAGES = re.compile(r"^/2010-04-01/Accounts/(?P<sid>[^/]+)/Messages\.json$")
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@dataclass
class Rule:
    """What the next `count` matching requests answer."""

    count: int
    status: int | None = None
    delay_ms: int = 0
    to: str | None = None
    provider: str | None = None

    def matches(self, provider: str, to: str | None) -> bool:
        return (
            self.count > 0
            and (self.provider is None or self.provider == provider)
            and (self.to is None or self.to == to)
        )

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Rule:
        return cls(
            count=int(data.get("count", 1)),
            status=None if data.get("status") is None else int(data["status"]),
            delay_ms=int(data.get("delayMs", 0)),
            to=data.get("to"),
            provider=data.get("provider"),
        )


class Recorder:
    """The requests received and the failures scripted, shared by all threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._messages: list[dict[str, Any]] = []
        self._rules: list[Rule] = []

    def record(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self._messages.append(entry)

    def messages(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(m) for m in self._messages]

    def reset(self) -> None:
        with self._lock:
            self._messages.clear()
            self._rules.clear()

    def script(self, rules: list[Rule]) -> None:
        with self._lock:
            self._rules.extend(rules)

    def next_rule(self, provider: str, to: str | None) -> Rule | None:
        """Take one turn of the first rule that matches, if any."""
        with self._lock:
            for rule in self._rules:
                if rule.matches(provider, to):
                    rule.count -= 1
                    return Rule(1, rule.status, rule.delay_ms, rule.to, rule.provider)
            return None


class Handler(BaseHTTPRequestHandler):
    # The SDKs keep connections open, so every answer carries its length.
    protocol_version = "HTTP/1.1"
    server: ProviderServer

    def log_message(self, format: str, *args: Any) -> None:
        # Quiet: the recorder is the log a test reads.
        return None

    def do_GET(self) -> None:
        if self.path == "/_control/messages":
            self._json(HTTPStatus.OK, self.server.recorder.messages())
        elif self.path == "/_control/health":
            self._json(HTTPStatus.OK, {"ok": True})
        else:
            self._json(HTTPStatus.NOT_FOUND, {"error": "not found"})

    def do_POST(self) -> None:
        received_at = time.time()
        body = self._body()

        if self.path == "/_control/reset":
            self.server.recorder.reset()
            self._json(HTTPStatus.OK, {"ok": True})
        elif self.path == "/_control/script":
            data = json.loads(body or b"{}")
            items = data if isinstance(data, list) else [data]
            self.server.recorder.script([Rule.from_json(item) for item in items])
            self._json(HTTPStatus.OK, {"ok": True})
        elif self.path == "/v3/mail/send":
            self._sendgrid(body, received_at)
        elif match := _TWILIO_MESSAGES.match(self.path):
            self._twilio(match["sid"], body, received_at)
        else:
            self._json(HTTPStatus.NOT_FOUND, {"error": "not found"})

    def _twilio(self, account_sid: str, body: bytes, received_at: float) -> None:
        form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        to = form.get("To")
        entry = {
            "provider": "twilio",
            "channel": "sms",
            "to": to,
            "from": form.get("From"),
            "subject": None,
            "body": form.get("Body"),
            "receivedAt": received_at,
        }

        # Authentication first, as Twilio does, then the script, then the input.
        expected = (self.server.twilio_sid, self.server.twilio_token)
        if account_sid != self.server.twilio_sid or self._basic() != expected:
            self._twilio_error(entry, HTTPStatus.UNAUTHORIZED, 20003, "Authenticate")
            return
        rule = self.server.recorder.next_rule("twilio", to)
        if rule is not None:
            time.sleep(rule.delay_ms / 1000)
            if rule.status is not None and rule.status >= 300:
                self._twilio_error(entry, rule.status, 20500, "Scripted failure")
                return
        if not to or not _E164.match(to):
            self._twilio_error(
                entry,
                HTTPStatus.BAD_REQUEST,
                21211,
                f"The 'To' number {to} is not a valid phone number.",
            )
            return
        if not form.get("Body") or not form.get("From"):
            self._twilio_error(
                entry, HTTPStatus.BAD_REQUEST, 21602, "Message body is required."
            )
            return

        sid = "SM" + secrets.token_hex(16)
        now = formatdate(usegmt=True)
        uri = f"/2010-04-01/Accounts/{account_sid}/Messages/{sid}.json"
        self._record(entry, HTTPStatus.CREATED, sid)
        self._json(
            HTTPStatus.CREATED,
            {
                "account_sid": account_sid,
                "api_version": "2010-04-01",
                "body": form["Body"],
                "date_created": now,
                "date_sent": None,
                "date_updated": now,
                "direction": "outbound-api",
                "error_code": None,
                "error_message": None,
                "from": form["From"],
                "messaging_service_sid": None,
                "num_media": "0",
                "num_segments": "1",
                "price": None,
                "price_unit": "USD",
                "sid": sid,
                "status": "queued",
                "subresource_uris": {"media": uri.replace(".json", "/Media.json")},
                "to": to,
                "uri": uri,
            },
        )

    def _sendgrid(self, body: bytes, received_at: float) -> None:
        try:
            mail = json.loads(body)
        except ValueError:
            mail = {}
        personalizations = mail.get("personalizations") or [{}]
        recipients = personalizations[0].get("to") or [{}]
        to = recipients[0].get("email")
        contents = mail.get("content") or [{}]
        entry = {
            "provider": "sendgrid",
            "channel": "email",
            "to": to,
            "from": (mail.get("from") or {}).get("email"),
            "subject": mail.get("subject") or personalizations[0].get("subject"),
            "body": contents[0].get("value"),
            "receivedAt": received_at,
        }

        if self.headers.get("Authorization") != f"Bearer {self.server.sendgrid_key}":
            self._sendgrid_error(
                entry,
                HTTPStatus.UNAUTHORIZED,
                "The provided authorization grant is invalid, expired, or revoked",
                None,
            )
            return
        rule = self.server.recorder.next_rule("sendgrid", to)
        if rule is not None:
            time.sleep(rule.delay_ms / 1000)
            if rule.status is not None and rule.status >= 300:
                self._sendgrid_error(entry, rule.status, "Scripted failure", None)
                return
        if not to or not _EMAIL.match(to):
            self._sendgrid_error(
                entry,
                HTTPStatus.BAD_REQUEST,
                "Does not contain a valid address.",
                "personalizations.0.to.0.email",
            )
            return
        if not entry["from"] or not entry["body"] or not entry["subject"]:
            self._sendgrid_error(
                entry, HTTPStatus.BAD_REQUEST, "Missing required fields.", None
            )
            return

        message_id = secrets.token_urlsafe(16)
        self._record(entry, HTTPStatus.ACCEPTED, message_id)
        self._reply(HTTPStatus.ACCEPTED, b"", {"X-Message-Id": message_id})

    def _twilio_error(
        self, entry: dict[str, Any], status: int, code: int, message: str
    ) -> None:
        self._record(entry, status, None)
        self._json(
            status,
            {
                "code": code,
                "message": message,
                "more_info": f"https://www.twilio.com/docs/errors/{code}",
                "status": status,
            },
        )

    def _sendgrid_error(
        self, entry: dict[str, Any], status: int, message: str, field: str | None
    ) -> None:
        self._record(entry, status, None)
        self._json(
            status, {"errors": [{"message": message, "field": field, "help": None}]}
        )

    def _record(
        self, entry: dict[str, Any], status: int, message_id: str | None
    ) -> None:
        self.server.recorder.record({**entry, "status": int(status), "id": message_id})

    def _basic(self) -> tuple[str, str] | None:
        header = self.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return None
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        return user, password

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _json(self, status: int, payload: Any) -> None:
        self._reply(
            status, json.dumps(payload).encode(), {"Content-Type": "application/json"}
        )

    def _reply(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class ProviderServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        port: int,
        *,
        twilio_sid: str,
        twilio_token: str,
        sendgrid_key: str,
    ) -> None:
        super().__init__(("127.0.0.1", port), Handler)
        self.recorder = Recorder()
        self.twilio_sid = twilio_sid
        self.twilio_token = twilio_token
        self.sendgrid_key = sendgrid_key


class FakeProviders:
    """The fake providers on a background thread, for use inside a test."""

    def __init__(
        self,
        port: int = 0,
        *,
        twilio_sid: str = TWILIO_ACCOUNT_SID,
        twilio_token: str = TWILIO_AUTH_TOKEN,
        sendgrid_key: str = SENDGRID_API_KEY,
    ) -> None:
        self.server = ProviderServer(
            port,
            twilio_sid=twilio_sid,
            twilio_token=twilio_token,
            sendgrid_key=sendgrid_key,
        )
        self._thread = threading.Thread(
            target=self.server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fake-providers",
            daemon=True,
        )

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeProviders:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeProviders:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def messages(self, *, accepted_only: bool = False) -> list[dict[str, Any]]:
        found = self.server.recorder.messages()
        if accepted_only:
            return [m for m in found if m["status"] < 300]
        return found

    def script(
        self,
        *,
        status: int | None = None,
        count: int = 1,
        delay_ms: int = 0,
        to: str | None = None,
        provider: str | None = None,
    ) -> None:
        self.server.recorder.script(
            [Rule(count, status, delay_ms, to=to, provider=provider)]
        )

    def reset(self) -> None:
        self.server.recorder.reset()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8999)
    parser.add_argument("--twilio-sid", default=TWILIO_ACCOUNT_SID)
    parser.add_argument("--twilio-token", default=TWILIO_AUTH_TOKEN)
    parser.add_argument("--sendgrid-key", default=SENDGRID_API_KEY)
    args = parser.parse_args()

    server = ProviderServer(
        args.port,
        twilio_sid=args.twilio_sid,
        twilio_token=args.twilio_token,
        sendgrid_key=args.sendgrid_key,
    )
    print(f"fake providers on http://127.0.0.1:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopped", flush=True)
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
