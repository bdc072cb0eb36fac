"""The WMS over HTTP: a small threaded HTTP front that runs MapServer's ``mapserv`` as a
CGI program per request (``forestwatch serve``).

    forestwatch serve --config config/config.yaml --port 8080    # foreground; Ctrl-C stops
    forestwatch serve --config config/config.yaml --stop         # from another shell

``GET /wms?SERVICE=WMS&REQUEST=GetCapabilities`` (and every other WMS request) goes to
``mapserv`` with the CGI environment (``QUERY_STRING``, ``HTTP_HOST``, ...) so that the
capabilities' online resource is the address the client used. ``mapserv`` reads the
mapfile and the mosaics on each request, so a daily run's new tiles and a rewritten
mapfile show at once. MapServer 8 refuses to start without its config file: the server
writes one (``publish/mapserver.conf``, naming the run's mapfile) when it starts.

Files (paths from :class:`forestwatch.layout.RunLayout`): ``publish/mapserver.conf`` and
``publish/serve.pid`` are written by :func:`serve` (the PID file holds the serving
process's id and is removed when it stops); the mapfile is rule ``wms_mapfile``'s.
"""

from __future__ import annotations

import contextlib
import http.server
import logging
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

#: where Debian's cgi-mapserver puts the program, if it is not on PATH
MAPSERV_CANDIDATES = ("mapserv", "/usr/lib/cgi-bin/mapserv")
#: seconds one mapserv request may take
REQUEST_TIMEOUT_S = 120


class ServerError(RuntimeError):
    """The WMS server cannot start (another one runs) or would not stop."""


def find_mapserv() -> str | None:
    """The path of ``mapserv`` (MapServer's CGI program), or None if it is not installed
    (install it with ``deploy/install_mapserver.sh``)."""
    for cand in MAPSERV_CANDIDATES:
        found = shutil.which(cand) or (cand if os.access(cand, os.X_OK) else None)
        if found:
            return found
    return None


def write_mapserver_config(path: str | Path, mapfile: str | Path) -> Path:
    """MapServer 8's config file: the run's mapfile as the default map (``MS_MAPFILE``) and
    as the only one a request may name (``map=forestwatch``)."""
    from ..io import atomic_path

    mapfile = Path(mapfile).resolve()
    text = "\n".join([
        "# written by forestwatch serve when it starts",
        "CONFIG",
        "  ENV",
        f'    MS_MAPFILE "{mapfile}"',
        '    MS_MAP_NO_PATH "1"',
        "  END",
        "  MAPS",
        f'    FORESTWATCH "{mapfile}"',
        "  END",
        "END",
        "",
    ])
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


class _Handler(http.server.BaseHTTPRequestHandler):
    server_version = "forestwatch-wms/1"
    mapserv: str = "mapserv"
    config_file: str = ""

    def log_message(self, fmt, *args):  # noqa: D102 - to the logger, not stderr
        log.info("%s %s", self.address_string(), fmt % args)

    def do_GET(self):  # noqa: N802 - http.server's name
        url = urlsplit(self.path)
        if url.path not in ("/wms", "/wms/"):
            body = b"forestwatch WMS: /wms?SERVICE=WMS&REQUEST=GetCapabilities\n"
            self._send(200 if url.path == "/" else 404, "text/plain", body)
            return
        host, _, port = (self.headers.get("Host") or "").partition(":")
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GATEWAY_INTERFACE": "CGI/1.1",
            "REQUEST_METHOD": "GET",
            "QUERY_STRING": url.query,
            "SCRIPT_NAME": "/wms",
            "SERVER_NAME": host or self.server.server_address[0],
            "SERVER_PORT": port or str(self.server.server_address[1]),
            "SERVER_PROTOCOL": "HTTP/1.1",
            "HTTP_HOST": self.headers.get("Host", ""),
            "REMOTE_ADDR": self.client_address[0],
            "MAPSERVER_CONFIG_FILE": self.config_file,
        }
        for key in ("PROJ_DATA", "PROJ_LIB", "GDAL_DATA", "LANG"):
            if key in os.environ:
                env[key] = os.environ[key]
        t0 = time.perf_counter()
        try:
            proc = subprocess.run([self.mapserv], env=env, capture_output=True,
                                  timeout=REQUEST_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired:
            self._send(504, "text/plain", b"mapserv timed out\n")
            return
        status, ctype, body = _parse_cgi(proc.stdout)
        if proc.returncode != 0 and not body:
            status, ctype, body = 500, "text/plain", proc.stderr or b"mapserv failed\n"
        log.debug("mapserv %.3f s %s", time.perf_counter() - t0, url.query)
        self._send(status, ctype, body)

    def _send(self, status: int, ctype: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Access-Control-Allow-Origin", "*")
        self.end_headers()
        self.wfile.write(body)


def _parse_cgi(out: bytes) -> tuple[int, str, bytes]:
    """(status, content type, body) of a CGI program's output."""
    for sep in (b"\r\n\r\n", b"\n\n"):
        head, found, body = out.partition(sep)
        if found:
            break
    else:
        return 502, "text/plain", b"mapserv wrote no CGI header\n" + out[:500]
    status, ctype = 200, "application/octet-stream"
    for line in head.decode("latin-1").splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() == "content-type":
            ctype = value.strip()
        elif key.strip().lower() == "status":
            status = int(value.strip().split()[0])
    return status, ctype, body


def make_server(*, mapfile: str | Path, config_file: str | Path, host: str = "127.0.0.1",
                port: int = 8080, mapserv: str | None = None
                ) -> http.server.ThreadingHTTPServer:
    """A WMS HTTP server (not started) over ``mapfile``, writing MapServer's config file
    ``config_file``. Raises FileNotFoundError when mapserv or the mapfile is missing."""
    mapserv = mapserv or find_mapserv()
    if not mapserv:
        raise FileNotFoundError("mapserv (MapServer 8) is not installed: run "
                                "`sudo bash deploy/install_mapserver.sh`")
    if not Path(mapfile).exists():
        raise FileNotFoundError(f"no mapfile {mapfile}: run `snakemake` first (rule wms_mapfile)")
    write_mapserver_config(config_file, mapfile)
    handler = type("Handler", (_Handler,), {"mapserv": mapserv,
                                            "config_file": str(Path(config_file).resolve())})
    return http.server.ThreadingHTTPServer((host, port), handler)


def serve(*, mapfile: str | Path, config_file: str | Path, pid_file: str | Path,
          host: str = "127.0.0.1", port: int = 8080) -> None:
    """Serve the WMS until SIGTERM/SIGINT (Ctrl-C), with this process's id in
    ``pid_file`` while it runs. Refuses to start while another server's PID file names a
    live process."""
    pid_file = Path(pid_file)
    other = read_pid(pid_file)
    if other:
        raise ServerError(f"a WMS server already runs for this run (pid {other}, {pid_file}); "
                           "stop it with `forestwatch serve --stop`")
    server = make_server(mapfile=mapfile, config_file=config_file, host=host, port=port)
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.write_text(f"{os.getpid()}\n")

    def _stop(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)
    log.info("WMS on http://%s:%d/wms (mapfile %s); Ctrl-C or `forestwatch serve --stop` "
             "stops it", host, server.server_address[1], mapfile)
    print(f"WMS: http://{host}:{server.server_address[1]}/wms?SERVICE=WMS&REQUEST="
          "GetCapabilities", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        with contextlib.suppress(FileNotFoundError):
            if read_pid(pid_file) == os.getpid():
                pid_file.unlink()
        log.info("WMS stopped")


def read_pid(pid_file: str | Path) -> int | None:
    """The live process named by ``pid_file``, or None (no file, or a stale one)."""
    try:
        pid = int(Path(pid_file).read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    return pid


def stop(pid_file: str | Path, *, timeout_s: float = 10.0) -> int | None:
    """Stop the server named by ``pid_file`` (SIGTERM, then wait for it to remove its PID
    file); return its pid, or None when none was running."""
    pid = read_pid(pid_file)
    if pid is None:
        return None
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if read_pid(pid_file) is None:
            return pid
        time.sleep(0.1)
    raise ServerError(f"the WMS server (pid {pid}) did not stop within {timeout_s:.0f} s")


__all__ = ["ServerError", "serve", "stop", "make_server", "find_mapserv", "read_pid", "write_mapserver_config"]
