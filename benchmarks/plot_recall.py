"""Plot LoCoMo recall@k: kern's searches next to mem0's, from the two benchmarks' JSON results.

    .venv/bin/python benchmarks/locomo_recall.py --json benchmarks/locomo.json
    .venv-mem0/bin/python benchmarks/mem0_locomo.py --json benchmarks/mem0_locomo.json
    .venv-bench/bin/python benchmarks/plot_recall.py [--out benchmarks/plots/locomo_recall.png]

Needs matplotlib (the benchmark environment has it). Bars are recall@5/10/20 on the held-out
LoCoMo conversations 3–4 (never used for tuning); the dots are the tuning conversations 1–2.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
KS = ("5", "10", "20")

#: (label on the plot, file, method name in that file)
METHODS = [
    ("BM25 reference", "locomo.json", "reference: BM25 'Speaker: text (date)'"),
    ("vectors only\n(MiniLM)", "locomo.json", "vectors only (MiniLM)"),
    (
        "mem0 2.2.1\n(MiniLM, Qdrant)",
        "mem0_locomo.json",
        "mem0 2.2.1 search (defaults: threshold 0.1)",
    ),
    ("kern default\n(no embedder)", "locomo.json", "kern default, sessions"),
    ("kern default,\nno session_id", "locomo.json", "kern default, no session_id"),
    ("kern +\nMiniLM", "locomo.json", "kern + MiniLM, sessions"),
]

#: The split names of each file: (held out, tuned on). mem0's run predates MADial-Bench.
SPLITS = {
    "locomo.json": ("held-out LoCoMo", "tune (LoCoMo 1-2)"),
    "mem0_locomo.json": ("held-out (3-4)", "tune (1-2)"),
}


def load(folder: Path) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(label, held-out recall by k, tuning recall by k) per method."""
    files = {name: json.loads((folder / name).read_text()) for _, name, _ in METHODS}
    rows = []
    for label, name, method in METHODS:
        recall = files[name]["methods"][method]["recall"]
        held_out, tuned = SPLITS[name]
        rows.append((label, recall[held_out], recall[tuned]))
    return rows


def plot(rows: list[tuple[str, dict[str, Any], dict[str, Any]]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.5))
    width = 0.26
    for i, k in enumerate(KS):
        xs = [j + (i - 1) * width for j in range(len(rows))]
        bars = ax.bar(xs, [held[k] for _, held, _ in rows], width, label=f"recall@{k}")
        ax.bar_label(bars, fmt="%.2f", fontsize=7, padding=2)
        ax.scatter(xs, [tuned[k] for _, _, tuned in rows], s=12, color="black", zorder=3)
    ax.set_xticks(range(len(rows)), [label for label, _, _ in rows], fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("share of evidence turns found")
    ax.set_title("Held-out LoCoMo conversations 3–4 (dots: tuning conversations 1–2)")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=HERE, help="folder of the JSON results")
    parser.add_argument("--out", type=Path, default=HERE / "plots" / "locomo_recall.png")
    args = parser.parse_args()
    plot(load(args.results), args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
