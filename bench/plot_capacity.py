"""Plot for docs/performance.md from ``bench/capacity.py`` JSON (needs the ``bench`` extra).

    python -m bench.capacity --sessions 10,100 > capacity.json
    python -m bench.plot_capacity capacity.json [--out docs]

Writes ``capacity_latency.png``: relay latency p50 and p99 of the gateway and of the
minimal reference server against sessions, every interleaved run as a point (the spread
between runs is part of the result on a shared machine), with the 50 ms goal.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

SERVERS = (("gateway", "tab:red"), ("minimal", "tab:blue"))


def plot(report: dict, out: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for name, colour in SERVERS:
        for field, marker in (("relay_ms_p50", "o"), ("relay_ms_p99", "^")):
            points = [
                (level["sessions"], pair[name][field])
                for level in report["levels"]
                for pair in level["pairs"]
                if pair[name].get(field) is not None
            ]
            ax.scatter(
                *zip(*points, strict=True),
                marker=marker,
                color=colour,
                label=f"{name} {field.removeprefix('relay_ms_')}",
            )
    ax.axhline(50, color="grey", linestyle=":", label="goal: p99 50 ms")
    ax.set(xscale="log", yscale="log", xlabel="concurrent real-time sessions (100 ms frames)")
    cores = report["machine"]["cores"]
    ax.set(
        ylabel="frame -> partial, ms", title=f"Gateway against the minimal server ({cores} cores)"
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    path = out / "capacity_latency.png"
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("report", type=Path)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "docs")
    args = parser.parse_args()
    print(plot(json.loads(args.report.read_text()), args.out))


if __name__ == "__main__":
    main()
