import numpy as np
from matplotlib.image import imread

from hashing.plots import plot_loss_curves, plot_pr_curve, plot_precision_at_k

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_plot_precision_at_k_writes_png_atomically(tmp_path):
    path = plot_precision_at_k(
        {"hash 64b": {1: 0.9, 10: 0.8, 100: 0.6}, "float": {"1": 1.0, "10": 0.95, "100": None}},
        tmp_path / "plots" / "p_at_k.png",
        "P@K",
    )
    assert path == tmp_path / "plots" / "p_at_k.png"
    assert path.read_bytes().startswith(PNG_SIGNATURE)
    assert [p.name for p in path.parent.iterdir()] == ["p_at_k.png"]  # no temporary left behind
    image = imread(path)
    assert image.shape[:2] == (480, 640)
    assert image[..., :3].std() > 0.05  # something was drawn


def test_plot_pr_curve_skips_undefined_points(tmp_path):
    curve = {"radius": [0, 1, 2], "precision": [None, 0.8, 0.5], "recall": [0.0, 0.4, 1.0]}
    path = plot_pr_curve({"lsh": curve, "itq": curve}, tmp_path / "pr.png", "PR within Hamming radius")
    assert path.read_bytes().startswith(PNG_SIGNATURE)
    first = path.read_bytes()
    plot_pr_curve({"lsh": curve}, path, "replaced")  # overwrite in place
    assert path.read_bytes() != first
    assert np.asarray(imread(path)).ndim == 3


def test_plot_loss_curves_writes_png(tmp_path):
    path = plot_loss_curves({"64 bits": [3.0, 2.0, 1.5], "empty": []}, tmp_path / "loss.png", "training loss")
    assert path.read_bytes().startswith(PNG_SIGNATURE)
