"""PNG plots of evaluation results (matplotlib's Agg canvas; no pyplot, so no global state)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from hashing.files import as_path, atomic_output_path


def plot_precision_at_k(
    series: Mapping[str, Mapping[int | str, float | None]], path: str | os.PathLike[str], title: str
) -> Path:
    """One line per series of P@K against K, e.g. ``{"hash 256b": {1: 0.9, 10: 0.8}, "float": ...}``.

    Keys may be ints or their strings (as ``evaluate_retrieval`` and JSON give them).
    """
    figure, axes = _new_figure()
    for name, values in series.items():
        points = sorted((int(k), v) for k, v in values.items() if v is not None)
        if points:
            axes.plot([k for k, _ in points], [v for _, v in points], marker="o", label=name)
    axes.set_xscale("log")
    axes.set_xlabel("K (top-K retrieved)")
    axes.set_ylabel("precision@K")
    axes.set_ylim(0.0, 1.02)
    return _finish(figure, axes, path, title)


def plot_pr_curve(series: Mapping[str, Mapping[str, Any]], path: str | os.PathLike[str], title: str) -> Path:
    """Precision against recall, one line per series of ``{"precision": [...], "recall": [...]}``.

    Points where precision or recall is ``None`` (undefined) are skipped.
    """
    figure, axes = _new_figure()
    for name, curve in series.items():
        points = [
            (recall, precision)
            for recall, precision in zip(curve["recall"], curve["precision"], strict=True)
            if recall is not None and precision is not None
        ]
        if points:
            axes.plot([r for r, _ in points], [p for _, p in points], marker=".", label=name)
    axes.set_xlabel("recall (within Hamming radius)")
    axes.set_ylabel("precision (within Hamming radius)")
    axes.set_xlim(0.0, 1.02)
    axes.set_ylim(0.0, 1.02)
    return _finish(figure, axes, path, title)


def _new_figure() -> tuple[Figure, Any]:
    figure = Figure(figsize=(6.4, 4.8), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.grid(True, alpha=0.3)
    return figure, axes


def _finish(figure: Figure, axes: Any, path: str | os.PathLike[str], title: str) -> Path:
    axes.set_title(title)
    if axes.get_legend_handles_labels()[0]:
        axes.legend(loc="best")
    figure.tight_layout()
    path = as_path(path)
    with atomic_output_path(path) as temporary:
        figure.savefig(temporary, format=path.suffix.lstrip(".") or "png")
    return path


def plot_loss_curves(series: Mapping[str, list[float]], path: str | os.PathLike[str], title: str) -> Path:
    """Training loss per epoch, one line per series (e.g. one per bit length or per loss term)."""
    figure, axes = _new_figure()
    for name, values in series.items():
        if values:
            axes.plot(range(1, len(values) + 1), values, label=name)
    axes.set_xlabel("epoch")
    axes.set_ylabel("loss")
    return _finish(figure, axes, path, title)
