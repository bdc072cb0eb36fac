"""A reverse proxy in front of a real server (the STAC API, or the file server) that
injects faults on request.

The upstream answers everything for real; the proxy only replaces chosen responses with an
HTTP error (or delays them), which a healthy server cannot be made to do on cue. The Host
header is passed through, so the API's own links (next page, self) point at the proxy and
every page goes through it.

Run with ``uvicorn fault_proxy:create_app --factory`` and ``FAULT_PROXY_UPSTREAM`` set.
``POST /_fault`` with ``{"rules": [{"match": "token", "status": 503, "times": 2}]}`` sets
the rules (``match`` is a substring of "METHOD path?query body"; ``times`` -1 = always;
``delay_s`` sleeps before answering; ``max_in_flight`` n: the rule lets n matching requests
through at a time and answers the others with ``status``, as a provider limiting concurrent
requests does, ``retry_after`` adding that header); ``GET /_fault`` returns the rules and
every request seen with what was done to it.
"""

from __future__ import annotations

import asyncio
import os
import threading

import requests
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "content-encoding",
               "content-length", "upgrade"}


def create_app():
    upstream = os.environ["FAULT_PROXY_UPSTREAM"].rstrip("/")
    state = {"rules": [], "seen": []}
    lock = threading.Lock()
    session = requests.Session()

    async def control(request: Request):
        if request.method == "POST":
            body = await request.json()
            with lock:
                state["rules"] = [dict(r, used=0, in_flight=0) for r in body.get("rules", [])]
                state["seen"] = []
        return JSONResponse(state)

    async def proxy(request: Request):
        body = await request.body()
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        signature = f"{request.method} {target} {body.decode(errors='replace')}"
        rule = admitted = None
        with lock:
            for r in state["rules"]:
                if r["match"] in signature and (r["times"] < 0 or r["used"] < r["times"]):
                    if r.get("max_in_flight") is not None and (
                            r["in_flight"] < r["max_in_flight"]):
                        r["in_flight"] += 1  # let through, counted until answered
                        admitted = r
                        break
                    r["used"] += 1
                    rule = r
                    break
            state["seen"].append({"request": signature[:300],
                                  "fault": rule.get("status") if rule else None})
        try:
            return await _answer(request, body, target, rule)
        finally:
            if admitted is not None:
                with lock:
                    admitted["in_flight"] -= 1

    async def _answer(request: Request, body: bytes, target: str, rule: dict | None):
        if rule and rule.get("delay_s"):
            await asyncio.sleep(rule["delay_s"])
        if rule and rule.get("status"):
            headers = ({"Retry-After": str(rule["retry_after"])}
                       if rule.get("retry_after") is not None else None)
            return JSONResponse({"code": "InjectedFault", "description": "fault proxy"},
                                status_code=rule["status"], headers=headers)
        headers = {k: v for k, v in request.headers.items()
                   if k.lower() not in HOP_HEADERS | {"accept-encoding"}}
        # blocking I/O off the event loop, so one slow upstream call does not stall the rest
        resp = await run_in_threadpool(session.request, request.method, upstream + target,
                                       data=body, headers=headers, timeout=60,
                                       allow_redirects=False)
        # a HEAD answer has no body: keep its Content-Length, which GDAL reads as the size
        drop = HOP_HEADERS - ({"content-length"} if request.method == "HEAD" else set())
        out_headers = {k: v for k, v in resp.headers.items() if k.lower() not in drop}
        return Response(resp.content, status_code=resp.status_code, headers=out_headers)

    methods = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]
    return Starlette(routes=[
        Route("/_fault", control, methods=["GET", "POST"]),
        Route("/{path:path}", proxy, methods=methods),
    ])
