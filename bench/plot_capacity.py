"""Plots for docs/performance.md from ``bench/capacity.py`` JSON (needs the ``bench`` extra).

    python -m bench.capacity > after.json
    python -m bench.plot_capacity after.json [--before before.json] [--out docs]

Writes ``capacity_latency.png`` (relay latency p50/p99 against sessions, log scale, with
the 50 ms goal) and ``capacity_gateway.png`` (gateway CPU and RSS against sessions).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def _series(report: dict, field: str) -> tuple[list[int], list[float]]:
    levels = [lv for lv in report["levels"] if lv.get(field) is not None]
    return [lv["sessions"] for lv in levels], [lv[field] for lv in levels]


def plot(after: dict, before: dict | None, out: Path) -> list[Path]:
    runs = [("after", after, "-")] + ([("before", before, "--")] if before else [])
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for label, report, style in runs:
        for field, colour in (("relay_ms_p50", "tab:blue"), ("relay_ms_p99", "tab:red")):
            x, y = _series(report, field)
            name = field.removeprefix("relay_ms_")
            ax.plot(x, y, style, marker="o", color=colour, label=f"{name} {label}")
    ax.axhline(50, color="grey", linestyle=":", label="goal: p99 50 ms")
    losses = [  # a level that lost partials measured only the ones that arrived
        f"{label} {lv['sessions']}: {100 * lv['partials_lost'] / lv['frames_sent']:.0f}%"
        for label, report, _ in runs
        for lv in report["levels"]
        if lv.get("partials_lost") and lv.get("frames_sent")
    ]
    if losses:
        ax.text(
            0.99,
            0.02,
            "partials lost (not received):\n" + "\n".join(losses),
            transform=ax.transAxes,
            ha="right",
            va="bottom",
            fontsize=7,
            bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "lightgrey"},
        )
    ax.set(xscale="log", yscale="log", xlabel="concurrent real-time sessions (100 ms frames)")
    ax.set(ylabel="relay latency, ms", title="Frame -> echo partial through one gateway")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    latency = out / "capacity_latency.png"
    fig.tight_layout()
    fig.savefig(latency, dpi=110)
    plt.close(fig)

    fig, cpu_ax = plt.subplots(figsize=(7, 4.2))
    rss_ax = cpu_ax.twinx()
    for label, report, style in runs:
        x, cpu = _series(report, "gateway_cpu_percent")
        cpu_ax.plot(x, cpu, style, marker="o", color="tab:green", label=f"CPU {label}")
        x, rss = _series(report, "gateway_rss_mb_peak")
        rss_ax.plot(x, rss, style, marker="s", color="tab:purple", label=f"RSS {label}")
    cpu_ax.set(
        xscale="log", xlabel="concurrent real-time sessions", ylabel="gateway CPU, % of one core"
    )
    rss_ax.set(ylabel="gateway peak RSS, MB")
    cpu_ax.set_title("Gateway process under the capacity load (2 shared cores)")
    cpu_ax.grid(True, which="both", alpha=0.3)
    handles = cpu_ax.get_legend_handles_labels()[0] + rss_ax.get_legend_handles_labels()[0]
    labels = cpu_ax.get_legend_handles_labels()[1] + rss_ax.get_legend_handles_labels()[1]
    cpu_ax.legend(handles, labels, fontsize=8, loc="upper left")
    gateway = out / "capacity_gateway.png"
    fig.tight_layout()
    fig.savefig(gateway, dpi=110)
    plt.close(fig)
    return [latency, gateway]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("after", type=Path)
    parser.add_argument("--before", type=Path)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "docs")
    args = parser.parse_args()
    before = json.loads(args.before.read_text()) if args.before else None
    for path in plot(json.loads(args.after.read_text()), before, args.out):
        print(path)


if __name__ == "__main__":
    main()
