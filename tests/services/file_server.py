"""Static HTTP file server for COGs (Starlette ``StaticFiles`` answers Range with 206).

Run with ``uvicorn file_server:create_app --factory``; ``FILE_SERVER_ROOT`` is the folder
served, ``FILE_SERVER_REQUIRED_HEADER`` ("Name: value", optional) makes every file request
without that header a 401, as a provider with token auth does.
"""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles


class RequireHeader:
    """ASGI middleware: 401 unless the request carries ``name: value``."""

    def __init__(self, app, name: str, value: str) -> None:
        self.app, self.name, self.value = app, name.lower().encode(), value.encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"] != "/_ping":
            if dict(scope["headers"]).get(self.name) != self.value:
                await PlainTextResponse("missing or wrong auth header", 401)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app():
    root = os.environ["FILE_SERVER_ROOT"]
    app = Starlette(routes=[
        Route("/_ping", lambda request: PlainTextResponse("ok")),
        Mount("/", app=StaticFiles(directory=root)),
    ])
    required = os.environ.get("FILE_SERVER_REQUIRED_HEADER")
    if required:
        name, _, value = required.partition(":")
        return RequireHeader(app, name.strip(), value.strip())
    return app
