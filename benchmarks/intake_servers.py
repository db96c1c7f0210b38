"""The two servers the intake benchmark compares, each run as its own process:

    python benchmarks/intake_servers.py autofix PORT   # the real service, durable store, a handler doing no work
    python benchmarks/intake_servers.py bare PORT      # a bare FastAPI endpoint that only parses the body

Both run under the same uvicorn settings (app.main.server_config), so the ratio measures our intake work
(authentication, validation, the durable SQLite write), not the HTTP stack.
"""

from __future__ import annotations

import json
import logging
import sys

import uvicorn
from fastapi import FastAPI, Request

from app.main import create_app, server_config
from app.models.incident import Incident
from app.models.outcome import Outcome
from app.settings import load


class NoWork:
    """Answers at once, so the workers drain the store without measuring the pipeline."""

    def handle(self, incident: Incident) -> Outcome:
        return Outcome(alertname=incident.alertname, fingerprint=incident.fingerprint, outcome="skipped",
                       reason="benchmark: no work")


def bare_app() -> FastAPI:
    app = FastAPI()

    @app.post("/webhooks/alertmanager", status_code=202)
    async def receive(request: Request) -> dict[str, int]:
        document = json.loads(await request.body())
        return {"alerts": len(document.get("alerts", []))}

    @app.get("/readyz")
    async def ready() -> dict[str, str]:
        return {"status": "ready"}

    return app


def main(argv: list[str]) -> None:
    mode, port = argv[1], int(argv[2])
    app = create_app(load(), pipeline=NoWork()) if mode == "autofix" else bare_app()
    config = server_config(app, host="127.0.0.1", port=port)

    logging.basicConfig(level=logging.WARNING)
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main(sys.argv)
