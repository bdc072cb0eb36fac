"""Glue between Snakemake and :mod:`forestwatch.jobs`: run one job in the Snakemake
process with its log file, the logging of the command-line tools, and the end of a run
(:func:`end_of_run`).

Snakemake runs the rules' ``run:`` jobs in threads of its own process (``force-use-threads``,
profiles/default), so one job must not reconfigure the process's logging the way a script
job could: :func:`run_job` registers the job's log file for its thread, and
:class:`_JobLogRouter` (one handler, on the root logger) writes each record to the log of
the job whose thread emitted it.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from .access import RedactSecrets

_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_QUIET = ("numba", "rasterio", "urllib3", "botocore")


def _quiet_warnings() -> None:
    logging.captureWarnings(True)
    # odc-geo/affine deprecation chatter drowns the useful lines
    warnings.filterwarnings("ignore", category=PendingDeprecationWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    # in-memory arrays reprojected without a geotransform of their own
    warnings.filterwarnings("ignore", message="Dataset has no geotransform")
    for noisy in _QUIET:
        logging.getLogger(noisy).setLevel(logging.WARNING)


def setup_logging(log_path: str | None) -> None:
    """A command-line tool's logging (the whole process is one command): to ``log_path``
    (if given) and stderr, with timestamps."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        handlers.append(logging.FileHandler(log_path, mode="w"))
    for handler in handlers:  # no header value or signed URL ever reaches a log
        handler.addFilter(RedactSecrets())
    logging.basicConfig(level=logging.INFO, handlers=handlers, force=True, format=_FORMAT)
    _quiet_warnings()


class _JobLogRouter(logging.Handler):
    """Writes each record to the log file of the job running in the emitting thread, and
    to stderr. A record from a thread no job registered (a job's own reader pool) goes to
    every running job's log: with a job or two at a time, its own. Snakemake's own
    records are its business (they propagate to the root logger too)."""

    def __init__(self) -> None:
        super().__init__(level=logging.INFO)
        self.addFilter(RedactSecrets())  # no header value or signed URL reaches a log
        self.setFormatter(logging.Formatter(_FORMAT))
        self._files: dict[int, logging.Handler] = {}
        self._stderr = logging.StreamHandler(sys.stderr)
        self._stderr.setFormatter(self.formatter)

    def open(self, path: str | None) -> None:
        handler = logging.FileHandler(path, mode="w") if path else logging.NullHandler()
        handler.setFormatter(self.formatter)
        with self.lock:
            self._files[threading.get_ident()] = handler

    def close_job(self) -> None:
        with self.lock:
            handler = self._files.pop(threading.get_ident(), None)
        if handler is not None:
            handler.close()

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith("snakemake"):
            return
        with self.lock:
            own = self._files.get(record.thread)
            targets = [own] if own is not None else list(self._files.values())
        for handler in targets:
            handler.handle(record)
        self._stderr.handle(record)


_router: _JobLogRouter | None = None
_router_lock = threading.Lock()


def _job_log_router() -> _JobLogRouter:
    """The process's one router, installed on the root logger by the first job; the
    package's INFO records pass, other libraries' from WARNING up."""
    global _router
    with _router_lock:
        if _router is None:
            _router = _JobLogRouter()
            logging.getLogger().addHandler(_router)
            logging.getLogger("forestwatch").setLevel(logging.INFO)
            _quiet_warnings()
        return _router


@contextmanager
def job_log(path: str | None) -> Iterator[None]:
    """Route this thread's log records (and its helper threads') to ``path`` while the
    block runs."""
    router = _job_log_router()
    router.open(path)
    try:
        yield
    finally:
        router.close_job()


@dataclass(frozen=True)
class Job:
    """What a rule's ``run:`` block has, under Snakemake's names: ``input``, ``output``,
    ``params``, ``wildcards`` and ``log`` are Snakemake's named lists."""

    rule: str
    input: Any
    output: Any
    params: Any
    wildcards: Any
    threads: int
    log: Any


class JobFailed(RuntimeError):
    """A job run in a process of its own exited with an error (its log says which)."""


def own_process(function: Callable[[Job], None]) -> Callable[[Job], None]:
    """Mark a job function to run in a new Python process (``spawn``): for the jobs that
    fork worker processes themselves (the synthetic archive, the strategy's simulations).
    A fork copies only the forking thread, so a fork from Snakemake's threads can leave a
    lock held forever in the child (another job's logging or HDF5 lock): the strategy
    hung that way. Their own start-up (~2.5 s) is small beside their work."""
    function.own_process = True  # type: ignore[attr-defined]
    return function


def run_job(function: Callable[[Job], None], input: Any, output: Any, params: Any,
            wildcards: Any, threads: int, log: Any) -> None:
    """Run one job (a :mod:`forestwatch.jobs` function) with its log in ``log[0]``; log
    and re-raise an error, so that the job fails with the reason in its log.

    Called from a rule's ``run:`` block with that block's own names, e.g.
    ``run_job(jobs.fit, input, output, params, wildcards, threads, log)``; the function
    is named after its rule. A function marked :func:`own_process` runs in a new process.
    """
    job = Job(rule=function.__name__, input=input, output=output, params=params,
              wildcards=wildcards, threads=threads, log=log)
    path = log[0] if len(log) else None
    if getattr(function, "own_process", False):
        import multiprocessing

        proc = multiprocessing.get_context("spawn").Process(
            target=_run_in_child, args=(function, job, path), name=f"job-{job.rule}")
        proc.start()
        proc.join()
        if proc.exitcode != 0:
            raise JobFailed(f"job {job.rule} {dict(wildcards)} failed in its own process "
                            f"(exit status {proc.exitcode}); its log: {path}")
        return
    with job_log(path):
        _run_logged(function, job)


def _run_in_child(function: Callable[[Job], None], job: Job, path: str | None) -> None:
    setup_logging(path)
    _run_logged(function, job)


def prepare_process() -> None:
    """What every process that runs forestwatch's work sets once, before its first job
    or command (each call after the first returns at once): BLAS on the calling thread
    (:func:`forestwatch._threads.one_blas_thread`; a job spreads its work over its
    threads itself), freed memory kept for the next allocation
    (:func:`forestwatch._memory.keep_freed_memory`) and fewer searches for reference
    cycles (:func:`forestwatch._memory.collect_cycles_less_often`)."""
    from ._memory import collect_cycles_less_often, keep_freed_memory
    from ._threads import one_blas_thread

    one_blas_thread()
    keep_freed_memory()
    collect_cycles_less_often()


def _run_logged(function: Callable[[Job], None], job: Job) -> None:
    logger = logging.getLogger("forestwatch")
    t0 = time.perf_counter()
    logger.info("rule %s %s in process %d", job.rule, dict(job.wildcards), os.getpid())
    prepare_process()
    try:
        function(job)
    except Exception as err:
        logger.error("%s: %s", type(err).__name__, err, exc_info=True)
        raise
    logger.info("done in %.1f s", time.perf_counter() - t0)


def start_of_run() -> None:
    """What the Snakemake process sets as its Snakefile is read, before it plans: Python's
    cyclic garbage collector runs less often
    (:func:`forestwatch._memory.collect_cycles_less_often`). The plan is the largest
    thing in its heap (a 10,000-tile plan spent 5.4 of its 28.8 s in collections that
    walked it, BENCHMARKS.md), and the jobs run in the same process afterwards. And its job
    scheduler's rounds stop growing with the ready jobs (:mod:`forestwatch._scheduling`:
    each input file measured once, the greedy selector given only the jobs it can pick,
    the remaining jobs listed only when asked for)."""
    from ._memory import collect_cycles_less_often
    from ._scheduling import patch_job_scheduler

    collect_cycles_less_often()
    patch_job_scheduler()


def end_of_run() -> None:
    """Let the Snakemake process exit as soon as the run is over (the Snakefile's
    ``onsuccess`` and ``onerror``). Two things held it ~2 s after its last job
    (BENCHMARKS.md), as long as the demo's reports and publishing together:

    * Snakemake's scheduler leaves a ``threading.Timer`` of its job-rate window
      (``--max-jobs-per-timespan``, 1 s by default) that the interpreter waits for at
      exit: it is cancelled (the scheduler has returned; the timer would only wake it);
    * the interpreter's last garbage collection walks every object the run left (the jobs
      ran in this process) and runs their finalizers: the objects are frozen instead
      (:func:`gc.freeze`), and the operating system takes the memory back at exit.

    Only when Snakemake is the program (``snakemake`` or ``python -m snakemake``), not in a
    Python program that calls its API and goes on."""
    import gc
    from pathlib import Path

    program = Path(sys.argv[0]) if sys.argv and sys.argv[0] else Path()
    if "snakemake" not in (program.name, program.parent.name):
        return
    for thread in threading.enumerate():
        if (isinstance(thread, threading.Timer)
                and "JobScheduler" in getattr(thread.function, "__qualname__", "")):
            thread.cancel()
    gc.freeze()
