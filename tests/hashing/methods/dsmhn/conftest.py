"""Tiny synthetic video collection: coloured squares moving left or right over noise.

A "right" clip is a "left" trajectory played backwards, so the set of frames says nothing about the
direction: only frame order does (what a per-frame mean-pooled stream cannot see).
"""

import numpy as np
import pytest

COLOURS = {"red": (230, 30, 30), "green": (30, 200, 40), "blue": (40, 70, 240)}
LABELS = ["colour:red", "colour:green", "colour:blue", "motion:left", "motion:right"]
WORDS = {"left": ("moves left", "slides to the left"), "right": ("moves right", "slides to the right")}


def moving_squares(n: int, seed: int, size: int = 16, frames: int = 4):
    """uint8 clips [n, frames, size, size, 3], captions, bool labels [n, 5] (colour and direction balanced)."""
    rng = np.random.default_rng(seed)
    clips = np.empty((n, frames, size, size, 3), dtype=np.uint8)
    captions, labels = [], np.zeros((n, len(LABELS)), dtype=bool)
    colour_names = list(COLOURS)
    for i in range(n):
        colour = colour_names[i % 3]
        direction = ("left", "right")[(i // 3) % 2]
        background = rng.integers(0, 70, size=(size, size, 3), dtype=np.uint8)
        y, x0, speed, side = int(rng.integers(0, size - 5)), int(rng.integers(9, size - 4)), int(rng.integers(2, 4)), 4
        trajectory = []
        for t in range(frames):
            frame = background.copy()
            x = max(0, x0 - speed * t)
            frame[y : y + side, x : x + side] = COLOURS[colour]
            trajectory.append(frame)
        if direction == "right":
            trajectory.reverse()
        clips[i] = np.stack(trajectory)
        captions.append(f"a {colour} square {WORDS[direction][int(rng.integers(2))]}")
        labels[i, [LABELS.index(f"colour:{colour}"), LABELS.index(f"motion:{direction}")]] = True
    return clips, captions, labels


@pytest.fixture(scope="session")
def squares_train():
    return moving_squares(24, seed=0)


@pytest.fixture(scope="session")
def squares_test():
    return moving_squares(12, seed=1)


def tiny_config(**overrides):
    from hashing.methods.dsmhn import DsmhnConfig, build_vocabulary

    captions = moving_squares(24, seed=0)[1]
    settings = dict(n_bits=16, labels=LABELS, vocabulary=build_vocabulary(captions), frame_size=16,
                    frames_per_clip=4, width=8, text_hidden=32, dropout=0.0)
    settings.update(overrides)
    return DsmhnConfig(**settings)


def tiny_options(**overrides):
    from hashing.methods.dsmhn import DsmhnTrainOptions

    settings = dict(epochs=25, batch_size=8, device="cpu", seed=0, augment_shift=1)
    settings.update(overrides)
    return DsmhnTrainOptions(**settings)


@pytest.fixture(scope="session")
def make_config():
    """Factory of tiny DsmhnConfigs (16 bits, 16x16 frames, 4 frames per clip)."""
    return tiny_config


@pytest.fixture(scope="session")
def make_options():
    """Factory of short, deterministic CPU training options."""
    return tiny_options


@pytest.fixture(scope="session")
def trained_tiny(squares_train):
    from hashing.methods.dsmhn import train_dsmhn

    clips, captions, labels = squares_train
    return train_dsmhn(clips, captions, labels, tiny_config(), tiny_options())
