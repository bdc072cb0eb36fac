"""Patches of Snakemake's job scheduler, so that a round of scheduling costs about what
the jobs it can start cost, not what every ready job costs.

Snakemake (9.x) schedules in rounds: whenever a job ends it takes every ready job, checks
their inputs and hands them all to the job selector, which picks what fits the free cores.
A daily run has every tile's update ready at once, so each round walked thousands of jobs
to start one or two, and the run's scheduling grew with the square of its tiles
(BENCHMARKS.md, "The job scheduler's rounds at scale"). :func:`patch_job_scheduler`
(called by the Snakefile's ``start_of_run``) applies, once per process and only to a
Snakemake that has what it replaces:

* :func:`measure_input_sizes_once`: each input file's size measured once per run;
* :func:`offer_greedy_only_pickable_jobs`: the greedy selector given, of the jobs that
  need the same resources at the same priority, only as many as can fit, which picks the
  same jobs;
* :func:`list_remaining_jobs_on_demand`: the not-yet-finished jobs listed when a selector
  reads them (the ILP selector does; the greedy one never does), not before every round.

For comparison, ``FORESTWATCH_INPUT_SIZES=every-round`` keeps Snakemake's own input
measuring, ``FORESTWATCH_SCHEDULER=snakemake`` its own selector input and remaining jobs.
Nothing here decides whether a job runs, only which of the ready jobs starts first.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

#: ``FORESTWATCH_SCHEDULER=snakemake`` keeps Snakemake's own selector input and
#: remaining jobs
_SCHEDULER_ENV = "FORESTWATCH_SCHEDULER"
#: ``FORESTWATCH_INPUT_SIZES=every-round`` keeps Snakemake's own measuring
_INPUT_SIZES_ENV = "FORESTWATCH_INPUT_SIZES"


def patch_job_scheduler() -> None:
    """Apply this module's patches to Snakemake's job scheduler (each once per process;
    the environment variables above leave Snakemake's own)."""
    measure_input_sizes_once()
    if os.environ.get(_SCHEDULER_ENV, "") != "snakemake":
        offer_greedy_only_pickable_jobs()
        list_remaining_jobs_on_demand()


def measure_input_sizes_once() -> bool:
    """Make Snakemake's job scheduler measure each input file's size once per run, where
    it measures the inputs of every ready job again before every selection of jobs
    (``JobScheduler.update_input_sizes``, Snakemake 9: an existence and a size check per
    file, in its event loop, holding the interpreter lock the jobs' threads need). The
    sizes only order jobs of equal priority (the greedy and ILP selectors' reward: larger
    inputs first). A daily run has every tile's update ready at once, so the measuring grew
    with tiles x selections: 122 tiles, 1,387 selections and 185,566 files measured, 14.2
    of the run's ~33 s; ~0.5 s measured once (BENCHMARKS.md, "The job scheduler's input
    sizes"). A ready job's inputs are complete (their writers finished), so a size once
    measured is the one the scheduler would measure again; a file rewritten later in the
    run (a tile's current state, by its update, before its report) keeps its first size,
    which may change which of two equal jobs starts first, never whether a job runs.

    Applied once per process, to a Snakemake whose scheduler has that coroutine; returns
    whether it is applied. ``FORESTWATCH_INPUT_SIZES=every-round`` in the environment
    leaves Snakemake's own (for comparison)."""
    import asyncio
    import inspect

    if os.environ.get(_INPUT_SIZES_ENV, "") == "every-round":
        return False
    try:
        from snakemake.scheduling.job_scheduler import JobScheduler
    except ImportError:
        return False
    original = getattr(JobScheduler, "update_input_sizes", None)
    if getattr(original, "measures_once", False):
        return True
    if not inspect.iscoroutinefunction(original):
        logging.getLogger(__name__).debug("Snakemake's scheduler has no update_input_sizes "
                                          "coroutine; its input sizes are left as they are")
        return False

    async def update_input_sizes(self, jobs) -> None:
        """The sizes of the input files of the ``jobs`` not seen yet in this run (Snakemake's
        measure: None for a file that does not exist). A job seen once is skipped by its
        identity: looking its files up again in every selection hashed every ready job's
        inputs in Python (``_IOFile.__hash__``), quadratic in the ready jobs as well."""
        sizes = self._input_sizes
        # id -> job: holding the job keeps its id from being reused in this run
        seen = self.__dict__.setdefault("_forestwatch_measured_jobs", {})

        async def measure(path):
            return path, await path.size() if await path.exists() else None

        fresh = [job for job in jobs if id(job) not in seen]
        new = {path for job in fresh for path in job.input if path not in sizes}
        seen.update((id(job), job) for job in fresh)
        if new:
            sizes.update(await asyncio.gather(*[measure(path) for path in new]))

    update_input_sizes.measures_once = True
    JobScheduler.update_input_sizes = update_input_sizes
    return True


def pickable_jobs(jobs: Sequence[Any], available: Mapping[str, int],
                  weight: Callable[[Any], Sequence[int]],
                  reward: Callable[[Any], Any]) -> list:
    """The ``jobs`` that Snakemake's greedy selector (greediness 1) can pick with the
    ``available`` resources, in their order: of the jobs with the same ``reward`` and the
    same resource needs (``weight``: one number per resource of ``available``), the first
    as many as those resources can hold at once.

    Why the selection is the same: the selector visits the jobs by reward, ties in their
    order, picks each one that still fits and drops each one that does not; jobs of equal
    reward and needs are visited in their order and fit or not alike, and the free
    resources only shrink, so it picks a prefix of them no longer than what fits at once.
    The jobs left out would have been dropped without changing the free resources.
    ``tests/test_jobs.py`` compares both selections on random jobs."""
    capacity = list(available.values())
    kept: list = []
    taken: dict = {}
    holds: dict = {}
    for job in jobs:
        need = tuple(weight(job))
        key = (reward(job), need)
        n = taken.get(key, 0)
        cap = holds.get(need)
        if cap is None:
            fits = [b // a for b, a in zip(capacity, need, strict=True) if a > 0]
            # a job needing none of the resources: Snakemake's selector decides
            cap = holds[need] = min(fits) if fits else len(jobs)
        if n < cap:
            kept.append(job)
            taken[key] = n + 1
    return kept


def offer_greedy_only_pickable_jobs() -> bool:
    """Make Snakemake's greedy selector look at the ready jobs it can pick
    (:func:`pickable_jobs`) instead of all of them. It computes each job's fit and reward
    again for every job it picks, a few passes over every ready job per round: 10 % of the
    run time of 2,000 tiles of jobs that do nothing, where a round can start 2 of up to
    2,000 ready jobs (BENCHMARKS.md). Only where the selection is the same: greediness 1 (the
    default) and the reward the job's priority alone
    (``scheduler-greedy-omit-prioritize-by-temp-and-input``, profiles/default); else
    Snakemake's own. Returns whether it is applied."""
    try:
        from snakemake.scheduling.greedy import Scheduler
    except ImportError:
        return False
    original = getattr(Scheduler, "select_jobs", None)
    if getattr(original, "forestwatch", False):
        return True
    if original is None or not hasattr(Scheduler, "job_weight") or not hasattr(
            Scheduler, "job_reward"):
        logging.getLogger(__name__).debug("Snakemake's greedy selector is not the one "
                                          "this patch knows; it is left as it is")
        return False

    def select_jobs(self, selectable_jobs, remaining_jobs, available_resources, input_sizes):
        settings = self.settings
        if (settings is not None and settings.greediness == 1
                and settings.omit_prioritize_by_temp_and_input):
            # a job's needs, by identity: Snakemake computes a job's scheduler resources
            # once (Job.scheduler_resources), the resources' names are the run's; the job
            # is held so that its identity is not reused within the run
            names = tuple(available_resources)
            if self.__dict__.get("_forestwatch_names") != names:
                self._forestwatch_names, self._forestwatch_needs = names, {}
            needs = self._forestwatch_needs

            def weight(job):
                known = needs.get(id(job))
                if known is None:
                    known = needs[id(job)] = (job, self.job_weight(job, available_resources))
                return known[1]

            selectable_jobs = pickable_jobs(selectable_jobs, available_resources, weight,
                                            lambda job: self.job_reward(job, input_sizes))
        return original(self, selectable_jobs, remaining_jobs, available_resources,
                        input_sizes)

    select_jobs.forestwatch, select_jobs.snakemake = True, original
    Scheduler.select_jobs = select_jobs
    return True


class _OnDemand(Sequence):
    """A sequence made by ``make()`` the first time it is read."""

    def __init__(self, make: Callable[[], list]) -> None:
        self._make, self._items = make, None

    def _list(self) -> list:
        if self._items is None:
            self._items = self._make()
        return self._items

    def __getitem__(self, index):
        return self._list()[index]

    def __len__(self) -> int:
        return len(self._list())

    def __iter__(self):
        return iter(self._list())


def list_remaining_jobs_on_demand() -> bool:
    """Make Snakemake's ``JobScheduler.remaining_jobs`` (every job of the plan not yet
    finished, running or failed) a list made when it is read, not before every round for
    the selector, which in the greedy case never reads it: a pass over every job of the
    plan per round (3 % of the run above). Returns whether it is applied."""
    try:
        from snakemake.scheduling.job_scheduler import JobScheduler
    except ImportError:
        return False
    original = JobScheduler.__dict__.get("remaining_jobs")
    if not isinstance(original, property):
        return False
    if getattr(original.fget, "forestwatch", False):
        return True

    def remaining_jobs(self):
        return _OnDemand(lambda: original.fget(self))

    remaining_jobs.forestwatch, remaining_jobs.snakemake = True, original.fget
    JobScheduler.remaining_jobs = property(remaining_jobs, doc=original.__doc__)
    return True
