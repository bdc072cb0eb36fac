"""How the workflow talks to a data provider: auth headers, URL signing, retries, secrets.

Secrets never live in config files: ``stac.auth.api_headers`` and ``stac.auth.asset_headers``
map an HTTP header name to the *name* of an environment variable holding its value. Every
resolved value is registered with :class:`RedactSecrets`, the logging filter that
:func:`forestwatch.workflow.setup_logging` installs on every handler, so a header value
(or a signed URL's query string) never reaches a log file.

- STAC API requests (pystac-client): :func:`api_io` builds a ``StacApiIO`` with the headers,
  a timeout, and urllib3 retries with exponential back-off on connection errors, timeouts
  and HTTP 5xx; each retry is logged. An HTTP 429 (too many requests) is the provider
  asking this client to slow down, not a fault: the process's requests in flight
  (:data:`API_GATE`, shared by every search of the process: parts, periods, blocks) are
  halved, and the request waits for its turn; only a 429 with one request in flight
  counts against ``stac.retries``.
- Asset reads (GDAL, `forestwatch._assets`): :func:`gdal_options` sets the same policy for
  ``/vsicurl/`` (``GDAL_HTTP_MAX_RETRY``, ``GDAL_HTTP_TIMEOUT``, ``GDAL_HTTP_HEADERS``);
  :func:`url_signer` returns the ``patch_url`` hook (``planetary-computer`` or any
  ``package.module:function`` taking and returning an href).
- GDAL remembers a failed HTTP read for the life of the process; :func:`clear_gdal_http_cache`
  makes it forget, so a retry in the same process really asks the server again.
- GDAL keeps the bytes it fetched over HTTP in one cache per process;
  :func:`share_http_cache` sizes it (:data:`HTTP_CACHE_MIB`) so that the tiles whose jobs
  run in one process (Snakemake's, a SLURM batch, a daily run) fetch a file they share
  once, not once per tile.
"""

from __future__ import annotations

import functools
import importlib
import logging
import os
import random
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from ._gdal import gdal_libraries, gdal_path

log = logging.getLogger(__name__)

#: the statuses urllib3 retries for the STAC API: server-side failures (a 429 is waited out
#: by :class:`_ApiGate` instead; GDAL retries the asset reads' own)
_API_RETRY_STATUSES = (500, 502, 503, 504)
#: HTTP 429 Too Many Requests
TOO_MANY_REQUESTS = 429
#: most STAC API requests one process has in flight: a tile's two periods in
#: ``stac.SEARCH_PARTS`` parts each, and the searches of a block or two beside them
API_MAX_IN_FLIGHT = 16
#: longest wait, s, a provider's ``Retry-After`` is followed for
_MAX_RETRY_AFTER_S = 120.0

_SECRETS: set[str] = set()
_URL_QUERY = re.compile(r"(https?://[^\s'\"?]+)\?[^\s'\"]*")


class AccessError(RuntimeError):
    """A provider could not be reached or refused us; the message says what to do."""


def redact(text: str) -> str:
    """``text`` with URL query strings (SAS tokens, signatures) and known secret values
    replaced by ``***``."""
    text = _URL_QUERY.sub(r"\1?***", text)
    for secret in _SECRETS:
        text = text.replace(secret, "***")
    return text


class RedactSecrets(logging.Filter):
    """Logging filter: redact secrets from the fully formatted message of every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and record.exc_info[1] is not None:
            # tracebacks carry the exception text too; keep the type, drop the secret
            err = record.exc_info[1]
            if redact(str(err)) != str(err):
                record.exc_info, record.exc_text = None, None
                record.msg = f"{record.msg} [traceback withheld: it contained a secret]"
        return True


def resolve_headers(headers_env: dict[str, str], key: str) -> dict[str, str]:
    """Header name -> value, read from the environment variables named in config
    ``key`` (``stac.auth.api_headers`` or ``stac.auth.asset_headers``)."""
    out = {}
    for header, var in (headers_env or {}).items():
        value = os.environ.get(var)
        if not value:
            raise AccessError(
                f"environment variable {var} (config key '{key}.{header}') is not set or "
                f"empty; export it in the environment that runs the workflow "
                "(never put the secret itself in the config file)."
            )
        _SECRETS.add(value)
        out[header] = value
    return out


class _LoggedRetry:
    """Factory for a urllib3 ``Retry`` that logs each retry (the class is built lazily so
    that importing this module does not import urllib3)."""

    cls = None

    @classmethod
    def make(cls, **kwargs):
        if cls.cls is None:
            from urllib3.util.retry import Retry

            class LoggedRetry(Retry):
                # a 429 is the API gate's to wait out (_ApiGate), also with Retry-After
                RETRY_AFTER_STATUS_CODES = Retry.RETRY_AFTER_STATUS_CODES - {429}

                def increment(self, method=None, url=None, response=None, error=None,
                              _pool=None, _stacktrace=None):
                    new = super().increment(method, url, response, error, _pool, _stacktrace)
                    reason = f"HTTP {response.status}" if response is not None else repr(error)
                    log.warning("STAC API %s %s: %s; retrying (%d left)", method,
                                redact(str(url)), reason, new.total)
                    return new

            cls.cls = LoggedRetry
        return cls.cls(**kwargs)


class _ApiGate:
    """The STAC API requests this process has in flight: at most :attr:`limit`, which an
    HTTP 429 halves and every ten answers without one raise by one again, up to
    :data:`API_MAX_IN_FLIGHT`.

    Why: a search is cut into parts searched side by side (``FORESTWATCH_SEARCH_PARTS``), a tile
    searches two periods at once and the blocks of a run search beside each other. A
    provider that limits a client's requests answers the surplus with 429; retried by
    each request on its own, after the same back-off, they collide again and a search
    fails where one request at a time would have passed (tests/test_stac_api.py). Here
    the requests queue for their turn instead, as many at once as the provider accepts.
    """

    #: answers without a 429 after which one more request may be in flight
    RAISE_AFTER = 10

    def __init__(self, maximum: int) -> None:
        self.maximum = maximum
        self.limit = maximum
        self.in_flight = 0
        self._answered = 0
        self._turn = threading.Condition()

    @contextmanager
    def turn(self) -> Iterator[int]:
        """Wait until fewer than :attr:`limit` requests are in flight, and hold a place
        while the request is made; gives how many were in flight with it (itself
        included)."""
        with self._turn:
            while self.in_flight >= self.limit:
                self._turn.wait()
            self.in_flight += 1
            alongside = self.in_flight
        try:
            yield alongside
        finally:
            with self._turn:
                self.in_flight -= 1
                self._turn.notify_all()

    def answered(self) -> None:
        with self._turn:
            self._answered += 1
            if self._answered >= self.RAISE_AFTER and self.limit < self.maximum:
                self.limit += 1
                self._answered = 0
                self._turn.notify_all()

    def slow_down(self, alongside: int) -> int:
        """A 429 came for a request made with ``alongside`` in flight: at most half as
        many from now on (at least 1); gives the new limit."""
        with self._turn:
            self.limit = max(1, min(self.limit, alongside) // 2)
            self._answered = 0
            return self.limit


#: the process's STAC API requests in flight (:class:`_ApiGate`)
API_GATE = _ApiGate(API_MAX_IN_FLIGHT)


def _retry_after_s(response) -> float | None:
    """A 429's ``Retry-After`` in seconds (the delay form), None without one."""
    value = response.headers.get("Retry-After") if response is not None else None
    try:
        return min(max(float(value), 0.0), _MAX_RETRY_AFTER_S) if value else None
    except ValueError:  # the HTTP-date form: fall back to the back-off
        return None


@functools.cache
def _gated_api_io_class():
    """pystac-client's ``StacApiIO`` whose requests take turns at :data:`API_GATE` and
    wait out 429s (built lazily: importing this module does not import pystac-client)."""
    from pystac_client.exceptions import APIError
    from pystac_client.stac_api_io import StacApiIO

    class GatedStacApiIO(StacApiIO):
        def __init__(self, *args, retries: int, backoff_s: float, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self._retries, self._backoff_s = retries, backoff_s
            self._last = threading.local()  # the thread's last response (its headers)
            self.session.hooks["response"].append(self._keep_response)

        def _keep_response(self, response, *args, **kwargs):
            self._last.response = response

        def request(self, href, method=None, headers=None, parameters=None) -> str:
            counted = 0
            while True:
                with API_GATE.turn() as alongside:
                    try:
                        text = super().request(href, method=method, headers=headers,
                                               parameters=parameters)
                    except APIError as err:
                        if getattr(err, "status_code", None) != TOO_MANY_REQUESTS:
                            raise
                        limit = API_GATE.slow_down(alongside)
                        response = getattr(self._last, "response", None)
                        refused = err
                    else:
                        API_GATE.answered()
                        return text
                # with others in flight, the 429 says "fewer at once": not a failure
                if alongside == 1:
                    counted += 1
                    if counted > self._retries:
                        raise refused
                wait = _retry_after_s(response)
                if wait is None:  # the back-off, jittered: the refused requests drift apart
                    wait = self._backoff_s * 2 ** counted * random.uniform(0.5, 1.5)
                log.warning("STAC API %s %s: HTTP 429 (too many requests) with %d request(s) "
                            "in flight; now at most %d at once, retrying in %.1f s%s",
                            (method or "GET").upper(), redact(str(href)), alongside, limit,
                            wait, f" ({self._retries - counted} left)" if alongside == 1
                            else "")
                time.sleep(wait)

    return GatedStacApiIO


def api_io(stac_cfg: dict):
    """A pystac-client ``StacApiIO`` with auth headers, timeout and logged retries with
    exponential back-off (``retry_backoff_s`` * 2**n seconds), taking turns with the
    process's other STAC API requests (:data:`API_GATE`)."""
    retries = stac_cfg["retries"]
    retry = _LoggedRetry.make(
        total=retries, connect=retries, read=retries, status=retries,
        backoff_factor=stac_cfg["retry_backoff_s"], status_forcelist=_API_RETRY_STATUSES,
        allowed_methods=None,  # a search POST is a read: retry it like a GET
        raise_on_status=True, respect_retry_after_header=True,
    )
    headers = resolve_headers(stac_cfg["auth"]["api_headers"], "stac.auth.api_headers")
    return _gated_api_io_class()(headers=headers, timeout=stac_cfg["timeout_s"],
                                 max_retries=retry, retries=retries,
                                 backoff_s=stac_cfg["retry_backoff_s"])


def gdal_options(stac_cfg: dict) -> dict[str, str]:
    """GDAL config options for reading assets over HTTP with the configured policy."""
    opts = {
        "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",  # no probing for .aux.xml sidecars
        "GDAL_HTTP_MAX_RETRY": str(stac_cfg["retries"]),
        "GDAL_HTTP_RETRY_DELAY": str(stac_cfg["retry_backoff_s"]),
        "GDAL_HTTP_TIMEOUT": str(int(max(1, round(stac_cfg["timeout_s"])))),
        "GDAL_HTTP_CONNECTTIMEOUT": str(int(max(1, round(stac_cfg["timeout_s"])))),
    }
    headers = resolve_headers(stac_cfg["auth"]["asset_headers"], "stac.auth.asset_headers")
    if headers:
        opts["GDAL_HTTP_HEADERS"] = "\r\n".join(f"{k}: {v}" for k, v in headers.items())
    return opts


def url_signer(spec: str | None) -> Callable[[str], str] | None:
    """The href-signing hook named by ``stac.auth.sign_url``: ``planetary-computer``
    (needs the ``planetary-computer`` package) or ``package.module:function``."""
    if not spec:
        return None
    target = "planetary_computer:sign" if spec == "planetary-computer" else spec
    module_name, _, func_name = target.partition(":")
    try:
        func = getattr(importlib.import_module(module_name), func_name)
    except (ImportError, AttributeError) as err:
        hint = ("pip install planetary-computer" if spec == "planetary-computer"
                else "check the name, and that the module is importable in this environment")
        raise AccessError(
            f"config key 'stac.auth.sign_url' is {spec!r}, which cannot be loaded ({err}); "
            f"{hint}."
        ) from None
    return func


#: size, MiB, of GDAL's process-wide cache of bytes fetched over HTTP
#: (``CPL_VSIL_CURL_CACHE_SIZE``; GDAL's own default is 16 MB). Tiles that share asset
#: files read them one after another in one process: with 16 MB the demo's 4 tiles each
#: fetched every file again (BENCHMARKS.md, "The chain against its I/O floor"). The
#: cache holds compressed bytes, so it is also the most a process keeps for it. Set
#: ``CPL_VSIL_CURL_CACHE_SIZE`` (bytes) in the environment to choose another size.
HTTP_CACHE_MIB = 256
_HTTP_CACHE_SIZED = threading.Lock()


def share_http_cache() -> None:
    """Size GDAL's HTTP cache to :data:`HTTP_CACHE_MIB` unless the environment sets
    ``CPL_VSIL_CURL_CACHE_SIZE``. GDAL reads the size once, when it first fetches over HTTP
    in the process, so this is called before every load (it sets the option once).

    The option is set process-wide in GDAL itself: rasterio's ``set_gdal_config`` sets it
    for the calling thread only, which the reader threads, and the other jobs' threads
    in Snakemake's process, do not see (the cache then stayed at 16 MB in the workflow).
    """
    if "CPL_VSIL_CURL_CACHE_SIZE" in os.environ or not _HTTP_CACHE_SIZED.acquire(False):
        return  # the user's size, or already set (the lock is never released)
    size = str(HTTP_CACHE_MIB * 2**20).encode()
    libraries = gdal_libraries()
    for lib in libraries:
        lib.CPLSetConfigOption(b"CPL_VSIL_CURL_CACHE_SIZE", size)
    if libraries:
        log.info("GDAL's HTTP cache: up to %d MiB in this process", HTTP_CACHE_MIB)
    else:
        log.debug("no GDAL library found in this process; HTTP cache left at GDAL's size")


_CLEARED_FOR: set[str] = set()
_CLEARED_FOR_LOCK = threading.Lock()


def clear_gdal_http_cache_once(key: str) -> bool:
    """:func:`clear_gdal_http_cache` the first time this process sees ``key`` (a daily
    run's id); True if it cleared.

    A daily run's tile updates start by forgetting what an earlier run of the process left
    (a failure GDAL remembers is not a reading), but not each other's fetches: clearing at
    every tile made every tile of a granule fetch the day's files again. A failure met
    during the run is still read again for real: the in-run retry clears before it
    (:mod:`forestwatch.monitor.forward`).
    """
    with _CLEARED_FOR_LOCK:
        if key in _CLEARED_FOR:
            return False
        _CLEARED_FOR.add(key)
    return clear_gdal_http_cache()


def forget_gdal_http_reads(hrefs) -> None:
    """Make GDAL forget what ``/vsicurl/`` cached for these HTTP(S) files only (GDAL's
    ``VSICurlPartialClearCache``, by prefix: a signed URL of an href goes with it), so
    that reading one again asks the server; the other files' fetched bytes stay."""
    import ctypes

    paths = (gdal_path(h) for h in hrefs)
    prefixes = [p.encode() for p in paths if p and p.startswith("/vsicurl/")]
    for lib in gdal_libraries() if prefixes else []:
        try:
            clear = lib.VSICurlPartialClearCache
        except AttributeError:
            continue
        clear.argtypes, clear.restype = [ctypes.c_char_p], None
        for prefix in prefixes:
            clear(prefix)


def clear_gdal_http_cache() -> bool:
    """Make GDAL forget everything ``/vsicurl/`` cached in this process: file sizes, blocks
    and failed requests (GDAL's ``VSICurlClearCache``); and the reader's decoded blocks
    (:data:`forestwatch._assets.DECODED`).

    Without it a retry in the same process gets GDAL's cached error even after the server
    has recovered. rasterio exposes no call for it, so it is called in every GDAL library
    mapped into the process (rasterio's, and e.g. pyogrio's own copy, which is harmless).
    Returns False where none can be found (not Linux); then only a new process retries
    for real.
    """
    from ._assets import DECODED

    DECODED.clear()  # the blocks decoded from what GDAL fetched go with it
    cleared = False
    for lib in gdal_libraries():
        try:
            lib.VSICurlClearCache()
            cleared = True
        except AttributeError:
            continue
    if not cleared:
        log.debug("no GDAL library found in this process; HTTP cache not cleared")
    return cleared


__all__ = ["API_GATE", "API_MAX_IN_FLIGHT", "TOO_MANY_REQUESTS", "AccessError", "RedactSecrets",
           "api_io", "clear_gdal_http_cache", "forget_gdal_http_reads",
           "clear_gdal_http_cache_once", "gdal_options", "redact",
           "resolve_headers", "share_http_cache", "url_signer"]
