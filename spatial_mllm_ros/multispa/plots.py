"""A picture of a generation run: samples per sub-task, split by answer label (the balance at a glance)."""

from __future__ import annotations

from pathlib import Path

from spatial_mllm_ros.multispa.engine import Summary


def plot_label_balance(summary: Summary, path: Path) -> Path:
    """Write a stacked horizontal bar per sub-task (one segment per label bucket) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = sorted(summary.label_balance)
    height = max(3.0, 0.32 * len(tasks) + 1.2)
    fig, ax = plt.subplots(figsize=(10, height))
    cmap = plt.get_cmap("tab20")
    colours: dict[str, tuple] = {}
    for row, task in enumerate(tasks):
        left = 0
        for label, count in summary.label_balance[task].items():
            colour = colours.setdefault(label, cmap(len(colours) % 20))
            ax.barh(row, count, left=left, color=colour, edgecolor="white", linewidth=0.5)
            if count >= 0.08 * max(summary.per_task.values(), default=1):
                ax.text(left + count / 2, row, label, ha="center", va="center", fontsize=7)
            left += count
    ax.set_yticks(range(len(tasks)), tasks, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("samples (segments: answer labels; numbers bucketed by decade)")
    ax.set_title(f"{summary.samples} samples from {summary.scenes_done} scenes "
                 f"({summary.scenes_skipped} skipped)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
