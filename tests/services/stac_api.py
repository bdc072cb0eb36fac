"""Real STAC services on 127.0.0.1 for the integration tests, each a subprocess stopped by
its PID:

- PostgreSQL 15 + PostGIS with pgstac (``pypgstac migrate``), in a private data folder;
- stac-fastapi-pgstac under uvicorn (the production stack behind eoAPI);
- an HTTP file server for the archive's COGs that answers Range requests (206) and can
  require an auth header (or nginx, for the benchmarks: :func:`start_nginx_file_server`);
- a fault proxy in front of the API that injects HTTP errors or delays on request, for the
  faults a healthy server cannot be made to produce on cue;
- for the benchmarks, nginx as a latency proxy (:func:`start_latency_proxy`).

The Debian packages come from ``install_postgis.sh``; the Python ones from the ``test``
extra in pyproject.toml.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
from ports import free_port

HERE = Path(__file__).resolve().parent
PG_MAJOR = os.environ.get("PG_MAJOR", "15")
PG_BIN = Path(f"/usr/lib/postgresql/{PG_MAJOR}/bin")


def _install(script: str, what: str) -> None:
    """Run the project's installer ``script`` (beside this file; a no-op when ``what`` is
    present); fail with its output."""
    proc = subprocess.run(["bash", str(HERE / script)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"installing {what} failed:\n{proc.stdout}\n{proc.stderr}")


def install_system_packages() -> None:
    """PostgreSQL + PostGIS from Debian, through the project's script (no-op if present)."""
    _install("install_postgis.sh", "PostgreSQL/PostGIS")


class Service:
    """A subprocess with its log file; :meth:`stop` ends it by PID (and waits)."""

    def __init__(self, name: str, cmd: list[str], log: Path, stop_signal=signal.SIGTERM,
                 **popen) -> None:
        self.name, self.log, self.stop_signal = name, log, stop_signal
        self._log_file = open(log, "ab")
        self.proc = subprocess.Popen(cmd, stdout=self._log_file, stderr=subprocess.STDOUT,
                                     start_new_session=True, **popen)
        self.pid = self.proc.pid

    def log_tail(self, n: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])

    def wait_http(self, url: str, timeout: float = 60) -> None:
        """Poll ``url`` until it answers 200; fail with the log tail if the process dies."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({self.proc.returncode}):\n{self.log_tail()}")
            try:
                if requests.get(url, timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"{self.name} not ready after {timeout} s:\n{self.log_tail()}")

    def stop(self, timeout: float = 20) -> None:
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGCONT)  # a test may have paused it
            os.kill(self.pid, self.stop_signal)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.pid, signal.SIGKILL)
                self.proc.wait(5)
        self._log_file.close()


def _run(cmd: list[str], **kw) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


class PgStac:
    """PostgreSQL (+ PostGIS, pgstac) on 127.0.0.1:<port>, data in a private folder.

    PostgreSQL refuses to run as root, so as root it runs as the ``postgres`` user the
    Debian package creates; the data folder is made theirs.
    """

    def __init__(self, base: Path) -> None:
        install_system_packages()
        self.port = free_port()
        # short path: the Unix socket path has a 107-byte limit
        self.dir = Path(tempfile.mkdtemp(prefix="fw-pg-"))
        user = {}
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
            user = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}
        data = self.dir / "data"
        _run([str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
              "-E", "UTF8", "--no-sync"], cwd=self.dir, **user)
        self.server = Service(
            "postgres",
            [str(PG_BIN / "postgres"), "-D", str(data), "-c", "listen_addresses=127.0.0.1",
             "-p", str(self.port), "-k", str(self.dir), "-c", "fsync=off",
             "-c", "synchronous_commit=off", "-c", "full_page_writes=off"],
            base / "postgres.log", stop_signal=signal.SIGINT, cwd=self.dir, **user)
        self.dsn = f"postgresql://postgres@127.0.0.1:{self.port}/pgstac"
        self._wait_ready()
        _run([str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U",
              "postgres", "pgstac"])
        _run([_bin("pypgstac"), "migrate", "--dsn", self.dsn])

    def _wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.server.proc.poll() is not None:
                raise RuntimeError(f"postgres exited:\n{self.server.log_tail()}")
            ok = subprocess.run([str(PG_BIN / "pg_isready"), "-h", "127.0.0.1", "-p",
                                 str(self.port)], capture_output=True).returncode == 0
            if ok:
                return
            time.sleep(0.3)
        raise RuntimeError(f"postgres not ready after {timeout} s:\n{self.server.log_tail()}")

    def load(self, collection: dict, items: list[dict], workdir: Path) -> None:
        """Upsert a collection and its items (ndjson through ``pypgstac load``)."""
        coll_path = workdir / "collection.json"
        coll_path.write_text(json.dumps(collection))
        items_path = workdir / "items.ndjson"
        items_path.write_text("".join(json.dumps(it) + "\n" for it in items))
        _run([_bin("pypgstac"), "load", "collections", str(coll_path), "--dsn", self.dsn,
              "--method", "upsert"])
        _run([_bin("pypgstac"), "load", "items", str(items_path), "--dsn", self.dsn,
              "--method", "upsert"])

    def stop(self) -> None:
        self.server.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def stop_all(started: list[Service], db: PgStac) -> None:
    """Stop the services a benchmark started (newest first: proxies before what they
    forward to), then its database."""
    for srv in reversed(started):
        srv.stop()
    db.stop()


def _bin(name: str) -> str:
    """A console script of the running environment (the venv the tests run in)."""
    path = Path(sys.executable).parent / name
    return str(path) if path.exists() else name


def start_stac_api(db: PgStac, base: Path) -> tuple[Service, str]:
    """stac-fastapi-pgstac on 127.0.0.1 (factory app; its own run() binds 0.0.0.0)."""
    port = free_port()
    env = os.environ | {"PGUSER": "postgres", "PGPASSWORD": "unused", "PGHOST": "127.0.0.1",
                        "PGPORT": str(db.port), "PGDATABASE": "pgstac",
                        "POSTGRES_USER": "postgres", "POSTGRES_PASS": "unused",
                        "POSTGRES_HOST_READER": "127.0.0.1", "POSTGRES_HOST_WRITER": "127.0.0.1",
                        "POSTGRES_PORT": str(db.port), "POSTGRES_DBNAME": "pgstac"}
    api = Service("stac-fastapi-pgstac",
                  [sys.executable, "-m", "uvicorn", "stac_fastapi.pgstac.app:create_app",
                   "--factory", "--host", "127.0.0.1", "--port", str(port), "--log-level",
                   "warning"], base / "stac-api.log", env=env)
    url = f"http://127.0.0.1:{port}"
    api.wait_http(f"{url}/_mgmt/ping")
    return api, url


def start_file_server(root: Path, base: Path, required_header: str | None = None
                      ) -> tuple[Service, str]:
    """HTTP server for the files under ``root`` (Range requests answered with 206);
    with ``required_header`` ("Name: value") other requests get 401."""
    port = free_port()
    env = os.environ | {"FILE_SERVER_ROOT": str(root),
                        "FILE_SERVER_REQUIRED_HEADER": required_header or ""}
    srv = Service("file server",
                  [sys.executable, "-m", "uvicorn", "file_server:create_app", "--factory",
                   "--host", "127.0.0.1", "--port", str(port), "--app-dir", str(HERE)],
                  base / "file-server.log", env=env)
    url = f"http://127.0.0.1:{port}"
    srv.wait_http(f"{url}/_ping")
    return srv, url


def _start_nginx(name: str, base: Path, server: str, access_log: Path, http: str = "",
                 modules: tuple[str, ...] = ()) -> tuple[Service, str]:
    """nginx (one worker, Debian's, from ``install_nginx.sh``) with ``server`` in its
    ``server`` block and ``http`` beside it, its files in ``base / name``."""
    _install("install_nginx.sh", "nginx")
    port = free_port()
    home = base / name
    temp = home / "temp"
    temp.mkdir(parents=True, exist_ok=True)
    conf = home / "nginx.conf"
    loads = "".join(f"load_module /usr/lib/nginx/modules/{m};\n" for m in modules)
    conf.write_text(f"""{loads}daemon off;
worker_processes 1;
pid {home}/nginx.pid;
error_log {home}/error.log;
events {{ worker_connections 1024; }}
http {{
  access_log {access_log};
  client_body_temp_path {temp}/body;
  proxy_temp_path {temp}/proxy;
  fastcgi_temp_path {temp}/fastcgi;
  uwsgi_temp_path {temp}/uwsgi;
  scgi_temp_path {temp}/scgi;
  sendfile on;
  keepalive_requests 100000;
  {http}
  server {{
    listen 127.0.0.1:{port};
    location = /_ping {{ return 200 "ok"; }}
{server}
  }}
}}
""")
    srv = Service(name, ["/usr/sbin/nginx", "-c", str(conf)], home / "nginx.out")
    url = f"http://127.0.0.1:{port}"
    srv.wait_http(f"{url}/_ping")
    return srv, url


def start_nginx_file_server(root: Path, base: Path) -> tuple[Service, str]:
    """nginx serving the files under ``root`` (Range requests answered with 206), its
    access log in ``base / "file-server.log"`` as :func:`start_file_server`'s: a file
    server in C, whose CPU is a small part of the machine's, as an object store's is none
    of the user's."""
    return _start_nginx("file-server-nginx", base, f"    root {root};",
                        base / "file-server.log")


def start_latency_proxy(upstream: str, base: Path, delay_ms: float,
                        name: str = "latency-proxy") -> tuple[Service, str]:
    """nginx in front of ``upstream`` holding every request ``delay_ms`` (whole ms) before passing it
    on (the echo module's ``echo_sleep``, a timer: no CPU while it waits), as an object
    store's round trip would: the benchmarks' added latency, without the fault proxy's
    Python (~2-3 ms of CPU per request, on the cores of what is measured). The Host header
    is passed through, so the API's links point at the proxy."""
    server = f"""    location / {{ echo_sleep {round(delay_ms) / 1000:.3f}; echo_exec @upstream; }}
    location @upstream {{
      proxy_pass http://upstream;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $http_host;
      proxy_buffering off;
      proxy_request_buffering off;
    }}"""
    host = upstream.removeprefix("http://").rstrip("/")
    upstreams = f"upstream upstream {{ server {host}; keepalive 64; }}"
    return _start_nginx(name, base, server, base / f"{name}.log", http=upstreams,
                        modules=("ngx_http_echo_module.so",))


def start_fault_proxy(upstream: str, base: Path, name: str = "fault-proxy"
                      ) -> tuple[Service, str]:
    """A proxy in front of ``upstream`` that injects faults set through ``POST /_fault``."""
    port = free_port()
    env = os.environ | {"FAULT_PROXY_UPSTREAM": upstream}
    srv = Service(name,
                  [sys.executable, "-m", "uvicorn", "fault_proxy:create_app", "--factory",
                   "--host", "127.0.0.1", "--port", str(port), "--app-dir", str(HERE)],
                  base / f"{name}.log", env=env)
    url = f"http://127.0.0.1:{port}"
    srv.wait_http(f"{url}/_fault")
    return srv, url


def http_items(catalog: Path, base_url: str) -> tuple[dict, list[dict]]:
    """The synthetic archive's collection and items, asset hrefs made absolute URLs under
    ``base_url`` (an API resolves a bare path against the item's own link, which 404s)."""
    folder = catalog.parent
    collection = json.loads((folder / "collection.json").read_text())
    collection["links"] = []
    items = json.loads(catalog.read_text())["features"]
    for it in items:
        it["links"] = []
        for asset in it["assets"].values():
            href = asset["href"]
            if href.startswith("file://"):
                href = str(Path(href[7:]).relative_to(folder))
            asset["href"] = f"{base_url}/{href}"
    return collection, items
