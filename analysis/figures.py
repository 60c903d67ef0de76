"""The report's figures, PNGs written atomically: test macro-F1 by model and scheme with bootstrap intervals,
CPU latency against macro-F1 with its Pareto front, FP32 -> INT8 arrows and single-label confusion matrices.
analysis.report computes what they show and links them into report.md.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import ConfusionMatrixDisplay  # noqa: E402

from trainables import atomic  # noqa: E402


def save(figure: plt.Figure, path: Path) -> Path:
    figure.tight_layout()
    with atomic.replacing(path, "wb") as handle:
        figure.savefig(handle, dpi=110, format=path.suffix.lstrip("."))
    plt.close(figure)
    return path


def plot_macro_f1(entries: list[dict], path: Path) -> Path:
    """Grouped bars: test macro-F1 per model, one bar per label scheme, with the bootstrap interval."""
    models = sorted({e["model"] for e in entries})
    schemes = sorted({e["scheme"] for e in entries})
    colours = dict(zip(schemes, plt.rcParams["axes.prop_cycle"].by_key()["color"] * len(schemes)))
    width = 0.8 / max(sum(e["model"] == m for e in entries) for m in models)
    figure, axes = plt.subplots(figsize=(max(6, 0.9 * len(entries) + 1.5 * len(models)), 4.5))
    for m, model in enumerate(models):
        mine = sorted((e for e in entries if e["model"] == model), key=lambda e: e["scheme"])
        for i, e in enumerate(mine):  # the model's bars centred on its tick
            # A percentile interval can miss a biased point estimate on tiny test sets; bars never go negative.
            error = np.clip([[e["test_macro_f1"] - e["ci"][0]], [e["ci"][1] - e["test_macro_f1"]]], 0, None)
            axes.bar(m + (i - (len(mine) - 1) / 2) * width, e["test_macro_f1"], width, yerr=error, capsize=3,
                     color=colours[e["scheme"]])
    axes.set_xticks(range(len(models)), models, rotation=15, ha="right")
    axes.set_ylabel("test macro-F1 (95% bootstrap CI)")
    axes.set_title("Macro-F1 by model and label scheme (best trial by validation)")
    axes.legend(handles=[Patch(color=colours[scheme], label=scheme) for scheme in schemes], fontsize=8)
    return save(figure, path)


def label_points(axis: plt.Axes, points: list[tuple[float, float, str]]) -> None:
    """Name each point beside it: labels of points that (nearly) coincide are stacked instead of overprinted,
    and points in the right half are labelled to their left so the text stays inside the axes."""
    (x0, x1), (y0, y1) = axis.get_xlim(), axis.get_ylim()
    placed: list[tuple[float, float]] = []  # positions as fractions of the axes
    for x, y, text in points:
        fx, fy = (x - x0) / (x1 - x0), (y - y0) / (y1 - y0)
        level = sum(abs(fx - px) < 0.1 and abs(fy - py) < 0.04 for px, py in placed)
        placed.append((fx, fy))
        axis.annotate(text, (x, y), fontsize=7, xytext=(-4 if fx > 0.5 else 4, 4 + 10 * level),
                      textcoords="offset points", ha="right" if fx > 0.5 else "left")


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both lower latency and higher macro-F1, by latency."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], -np.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def plot_latency_vs_f1(points: list[dict], path: Path, unit: str = "ms per batch of 32") -> Path:
    """One panel per scheme: CPU latency vs test macro-F1 for FP32 and quantized models, Pareto front joined."""
    schemes = sorted({p["scheme"] for p in points})
    figure, axes = plt.subplots(1, len(schemes), figsize=(5.5 * len(schemes), 4.5), squeeze=False)
    for axis, scheme in zip(axes[0], schemes):
        mine = [p for p in points if p["scheme"] == scheme]
        for p in mine:
            axis.scatter(p["latency_ms"], p["f1"], marker="o" if p["precision"] == "FP32" else "s")
        label_points(axis, [(p["latency_ms"], p["f1"], f"{p['model']} {p['precision']}") for p in mine])
        front = [mine[i] for i in pareto_front([(p["latency_ms"], p["f1"]) for p in mine])]
        axis.plot([p["latency_ms"] for p in front], [p["f1"] for p in front], "k--", lw=1, marker="o", ms=13,
                  mfc="none", label="Pareto front (ringed)")
        axis.set_xlabel(f"CPU {unit} ({mine[0]['threads']} thread(s))")
        axis.set_ylabel("test macro-F1")
        axis.set_title(scheme, fontsize=10)
        axis.legend(fontsize=8)
    return save(figure, path)


def plot_fp32_vs_int8(rows: list[dict], path: Path) -> Path:
    """Arrows from each FP32 model to its INT8 copy: left is faster, down is less accurate."""
    figure, axis = plt.subplots(figsize=(6.5, 4.5))
    for row in rows:
        start, end = (row["fp32_latency_ms"], row["fp32_test_macro_f1"]), (row["int8_latency_ms"],
                                                                           row["int8_test_macro_f1"])
        axis.annotate("", end, start, arrowprops={"arrowstyle": "->", "color": "tab:blue"})
        axis.scatter(*zip(start, end), c=["tab:blue", "tab:orange"], s=25)
    axis.scatter([], [], c="tab:blue", label="FP32")
    axis.scatter([], [], c="tab:orange", label="INT8 (dynamic)")
    axis.set_xlabel("CPU ms per batch of 32")
    axis.set_ylabel("test macro-F1")
    axis.set_title("FP32 -> INT8 trade-off")
    axis.legend(fontsize=8)
    axis.margins(0.2)
    label_points(axis, [(row["fp32_latency_ms"], row["fp32_test_macro_f1"],
                         f"{row['model']} ({row['scheme']}) x{row['speedup']:.2f}") for row in rows])
    return save(figure, path)


def plot_confusion(labels: np.ndarray, predictions: np.ndarray, names: list[str], title: str, path: Path) -> Path:
    present = sorted(set(labels.tolist()) | set(predictions.tolist()))
    size = max(5, 0.45 * len(present) + 2)
    figure, axis = plt.subplots(figsize=(size, size))
    ConfusionMatrixDisplay.from_predictions(labels, predictions, labels=present,
                                            display_labels=[names[c] for c in present], normalize="true",
                                            values_format=".2f", ax=axis, colorbar=False, xticks_rotation=60)
    axis.set_title(title, fontsize=10)
    return save(figure, path)
