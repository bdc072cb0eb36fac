"""Choose the shipped defaults by the strategy run on two seeds of the hard archive.

Runs ``snakemake strategy`` with ``benchmarks/configs/strategy_hard.yaml`` on seed
20240601 (``config/hard.yaml``) and seed 20240602 (``benchmarks/configs/hard_seed2.yaml``),
then joins the two ``ranking.csv`` tables and prints, as Markdown, the candidates that
meet the most of the project's targets on both seeds (clear-cut >= 97 %, storm damage >=
85 %, thinning >= 50 % detected, <= 1 % of undisturbed forest flagged), best first by the
number of targets met, then by the lower of the two seeds' mean per-type detected share.

    python benchmarks/choose_defaults.py            # run both strategy runs, then join
    python benchmarks/choose_defaults.py --no-run   # join existing results only
    python benchmarks/choose_defaults.py --grid benchmarks/configs/strategy_consensus.yaml
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SEEDS = {"20240601": ("hard", ["config/hard.yaml"]),
         "20240602": ("hard_seed2", ["config/hard.yaml", "benchmarks/configs/hard_seed2.yaml"])}
TARGETS = {"detected_clear_cut": 0.97, "detected_storm": 0.85, "detected_thinning": 0.50}
MAX_FALSE_ALARMS = 0.01


def _rows(run: str) -> dict[str, dict]:
    with open(REPO / "results" / run / "strategy" / "ranking.csv") as f:
        return {r["candidate"]: r for r in csv.DictReader(f)}


def _met(row: dict) -> int:
    n = sum(float(row[k]) >= v for k, v in TARGETS.items())
    return n + (float(row["false_alarms"]) <= MAX_FALSE_ALARMS)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-run", action="store_true", help="only join existing rankings")
    ap.add_argument("--top", type=int, default=12)
    ap.add_argument("--grid", default="benchmarks/configs/strategy_hard.yaml",
                    help="the config file with the strategy section to run")
    args = ap.parse_args()
    if not args.no_run:
        for _run, files in SEEDS.values():
            cmd = [sys.executable, "-m", "snakemake", "--cores", "2", "--configfile",
                   "config/config.yaml", *files, args.grid,
                   "--forcerun", "strategy", "--until", "strategy"]
            subprocess.run(cmd, cwd=REPO, check=True)
    seeds = {seed: _rows(run) for seed, (run, _) in SEEDS.items()}
    names = set.intersection(*(set(r) for r in seeds.values()))
    table = []
    for name in names:
        rows = [seeds[s][name] for s in SEEDS]
        table.append((sum(_met(r) for r in rows),
                      min(float(r["type_mean"]) for r in rows), name, rows))
    table.sort(key=lambda t: (-t[0], -t[1], t[2]))

    def pct(v: str) -> str:
        return f"{100 * float(v):.1f}"

    print("| candidate | targets met (of 8) | " + " | ".join(
        f"{s}: clear-cut / storm / thinning / false alarms %" for s in SEEDS) + " |")
    print("|---|---:|" + "---|" * len(SEEDS))
    for met, _, name, rows in table[: args.top]:
        cells = [" / ".join(pct(r[k]) for k in (*TARGETS, "false_alarms")) for r in rows]
        print(f"| {name} | {met} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
