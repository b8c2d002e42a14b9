"""`tm-operator`: run the operator until SIGTERM or Ctrl-C.

Settings come from `TM_` environment variables (`tm_operator.settings`); the
API server from the pod's ServiceAccount or `KUBECONFIG`. It watches the
whole cluster and runs as one replica.
"""

from __future__ import annotations

import sys

import kopf
from pydantic import ValidationError

from tm_operator import handlers, logs
from tm_operator.settings import OperatorSettings


def main() -> None:
    try:
        settings = OperatorSettings()
    except ValidationError as exc:
        # Bad configuration is a message and an exit code, never a traceback.
        for error in exc.errors():
            name = "TM_" + "_".join(str(p) for p in error["loc"]).upper()
            print(f"tm-operator: {name}: {error['msg']}", file=sys.stderr)
        raise SystemExit(2) from None
    logs.configure(settings)

    # The default registry brings the login handlers of the installed clients.
    registry = kopf.get_default_registry()
    operator_settings = kopf.OperatorSettings()
    handlers.configure(operator_settings)
    handlers.register(registry, handlers.Runtime(settings))
    kopf.run(
        registry=registry,
        settings=operator_settings,
        clusterwide=True,
        standalone=True,
        liveness_endpoint=settings.operator_liveness_endpoint,
    )


if __name__ == "__main__":
    main()
