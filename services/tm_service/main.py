"""`tm-service`: run the API with uvicorn on the configured host and port."""

from __future__ import annotations

import uvicorn

from tm_service import logs
from tm_service.app import create_app
from tm_service.settings import ServiceSettings


def main() -> None:
    settings = ServiceSettings()
    logs.configure(settings)
    uvicorn.run(
        create_app(settings),
        host=settings.service_host,
        port=settings.service_port,
        log_config=None,
        access_log=False,
        server_header=False,
    )


if __name__ == "__main__":
    main()
