"""The strategy run's outputs (rule ``strategy``, the only writer of ``strategy/``):

* ``ranking.csv`` and ``ranking.md``: one row per candidate, best first;
* ``tradeoff.png``: detected share against false alarms, the limit drawn;
* ``lags.png``: median and 90th-percentile lags of first detections and confirmed
  alerts for the top candidates;
* ``quicklooks.png``: the alert status of the top candidates over the quicklook window,
  side by side (with the truth's disturbances when the synthetic truth is the reference);
* ``recommended.yaml``: the winner's config block to paste: ``index`` and ``monitor``, and
  for a consensus also ``consensus`` (its other members and ``k``; the workflow then runs
  every member on every tile). The best single candidate is named beside a consensus.
"""

from __future__ import annotations

import csv
import textwrap
from pathlib import Path

import numpy as np
import yaml

from .._plot import save_png, subplots
from ..accuracy import TYPES
from ..alerts.ladder import STATUS_CLASSES
from ..io import atomic_path
from .candidates import Candidate, Consensus
from .run import StrategyResult

COLUMNS = ["rank", "candidate", "within_limit", "type_mean", "detected", "omission",
           "commission", "f1", "false_alarms", "first_detected", "first_open_on_stable",
           "median_lag", "p90_lag", "first_median_lag", "first_p90_lag"]


def _rows(result: StrategyResult, limit: float) -> list[dict]:
    kinds = sorted({k for k in result.samples.kind if k})
    rows = []
    for i, s in enumerate(result.ranked, start=1):
        fa = s.get("false_alarms")
        row = {"rank": i, "candidate": s.name,
               "within_limit": fa is not None and fa <= limit}
        row.update({c: s.get(c) for c in COLUMNS[3:]})
        row.update({f"detected_{k}": s.get(f"detected_{k}") for k in kinds})
        if s.area:
            row.update(s.area)
        rows.append(row)
    return rows


def write_ranking(result: StrategyResult, *, csv_out: str | Path, md_out: str | Path,
                  limit: float, rank_by: str) -> None:
    rows = _rows(result, limit)
    fields = list(rows[0]) if rows else COLUMNS
    with atomic_path(csv_out) as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    kinds = sorted({k for k in result.samples.kind if k})

    def pct(v):
        return "n/a" if v is None else f"{100 * v:.1f} %"

    def num(v):
        return "n/a" if v is None else f"{v:g}"

    head = (["#", "candidate", "type mean"] + [TYPES_LABEL.get(k, k) for k in kinds]
            + ["false alarms", "F1", "first det. median lag d", "confirmed median lag d"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        mark = "" if r["within_limit"] else " (over the limit)"
        cells = ([str(r["rank"]), f"{r['candidate']}{mark}", pct(r["type_mean"])]
                 + [pct(r[f"detected_{k}"]) for k in kinds]
                 + [pct(r["false_alarms"]), num(r["f1"]), num(r["first_median_lag"]),
                    num(r["median_lag"])])
        lines.append("| " + " | ".join(cells) + " |")
    s = result.samples
    intro = (f"Candidates ranked by {rank_by} among those with at most {100 * limit:g} % "
             f"false alarms on stable samples, then by false alarms. Samples: {s.source}; "
             f"{int(s.disturbed.sum())} disturbed, {int((~s.disturbed).sum())} stable. "
             "Detected = a confirmed alert on or after the true date; shares are weighted by "
             "the area each sample stands for.")
    best = result.ranked[0] if result.ranked else None
    area = ""
    if best is not None and best.area:
        a = best.area
        area = (f"\n\nArea-adjusted estimate from the stratified sample (Stehman 2014), "
                f"with the top candidate's map: disturbed area {a['disturbed_area_ha']:g} ha "
                f"± {a['disturbed_area_ci95_ha']:g} ha (95 %), user's accuracy "
                f"{pct(a['users_accuracy'])}, producer's accuracy "
                f"{pct(a['producers_accuracy'])}. The area depends on the map only where "
                "the strata are map classes; with strata of the reference itself (as with "
                "the synthetic truth) every sample of a stratum has the same reference "
                "class and the area is known exactly (± 0).")
    timing = ", ".join(f"{k} {v:.1f} s" for k, v in result.seconds.items())
    with atomic_path(md_out) as tmp:
        tmp.write_text(f"{intro}\n\n" + "\n".join(lines) + area
                       + f"\n\nTime: {timing}; bands read once per tile ({result.reads} "
                       "tile read(s)).\n")


TYPES_LABEL = {key: label for key, label in TYPES.values()}


def write_recommended(result: StrategyResult, out: str | Path, *, limit: float) -> None:
    """The best candidate's config block (module docstring)."""
    cons = {c.name: c for c in result.consensus}
    by_name = {c.name: c for c in result.candidates}
    top = result.ranked[0]
    lines = [f"# The best candidate of the strategy run: {top.name}",
             f"# type mean {top.get('type_mean')}, detected {top.get('detected')}, false "
             f"alarms {top.get('false_alarms')} (limit {limit})."]
    if top.name in cons:
        block = consensus_block(cons[top.name], by_name)
        single = next((s for s in result.ranked if s.name not in cons), None)
        if single is not None:
            lines.append(f"# It is a consensus: every tile runs its {len(block['consensus']['members']) + 1} "
                         f"monitors. The best single candidate is {single.name!r} (type mean "
                         f"{single.get('type_mean')}, false alarms {single.get('false_alarms')}).")
    else:
        block = {**by_name[top.name].config_block(), "consensus": {"members": [], "k": None}}
    with atomic_path(out) as tmp:
        tmp.write_text("\n".join(lines) + "\n" + yaml.safe_dump(block, sort_keys=False))


def consensus_block(consensus: Consensus, by_name: dict[str, Candidate]) -> dict:
    """The config keys that run ``consensus`` in the workflow: its first member as
    ``index`` and ``monitor``, the others as ``consensus.members``, and its ``k``."""
    first, *others = (by_name[name] for name in consensus.members)
    block = first.config_block()
    block["consensus"] = {"members": [c.config_block() for c in others], "k": consensus.k}
    return block


def plot_tradeoff(result: StrategyResult, out: str | Path, *, limit: float, rank_by: str
                  ) -> None:
    fig, ax = subplots(figsize=(8, 5.5), dpi=110)
    ranks_at: dict[tuple[float, float], list[int]] = {}  # candidates with the same scores
    for i, s in enumerate(result.ranked):
        fa, y = s.get("false_alarms"), s.get(rank_by)
        if fa is None or y is None:
            continue
        ax.scatter(100 * fa, 100 * y, color="tab:red" if i < 3 else "tab:blue", s=30)
        if i < 5:
            ranks_at.setdefault((100 * fa, 100 * y), []).append(i + 1)
    for point, ranks in ranks_at.items():  # one label per point: "1, 2, 3", not overprinted
        ax.annotate(", ".join(map(str, ranks)), point, textcoords="offset points",
                    xytext=(4, 4), fontsize=9)
    ax.axvline(100 * limit, color="grey", linestyle="--", label=f"limit {100 * limit:g} %")
    ax.set_xlabel("false alarms on stable samples (%)")
    ax.set_ylabel(f"{rank_by.replace('_', ' ')} (%)")
    ax.set_title("Strategy candidates: detection against false alarms (numbers: rank)")
    ax.legend(loc="best")  # not over a candidate's point and rank
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_png(fig, out)


def plot_lags(result: StrategyResult, out: str | Path, *, top: int = 8) -> None:
    ranked = result.ranked[:top]
    fig, ax = subplots(figsize=(9, 0.6 * len(ranked) + 1.8), dpi=110)
    y = np.arange(len(ranked))
    for off, key, p90, label, color in ((-0.2, "first_median_lag", "first_p90_lag",
                                         "first detection", "tab:orange"),
                                        (0.2, "median_lag", "p90_lag", "confirmed",
                                         "tab:red")):
        med = [s.get(key) or 0 for s in ranked]
        hi = [max((s.get(p90) or 0) - (s.get(key) or 0), 0) for s in ranked]
        ax.barh(y + off, med, height=0.38, color=color, label=f"{label}: median",
                xerr=[np.zeros(len(hi)), hi], capsize=3)
    # whole names, wrapped (a cut one lost its "(configured)")
    ax.set_yticks(y, [textwrap.fill(f"{i + 1}. {s.name}", 45) for i, s in enumerate(ranked)],
                  fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("days from the disturbance (bar: median, whisker: 90th percentile)")
    ax.set_title("Lag of the top candidates", loc="left")
    # above the bars, not over the last one's whisker
    ax.legend(loc="lower right", bbox_to_anchor=(1, 1), ncol=2, fontsize=8, frameon=False)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    save_png(fig, out)


def plot_quicklooks(result: StrategyResult, out: str | Path, *,
                    truth: np.ndarray | None = None) -> None:
    """The top candidates' status over the window; ``truth``: the window's disturbance
    type codes (0 none), drawn first when given."""
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    names = list(result.quicklooks)
    panels = (1 if truth is not None else 0) + len(names)
    if not panels or result.window is None:
        fig, ax = subplots(figsize=(4, 2))
        ax.text(0.5, 0.5, "no quicklook (strategy.quicklooks: 0)", ha="center")
        ax.axis("off")
    else:
        rows, cols = result.window
        shape = (rows.stop - rows.start, cols.stop - cols.start)
        fig, axes = subplots(1, panels, figsize=(3.6 * panels, 4.8), dpi=110, squeeze=False)
        axes = list(axes[0])
        colors = np.zeros((256, 4))
        colors[255] = (0.85, 0.85, 0.85, 1)
        for code, (_, rgba) in STATUS_CLASSES.items():
            colors[code] = np.array(rgba) / 255
        cmap = ListedColormap(colors)
        if truth is not None:
            ax = axes.pop(0)
            tcol = np.array([(0.85, 0.85, 0.85, 1), (0.5, 0, 0, 1), (0.9, 0.4, 0.1, 1),
                             (0.6, 0.2, 0.7, 1), (0.1, 0.3, 0.8, 1)])
            ax.imshow(tcol[np.clip(truth, 0, 4)], interpolation="nearest")
            ax.set_title("truth: disturbances", fontsize=9)
            ax.axis("off")
            present = [c for c in TYPES if (truth == c).any()] or list(TYPES)
            fig.legend(handles=[Patch(color=tcol[c], label=TYPES[c][1]) for c in present],
                       loc="lower left", fontsize=7, ncol=2, title="truth", title_fontsize=7)
        px = result.window_pixels
        for rank, (name, ax) in enumerate(zip(names, axes, strict=True), start=1):
            img = np.full(shape, 255, dtype=np.uint8)
            img[px.rows - rows.start, px.cols - cols.start] = result.quicklooks[name].status
            ax.imshow(img, cmap=cmap, vmin=0, vmax=255, interpolation="nearest")
            # wrapped, not cut: a name's end says which screen it runs (/seasonal)
            ax.set_title(textwrap.fill(f"{rank}. {name}", 44), fontsize=8)
            ax.axis("off")
        fig.legend(handles=[Patch(color=np.array(rgba) / 255, label=label)
                            for label, rgba in STATUS_CLASSES.values()]
                   + [Patch(color=colors[255], label="not monitored")],
                   loc="lower right", fontsize=7, ncol=3, title="alert status",
                   title_fontsize=7)
        # wrapped to the panels' width (~40 characters each): one panel cut it at both ends;
        # the panels start below its lines (~0.045 of the figure's height each)
        title = textwrap.fill(f"Alert status at the end of monitoring, tile "
                              f"{result.window_tile.id}, {shape[0]} x {shape[1]} px window",
                              40 * panels)
        fig.suptitle(title, fontsize=10)
        fig.tight_layout(rect=(0, 0.14, 1, 1 - 0.045 * title.count("\n")))
    save_png(fig, out)


__all__ = ["write_ranking", "write_recommended", "plot_tradeoff", "plot_lags",
           "plot_quicklooks"]
