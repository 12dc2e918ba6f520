"""What `trainhub report` plots, as plain data: the HTML page (plotly in the browser) and the PNGs
(matplotlib) draw the same list of plots, series for series.

Each run gets one colour across every plot; its eval series is dashed. A plot no run has data for is left
out (MFU on CPU, RL quantities in an SFT run).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from trainhub.metrics.rows import MethodStats, TrainRow
from trainhub.report.runlog import RunLog

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f",
          "#bcbd22"]


@dataclass
class Series:
    label: str
    x: list[float]
    y: list[float | None]
    color: str
    dash: bool = False


@dataclass
class Plot:
    id: str
    title: str
    xlabel: str
    ylabel: str
    series: list[Series] = field(default_factory=list)
    log_y: bool = False


TRAIN_FIELDS = [  # (id, title, y label, row -> value)
    ("lr", "Learning rate", "lr", lambda r: r.lr),
    ("tokens_per_s", "Throughput", "tokens/s", lambda r: r.tokens_per_s),
    ("mfu", "MFU", "model FLOPs utilisation", lambda r: r.mfu),
    ("mem_gb", "Memory", "peak GB", lambda r: r.mem_gb),
    ("grad_norm", "Gradient norm", "norm before clipping", lambda r: r.grad_norm),
]
METHOD_TITLES = {"reward_mean": "Reward", "reward_std": "Reward std", "kl": "KL to the reference",
                 "clip_ratio": "Clip ratio", "completion_length": "Completion length",
                 "chosen_reward": "Chosen reward", "rejected_reward": "Rejected reward",
                 "reward_margin": "Reward margin", "reward_accuracy": "Reward accuracy"}


def labels(runs: list[RunLog]) -> list[str]:
    """A name per run: the job's name and backend, and the folder where that is not unique."""
    base = [f"{r.name} ({r.last_start.backend if r.last_start else '?'})" for r in runs]
    return [f"{b} {r.path.name}" if base.count(b) > 1 else b for b, r in zip(base, runs, strict=True)]


def build(runs: list[RunLog]) -> list[Plot]:
    names = labels(runs)
    colors = [COLORS[i % len(COLORS)] for i in range(len(runs))]
    loss = [Plot("loss_step", "Loss by step", "step", "loss"),
            Plot("loss_tokens", "Loss by tokens", "tokens", "loss"),
            Plot("loss_time", "Loss by training time", "seconds", "loss")]
    train_plots = [Plot(id, title, "step", ylabel) for id, title, ylabel, _ in TRAIN_FIELDS]
    method_plots = {f: Plot(f"method_{f}", METHOD_TITLES.get(f, f), "step", f) for f in MethodStats.model_fields
                    if f != "rewards"}
    for run, name, color in zip(runs, names, colors, strict=True):
        train, evals = run.train(), run.evals()
        elapsed = run.elapsed()
        at = {id(row): elapsed[i] for i, row in enumerate(run.rows)}
        tokens_at = _tokens_at(train)
        for plot, x_train, x_eval in (
                (loss[0], [r.step for r in train], [e.step for e in evals]),
                (loss[1], [r.tokens for r in train], [tokens_at(e.step) for e in evals]),
                (loss[2], [at[id(r)] for r in train], [at[id(e)] for e in evals])):
            _add(plot, Series(f"{name} train", x_train, [r.loss for r in train], color))
            _add(plot, Series(f"{name} eval", x_eval, [e.eval_loss for e in evals], color, dash=True))
        for plot, (_, _, _, value) in zip(train_plots, TRAIN_FIELDS, strict=True):
            _add(plot, Series(name, [r.step for r in train], [value(r) for r in train], color))
        for f, plot in method_plots.items():
            _add(plot, Series(name, [r.step for r in train],
                              [getattr(r.method, f) if r.method else None for r in train], color))
    plots = [*loss, *train_plots, *method_plots.values()]
    return [p for p in plots if p.series]


def _add(plot: Plot, series: Series) -> None:
    """Keep a series only if it has a value to draw."""
    if any(y is not None for y in series.y):
        plot.series.append(series)


def _tokens_at(train: list[TrainRow]):
    steps = [(r.step, r.tokens) for r in train]

    def tokens(step: int) -> int:
        return max((t for s, t in steps if s <= step), default=0)

    return tokens
