"""forestwatch.workflow.run_job: jobs run in threads of one process (Snakemake's, with
force-use-threads), each with its own log file."""

from __future__ import annotations

import logging
import os
import platform
import threading
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import pytest

from forestwatch.workflow import run_job


def _job(name: str, log_path, function) -> None:
    run_job(function, SimpleNamespace(), SimpleNamespace(), SimpleNamespace(),
            {"tile": name}, 1, [str(log_path)])


def test_two_jobs_at_once_log_to_their_own_files(tmp_path):
    both_running = threading.Barrier(2, timeout=10)

    def work(name: str):
        def function(job):
            log = logging.getLogger("forestwatch.test")
            log.info("%s starts", name)
            both_running.wait()  # the other job is running now
            # a helper thread of this job (as the asset reader's pool)
            with ThreadPoolExecutor(1) as pool:
                pool.submit(log.warning, "%s helper", name).result()
            both_running.wait()
            log.info("%s ends", name)
        return function

    threads = [threading.Thread(target=_job, args=(n, tmp_path / f"{n}.log", work(n)))
               for n in ("A", "B")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    a, b = (tmp_path / "A.log").read_text(), (tmp_path / "B.log").read_text()
    assert "A starts" in a and "A ends" in a and "done in" in a
    assert "B starts" in b and "B ends" in b and "done in" in b
    assert "B starts" not in a and "B ends" not in a
    assert "A starts" not in b and "A ends" not in b
    # a helper thread's record reaches its job's log (and, while both run, the other's)
    assert "A helper" in a and "B helper" in b


def test_failing_job_logs_its_error_and_raises(tmp_path):
    def function(job):
        raise ValueError("no acquisition for tile X1")

    with pytest.raises(ValueError, match="no acquisition"):
        _job("X1", tmp_path / "x.log", function)
    text = (tmp_path / "x.log").read_text()
    assert "ERROR forestwatch: ValueError: no acquisition for tile X1" in text
    assert "Traceback" in text


def test_after_a_job_its_thread_logs_nowhere_of_its(tmp_path):
    _job("C", tmp_path / "c.log", lambda job: logging.getLogger("forestwatch").info("inside"))
    logging.getLogger("forestwatch").info("after the job")
    text = (tmp_path / "c.log").read_text()
    assert "inside" in text and "after the job" not in text


def _fails_in_child(job):
    raise ValueError("bad reference file")


def test_a_job_in_its_own_process_logs_there_and_fails_here(tmp_path):
    from forestwatch.workflow import JobFailed, own_process

    function = own_process(_fails_in_child)
    with pytest.raises(JobFailed, match="exit status 1"):
        _job("Y", tmp_path / "y.log", function)
    text = (tmp_path / "y.log").read_text()
    pid = int(text.split("in process ")[1].split()[0])
    assert pid != os.getpid()
    assert "ValueError: bad reference file" in text


class JobScheduler:
    """Named as Snakemake's scheduler, whose re-evaluation timer holds its process's exit."""

    @staticmethod
    def reevaluate() -> None:
        pass


def _other_timer() -> None:
    pass


@pytest.mark.parametrize("program, ends", [("/venv/bin/snakemake", True),
                                           ("/venv/lib/snakemake/__main__.py", True),
                                           ("/venv/bin/forestwatch", False)])
def test_the_end_of_a_snakemake_run_cancels_its_timer_and_freezes_the_heap(monkeypatch,
                                                                           program, ends):
    """end_of_run (the Snakefile's onsuccess/onerror): in a Snakemake process, the
    scheduler's pending timer is cancelled (the interpreter would wait for it at exit) and
    the heap frozen (no last collection of it); other timers and other programs are left
    alone."""
    import gc

    from forestwatch.workflow import end_of_run

    monkeypatch.setattr("sys.argv", [program, "--cores", "2"])
    scheduler, other = threading.Timer(30, JobScheduler.reevaluate), threading.Timer(30, _other_timer)
    scheduler.start(), other.start()
    frozen = gc.get_freeze_count()
    try:
        end_of_run()
        scheduler.join(timeout=5)
        assert scheduler.is_alive() is not ends
        assert other.is_alive()
        assert (gc.get_freeze_count() > frozen) is ends
    finally:
        gc.unfreeze()
        scheduler.cancel(), other.cancel()


def _seen_in_a_new_process(script: str, env: dict[str, str]) -> dict:
    """Run ``script`` (which prints a JSON object last) in a new Python process with
    ``env``; what it printed."""
    import json
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", script], env=env, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


_BLAS_IN_A_JOB = """
import json
from types import SimpleNamespace

import numpy  # noqa: F401 - OpenBLAS loaded before the first job, as in Snakemake's process
from threadpoolctl import threadpool_info

from forestwatch.workflow import run_job


def blas_threads():
    return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]


seen = {"before": blas_threads()}


def tile_state(job):
    seen["in the job"] = blas_threads()


run_job(tile_state, SimpleNamespace(), SimpleNamespace(), SimpleNamespace(), {}, 2, [])
print(json.dumps(seen))
"""


@pytest.mark.parametrize("operator", [None, "2"])
def test_a_job_runs_blas_on_its_calling_thread_unless_the_operator_says(operator):
    # a new process: this one's BLAS may have been limited by an earlier test
    from forestwatch._threads import _BLAS_THREAD_VARIABLES

    env = {k: v for k, v in os.environ.items() if k not in _BLAS_THREAD_VARIABLES}
    if operator is not None:
        env["OPENBLAS_NUM_THREADS"] = operator
    seen = _seen_in_a_new_process(_BLAS_IN_A_JOB, env)
    assert seen["in the job"], "numpy's BLAS is not seen by threadpoolctl"
    if operator is None:
        assert set(seen["in the job"]) == {1}, seen
        if (os.cpu_count() or 1) > 1:  # OpenBLAS's own default: a thread per core
            assert max(seen["before"]) > 1, seen
    else:
        assert set(seen["in the job"]) == {int(operator)}, seen


_FREED_IN_A_JOB = """
import json
from types import SimpleNamespace

import numpy as np
import psutil

from forestwatch.workflow import run_job

seen = {}


def tile_state(job):
    process = psutil.Process()
    before = process.memory_info().rss
    array = np.ones(2 * 2**20)  # 16 MiB, every page written
    seen["held_mib"] = (process.memory_info().rss - before) / 2**20
    del array
    seen["kept_mib"] = (process.memory_info().rss - before) / 2**20


run_job(tile_state, SimpleNamespace(), SimpleNamespace(), SimpleNamespace(), {}, 1, [])
print(json.dumps(seen))
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc settings")
@pytest.mark.parametrize("operator", [None, {"MALLOC_MMAP_THRESHOLD_": "131072"},
                                      {"FORESTWATCH_KEEP_FREED_MEMORY": "0"}])
def test_a_job_keeps_freed_memory_for_the_next_allocation_unless_the_operator_says(operator):
    # glibc by default unmaps a freed 16 MiB array at once (above its first mmap
    # threshold): the next one takes fresh pages, which the kernel zeroes. A job keeps
    # it, unless the environment sets glibc's own variables or turns it off.
    from forestwatch._memory import _MALLOC_VARIABLES, SWITCH

    env = {k: v for k, v in os.environ.items() if k not in (*_MALLOC_VARIABLES, SWITCH)}
    env.update(operator or {})
    seen = _seen_in_a_new_process(_FREED_IN_A_JOB, env)
    assert seen["held_mib"] > 15, seen
    if operator is None:
        assert seen["kept_mib"] > 15, seen
    else:
        assert seen["kept_mib"] < 2, seen


_CYCLES_IN_A_JOB = """
import gc
import json
import weakref
from types import SimpleNamespace

import numpy as np

from forestwatch.workflow import run_job

seen = {"before": gc.get_threshold()}


class Node:
    pass


def tile_state(job):
    seen["in the job"] = gc.get_threshold()
    # a reference cycle holding a 64 MiB array, as xarray objects can make: dropped, it is
    # freed by a collection, not by its reference counts
    a, b = Node(), Node()
    a.other, b.other, a.array = b, a, np.ones(8 * 2**20)
    gone = weakref.ref(a.array)
    del a, b
    allocations, kept = 0, []
    while gone() is not None and allocations < 100_000:
        # containers kept, as a job's Python makes them (the count is net of those freed)
        kept.extend(Node() for _ in range(100))
        allocations += 100
    seen["freed after"] = allocations if gone() is None else None


run_job(tile_state, SimpleNamespace(), SimpleNamespace(), SimpleNamespace(), {}, 1, [])
print(json.dumps(seen))
"""


@pytest.mark.parametrize("operator", [None, "700", "lots"])
def test_a_job_collects_cycles_less_often_but_still_collects_them(operator):
    # Python collects its youngest generation every 700 container allocations; in the
    # Snakemake process (large heap) every 10,000, unless the operator says otherwise (a
    # value that is not a count is reported in the log and the default kept)
    from forestwatch._memory import GC_SWITCH, GC_THRESHOLD

    env = {k: v for k, v in os.environ.items() if k != GC_SWITCH}
    if operator is not None:
        env[GC_SWITCH] = operator
    seen = _seen_in_a_new_process(_CYCLES_IN_A_JOB, env)
    assert seen["before"][0] == 700, seen
    expected = int(operator) if operator and operator.isdigit() else GC_THRESHOLD
    assert seen["in the job"] == [expected, *seen["before"][1:]], seen
    # the dropped cycle and its array are freed by the next young collection
    assert seen["freed after"] is not None and seen["freed after"] <= expected + 200, seen


_SIZES_CHILD = """
import asyncio
import json
import os
import sys
from types import SimpleNamespace

from snakemake.scheduling.job_scheduler import JobScheduler

stock = JobScheduler.update_input_sizes
from forestwatch.workflow import start_of_run

start_of_run()  # as rules/common.smk calls it
patched = JobScheduler.update_input_sizes
measured = []


class Path(str):  # an input file as the scheduler sees it: exists() and size(), counted
    async def exists(self):
        measured.append(str(self))
        return os.path.exists(self)

    async def size(self):
        return os.path.getsize(self)


folder = sys.argv[1]
files = [Path(os.path.join(folder, name)) for name in ("a", "b", "c", "gone")]
for f, size in zip(files[:3], (10, 200, 3000)):
    with open(f, "wb") as out:
        out.write(bytes(size))
listed = []


class Job:  # a ready job: its input files, each listing counted
    def __init__(self, files):
        self.files = files

    @property
    def input(self):
        listed.append(self)
        return self.files


jobs = [Job(files[:2]), Job(files[1:3]), Job([files[3]])]
ours, theirs = SimpleNamespace(_input_sizes={}), SimpleNamespace(_input_sizes={})
rounds, listings = [], []
for selection in (jobs[:2], jobs[:2], jobs):  # ready jobs before three selections
    before, listed_before = len(measured), len(listed)
    asyncio.run(patched(ours, selection))
    rounds.append(len(measured) - before)
    listings.append(len(listed) - listed_before)
    asyncio.run(stock(theirs, selection))
print(json.dumps({"replaced": patched is not stock, "rounds": rounds, "listings": listings,
                  "equal": ours._input_sizes == theirs._input_sizes,
                  "sizes": {os.path.basename(k): v for k, v in ours._input_sizes.items()}}))
"""


@pytest.mark.parametrize("operator", [None, "every-round"])
def test_the_scheduler_measures_each_input_file_once(operator, tmp_path):
    """In a process where the Snakefile's start_of_run ran, Snakemake's job scheduler
    measures an input file's size the first time a ready job lists it, not again before
    every selection of jobs, and lists each ready job's inputs once; the sizes are those
    Snakemake's own measuring gives (None for a missing file).
    FORESTWATCH_INPUT_SIZES=every-round leaves Snakemake's own."""
    import json
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "FORESTWATCH_INPUT_SIZES"}
    if operator:
        env["FORESTWATCH_INPUT_SIZES"] = operator
    out = subprocess.run([sys.executable, "-c", _SIZES_CHILD, str(tmp_path)], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["equal"]
    assert got["sizes"] == {"a": 10, "b": 200, "c": 3000, "gone": None}
    if operator:
        assert not got["replaced"] and got["rounds"] == [3, 3, 4]
        assert got["listings"] == [2, 2, 3]
    else:
        assert got["replaced"] and got["rounds"] == [3, 0, 1]  # each file once
        assert got["listings"] == [2, 0, 1]  # each job's inputs listed once


class _ReadyJob:
    """A ready job as Snakemake's greedy selector sees it: its scheduler resources and its
    priority."""

    def __init__(self, n: int, resources: dict, priority: int) -> None:
        self.n, self.scheduler_resources, self.priority = n, resources, priority

    def __repr__(self) -> str:
        return f"job{self.n}"


def _ready_jobs(rng, count: int) -> list:
    """``count`` ready jobs of a few kinds (cores, memory, priority), kinds repeated as a
    daily run's tile updates and reports are."""
    kinds = [({"_cores": int(rng.choice([1, 1, 2, 3])), "_nodes": 1, "_job_count": 1,
               "mem_mb": int(rng.choice([0, 500, 3000]))}, int(rng.choice([0, 0, 1, 5])))
             for _ in range(int(rng.integers(1, 6)))]
    return [_ReadyJob(n, *kinds[int(rng.integers(len(kinds)))]) for n in range(count)]


def test_the_greedy_selector_given_only_pickable_jobs_picks_the_same_jobs():
    """forestwatch._scheduling.pickable_jobs: Snakemake's greedy selector (greediness 1,
    reward = priority, profiles/default) given only the ready jobs it can pick selects the
    same jobs, in the same order, as given all of them, on random mixes of kinds of jobs
    and free resources; and with many interchangeable jobs, only as many as fit are
    offered."""
    import logging
    import sys
    from functools import partial

    import numpy as np
    from snakemake.scheduling.greedy import Scheduler, SchedulerSettings

    from forestwatch._scheduling import pickable_jobs

    select = getattr(Scheduler.select_jobs, "snakemake", Scheduler.select_jobs)
    greedy = Scheduler(None, SchedulerSettings(greediness=1.0,
                                               omit_prioritize_by_temp_and_input=True),
                       logging.getLogger("test"))
    rng = np.random.default_rng(7)
    offered = []
    for _ in range(400):
        jobs = _ready_jobs(rng, int(rng.integers(0, 120)))
        free = {"_cores": int(rng.integers(0, 9)), "_nodes": sys.maxsize,
                "_job_count": sys.maxsize, "mem_mb": int(rng.choice([1000, 4000, 10**6]))}
        pickable = pickable_jobs(jobs, free, partial(greedy.job_weight, available_resources=free),
                                 partial(greedy.job_reward, input_sizes={}))
        assert [j.n for j in pickable] == sorted(j.n for j in pickable)  # their order kept
        assert select(greedy, pickable, [], free, {}) == select(greedy, jobs, [], free, {})
        offered.append((len(pickable), len(jobs)))
    assert sum(p for p, _ in offered) < 0.3 * sum(n for _, n in offered)

    same = [_ReadyJob(n, {"_cores": 1, "_nodes": 1, "_job_count": 1}, 0) for n in range(5000)]
    free = {"_cores": 2, "_nodes": sys.maxsize, "_job_count": sys.maxsize}
    assert pickable_jobs(same, free, lambda job: greedy.job_weight(job, free),
                         lambda job: greedy.job_reward(job, {})) == same[:2]


_SELECTOR_CHILD = """
import json
import logging
import sys

from snakemake.scheduling.greedy import Scheduler, SchedulerSettings
from snakemake.scheduling.job_scheduler import JobScheduler

stock_select, stock_remaining = Scheduler.select_jobs, JobScheduler.remaining_jobs
from forestwatch.workflow import start_of_run

start_of_run()  # as rules/common.smk calls it


class Job:
    def __init__(self, n, cores):
        self.n, self.scheduler_resources, self.priority = n, {"_cores": cores}, 0


seen = []


class Weighing(Scheduler):  # counts the jobs whose fit the selector computes
    def job_weight(self, job, available_resources):
        seen.append(job.n)
        return super().job_weight(job, available_resources)


greedy = Weighing(None, SchedulerSettings(greediness=1.0,
                                          omit_prioritize_by_temp_and_input=True),
                  logging.getLogger("child"))
jobs = [Job(n, 2 if n % 3 == 0 else 1) for n in range(3000)]
rounds = []
for _ in range(3):
    before = len(seen)
    picked = Scheduler.select_jobs(greedy, jobs, [], {"_cores": 2}, {})
    rounds.append(len(seen) - before)
listed = []


class Plan(JobScheduler):  # the remaining jobs, each listing counted
    def __init__(self):
        pass

    @property
    def workflow(self):
        listed.append(1)
        raise RuntimeError("listed")


plan = Plan()
try:  # handed over (Snakemake's lists here)
    remaining = JobScheduler.remaining_jobs.fget(plan)
except RuntimeError:
    remaining = []
before = len(listed)
try:  # read (the patch lists here)
    len(remaining)
except RuntimeError:
    pass
print(json.dumps({"patched": Scheduler.select_jobs is not stock_select,
                  "lazy": JobScheduler.remaining_jobs is not stock_remaining,
                  "picked": [job.n for job in picked], "weighed": rounds,
                  "listed": [before, len(listed) - before]}))
"""


@pytest.mark.parametrize("operator", [None, "snakemake"])
def test_the_scheduler_rounds_do_not_walk_every_ready_job(operator):
    """In a process where the Snakefile's start_of_run ran, the greedy selector computes
    a ready job's fit once per run, not in every round, and picks what Snakemake's picks;
    the remaining jobs are listed when read, not when handed over.
    FORESTWATCH_SCHEDULER=snakemake leaves Snakemake's own."""
    import json
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "FORESTWATCH_SCHEDULER"}
    if operator:
        env["FORESTWATCH_SCHEDULER"] = operator
    out = subprocess.run([sys.executable, "-c", _SELECTOR_CHILD], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["picked"] == [0]  # the first job takes both cores, in either case
    if operator:
        assert not got["patched"] and not got["lazy"]
        assert got["weighed"] == [3000, 3000, 3000]
        assert got["listed"] == [1, 0]
    else:
        assert got["patched"] and got["lazy"]
        # each job's needs once, then remembered; Snakemake's selector then weighs the
        # 3 jobs offered: the first 2-core job and the first two 1-core jobs
        assert got["weighed"] == [3003, 3, 3]
        assert got["listed"] == [0, 1]


_SMALL_DAILY_SNAKEFILE = """
from pathlib import Path

from forestwatch import _scheduling
from forestwatch.workflow import end_of_run, start_of_run

start_of_run()  # as rules/common.smk calls it
reads = []
_list = _scheduling._OnDemand._list


def counted(self):  # each time a selector reads the remaining jobs (made or not)
    reads.append(1)
    return _list(self)


_scheduling._OnDemand._list = counted
TILES = [f"t{i}" for i in range(6)]


rule all:
    input:
        "summary.txt",


rule update:
    output:
        "state/{tile}.txt",
    run:
        Path(output[0]).write_text("state")


rule report:
    input:
        "state/{tile}.txt",
    output:
        "report/{tile}.txt",
    run:
        Path(output[0]).write_text("report")


rule summary:
    input:
        expand("report/{tile}.txt", tile=TILES),
    output:
        "summary.txt",
    run:
        Path(output[0]).write_text(f"{len(input)} {len(reads)}")


onsuccess:
    end_of_run()
"""


@pytest.mark.parametrize("selector", ["greedy", "ilp"])
def test_a_run_with_the_scheduler_patches_ends_under_either_selector(selector, tmp_path):
    """A small daily-shaped workflow (6 updates, 6 reports, a join) with the Snakefile's
    start_of_run runs to its end under profiles/default with the greedy selector (offered
    only the jobs it can pick) and with Snakemake's ILP selector, which reads the
    remaining jobs the patch lists on demand (the greedy one never does)."""
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    (tmp_path / "Snakefile").write_text(_SMALL_DAILY_SNAKEFILE)
    env = {k: v for k, v in os.environ.items() if k != "FORESTWATCH_SCHEDULER"}
    out = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(tmp_path / "Snakefile"), "-d",
         str(tmp_path), "--workflow-profile", str(repo / "profiles" / "default"),
         "--cores", "2", "--scheduler", selector], env=env, capture_output=True,
        text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stderr.count("Finished jobid") == 14
    reports, reads = (int(n) for n in (tmp_path / "summary.txt").read_text().split())
    assert reports == 6
    if selector == "ilp":
        assert reads > 0
    else:
        assert reads == 0
