"""Training from the decoded-image cache through DataLoader workers equals training from memory."""
from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest
import torch

from uldl_studio.core.engine.batches import ArrayImages, iterate_batches
from uldl_studio.core.engine.config import ConfigError, TrainConfig
from uldl_studio.core.data.datasets.demo import read_demo, write_demo
from uldl_studio.core.data.image_cache import open_cached_images
from uldl_studio.core.data.images import load_readable_images
from uldl_studio.core.engine.run import load_checkpoint
from uldl_studio.core.engine.training import checkpoint_digest, fit

CONFIG = TrainConfig(image_size=16, width=8, stages=2, blocks=1, calib_hidden=[16], batch_size=32, device="cpu",
                     k=4, num_threads=1, epochs=2, va="circumplex")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    folder = tmp_path_factory.mktemp("demo")
    write_demo(folder, n=240, seed=3)
    return read_demo(folder)


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("ULDL_STUDIO_CACHE", str(tmp_path / "cache"))


def test_batches_from_the_cache_equal_those_from_memory_with_and_without_workers(dataset):
    table, cached = open_cached_images(dataset, 16, 1)
    _, in_memory = load_readable_images(dataset, 16, 1)
    rng = np.random.default_rng(0)
    batches = [rng.permutation(len(table))[:37] for _ in range(5)] + [np.array([5, 5, 4, 3])]
    expected = [torch.as_tensor(in_memory[b]) for b in batches]
    for workers in (0, 2):
        got = list(iterate_batches(cached, batches, device=torch.device("cpu"), workers=workers))
        assert len(got) == len(expected)
        for g, e in zip(got, expected):
            assert g.dtype == torch.uint8 and torch.equal(g, e)
    got = list(iterate_batches(ArrayImages(in_memory), batches, device=torch.device("cpu")))
    assert all(torch.equal(g, e) for g, e in zip(got, expected))


def test_training_from_the_cache_with_loader_workers_equals_training_from_memory(dataset, tmp_path):
    runs = {}
    for name, config in (("memory", dataclasses.replace(CONFIG, image_cache=False)),
                         ("cache", dataclasses.replace(CONFIG, image_cache=True, loader_workers=2))):
        progress = list(fit(dataset, config, tmp_path / name))
        assert progress[-1].phase == "done"
        runs[name] = tmp_path / name
    assert list((tmp_path / "cache" / "images").iterdir()), "the cached run did not use the cache"
    a, b = load_checkpoint(runs["memory"]), load_checkpoint(runs["cache"])
    assert checkpoint_digest(a) == checkpoint_digest(b)
    assert (runs["memory"] / "samples.csv").read_bytes() == (runs["cache"] / "samples.csv").read_bytes()


def test_loader_workers_must_not_be_negative():
    with pytest.raises(ConfigError, match="loader_workers"):
        TrainConfig(loader_workers=-1)


def test_the_cuda_loader_settings_work_on_a_cpu_only_machine(dataset):
    """On CUDA the loader uses worker processes and pinned memory; without a GPU PyTorch skips
    the pinning, and the batches are still the right ones."""
    from uldl_studio.core.engine.batches import default_workers

    cuda = torch.device("cuda")
    assert default_workers(cuda) >= 1 and default_workers(torch.device("cpu")) == 0
    _, cached = open_cached_images(dataset, 16, 1)
    batches = [np.arange(0, 40), np.arange(100, 37, -3)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "pin_memory ... no accelerator is found"
        got = list(iterate_batches(cached, batches, device=cuda, workers=1))
    assert all(torch.equal(g, torch.as_tensor(cached.read(b))) for g, b in zip(got, batches))
