"""The report's plots as PNG files (matplotlib, no display needed): one file per plot, named by its id."""

from __future__ import annotations

from pathlib import Path

from trainhub.report.plots import Plot


def write_pngs(plots: list[Plot], folder: Path, dpi: int = 120) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for plot in plots:
        fig, ax = plt.subplots(figsize=(7, 4), dpi=dpi)
        for s in plot.series:
            x = [x for x, y in zip(s.x, s.y, strict=True)]
            y = [float("nan") if v is None else v for v in s.y]
            ax.plot(x, y, color=s.color, linestyle="--" if s.dash else "-", marker="o" if len(x) <= 40 else None,
                    markersize=3, linewidth=1.6, label=s.label)
        ax.set_title(plot.title)
        ax.set_xlabel(plot.xlabel)
        ax.set_ylabel(plot.ylabel)
        if plot.log_y:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = folder / f"{plot.id}.png"
        fig.savefig(path)
        plt.close(fig)
        written.append(path)
    return written
