"""Helpers of the predict tests: tiny runs trained on images on disk, image files of every kind."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from PIL import Image

# A network and input small enough that an epoch takes a second or two on one CPU thread.
TINY_RUN = dict(image_size=32, width=8, stages=2, blocks=1, calib_hidden=[16], batch_size=32, progress_every=5,
                augment=False, device="cpu", k=4, num_threads=1, epochs=2)


def train_tiny_run(table, run_dir: Path, **overrides) -> Path:
    from uldl_studio.core.engine.config import TrainConfig
    from uldl_studio.core.engine.run import Run
    from uldl_studio.core.engine.training import fit

    config = TrainConfig(**{**TINY_RUN, **overrides})
    Run.create(run_dir, config, table)
    for _ in fit(table, config, run_dir):
        pass
    return run_dir


def demo_on_disk(folder: Path, n: int = 200, seed: int = 0, size: int = 48) -> Path:
    """The demo written in the generic CSV layout; returns labels.csv."""
    from uldl_studio.core.data.datasets.demo import write_demo

    return write_demo(folder, n=n, seed=seed, size=size)


def write_image(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, np.uint8)).save(path)
    return path


def copy_images(sources, folder: Path, names=None) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i, src in enumerate(sources):
        target = folder / (names[i] if names else f"img_{i:03d}{Path(src).suffix}")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, target)
        out.append(target)
    return out
