"""The API as tmctl calls it: envelopes unwrapped, failures as exit codes."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from tm_cli import errors
from tm_cli.errors import CliError

ADMIN = "/api/v1/admin"

# HTTP status to the exit code that says how a script should react.
_EXIT_CODES = {
    400: errors.REFUSED,
    401: errors.UNAUTHORISED,
    403: errors.UNAUTHORISED,
    404: errors.NOT_FOUND,
    409: errors.REFUSED,
    422: errors.REFUSED,
}


@dataclass(frozen=True)
class Target:
    """Where the API is and how to prove who we are."""

    api_url: str
    token: str | None
    timeout_s: float = 30.0


def _failure(response: httpx.Response) -> CliError:
    try:
        error = response.json()["error"]
        message = f"{error['message']} ({error['code']}, HTTP {response.status_code})"
    except (ValueError, KeyError, TypeError):
        message = f"HTTP {response.status_code} from {response.request.url}"
    if response.status_code >= 500:
        code = errors.SERVER_ERROR
    else:
        code = _EXIT_CODES.get(response.status_code, errors.FAILED)

    return CliError(message, code=code)


class Api:
    def __init__(self, target: Target) -> None:
        self.target = target
        headers = {"User-Agent": "tmctl"}
        if target.token:
            headers["Authorization"] = f"Bearer {target.token}"
        self.http = httpx.Client(
            base_url=target.api_url, headers=headers, timeout=target.timeout_s
        )

    def close(self) -> None:
        self.http.close()

    @contextlib.contextmanager
    def _reaching(self) -> Iterator[None]:
        try:
            yield
        except (httpx.TransportError, httpx.InvalidURL) as exc:
            reason = str(exc) or type(exc).__name__
            raise CliError(
                f"cannot reach the API at {self.target.api_url}: {reason}",
                code=errors.UNREACHABLE,
            ) from None

    def call(self, method: str, path: str, **params: Any) -> Any:
        """The `data` of a successful answer; raises CliError otherwise."""
        query = {k: v for k, v in params.items() if v is not None}
        with self._reaching():
            response = self.http.request(method, path, params=query)
        if response.status_code >= 300:
            raise _failure(response)

        return response.json()["data"]

    def download(
        self, path: str, *, progress: Callable[[int, int | None], None]
    ) -> Any:
        """Like GET, reporting (bytes so far, bytes in all) as the body arrives."""
        chunks: list[bytes] = []
        with self._reaching(), self.http.stream("GET", path) as response:
            if response.status_code >= 300:
                response.read()
                raise _failure(response)
            length = response.headers.get("content-length")
            total = int(length) if length and length.isdigit() else None
            received = 0
            for chunk in response.iter_bytes():
                chunks.append(chunk)
                received += len(chunk)
                progress(received, total)
        body = httpx.Response(200, content=b"".join(chunks))

        return body.json()["data"]
