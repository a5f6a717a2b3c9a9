"""Soft labels on other collections: class-balanced training, framing augmentations,
pretrained backbones and fine-tuning settings, per-class accuracy, predict --adapt."""
from __future__ import annotations

import hashlib
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from predict_support import TINY_RUN, demo_on_disk, train_tiny_run
from uldl_studio.core.engine import augment as A
from uldl_studio.core.engine.config import ConfigError, TrainConfig
from uldl_studio.core.engine.model import ModelConfig, PretrainedError, build_model, load_pretrained
from uldl_studio.core.table import DatasetError

pytestmark = pytest.mark.timeout(300)


# ----------------------------------------------------------------------------- class balance
def test_logit_offsets_by_hand_and_off_by_default():
    from uldl_studio.core.engine.training import _logit_offsets

    targets = torch.tensor([[1.0, 0, 0], [1, 0, 0], [1, 0, 0], [0, 1, 0]])
    assert _logit_offsets(TrainConfig(), targets) is None
    offsets = _logit_offsets(TrainConfig(class_balance="logit_adjust", class_balance_tau=0.5), targets)
    # π = (3/4, 1/4, 1e-4) renormalised; τ = ½
    pi = torch.tensor([0.75, 0.25, 1e-4])
    torch.testing.assert_close(offsets, 0.5 * torch.log(pi / pi.sum()))
    with pytest.raises(ConfigError):
        TrainConfig(class_balance="weights")
    with pytest.raises(ConfigError):
        TrainConfig(class_balance_tau=-1)


# ----------------------------------------------------------------------------- framing
def test_parse_framing():
    assert A.parse_framing("") == ()
    assert A.parse_framing("all") == A.FRAMING
    assert A.parse_framing("noise, scale") == ("scale", "noise")
    with pytest.raises(ValueError, match="zoom"):
        A.parse_framing("zoom")
    with pytest.raises(ConfigError):
        TrainConfig(framing="zoom")


def test_each_framing_augmentation_changes_images_within_range_reproducibly():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(16, 1, 24, 24, generator=g)
    for name in A.FRAMING:
        out = A.random_framing(x, torch.Generator().manual_seed(1), (name,), p=1.0)
        again = A.random_framing(x, torch.Generator().manual_seed(1), (name,), p=1.0)
        assert out.shape == x.shape and torch.equal(out, again)
        assert out.min() >= 0 and out.max() <= 1
        assert (out - x).abs().amax(dim=(1, 2, 3)).gt(1e-4).float().mean() > 0.5, name
        untouched = A.random_framing(x, torch.Generator().manual_seed(1), (name,), p=0.0)
        torch.testing.assert_close(untouched, x.clamp(0, 1))


def test_framing_off_leaves_the_default_augmentation_unchanged():
    images = torch.randint(0, 256, (8, 1, 20, 20), dtype=torch.uint8)
    plain = A.augment_batch(images, torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)
    manual = A.random_erasing(A.random_pad_crop(A.random_flip(A.to_float(images), g), g, 4), g, 0.25)
    assert torch.equal(plain, manual)
    framed = A.augment_batch(images, torch.Generator().manual_seed(3), framing=A.FRAMING)
    assert not torch.equal(plain, framed)


# ----------------------------------------------------------------------------- pretrained weights
def _torchvision_resnet18_state(seed: int = 0) -> dict:
    """A state dict with torchvision's resnet18 key names and shapes, written out by hand."""
    g = torch.Generator().manual_seed(seed)
    state = {}

    def conv(name, cout, cin, k):
        state[f"{name}.weight"] = torch.randn(cout, cin, k, k, generator=g)

    def bn(name, c):
        state[f"{name}.weight"] = torch.rand(c, generator=g)
        state[f"{name}.bias"] = torch.randn(c, generator=g)
        state[f"{name}.running_mean"] = torch.randn(c, generator=g)
        state[f"{name}.running_var"] = torch.rand(c, generator=g) + 0.5
        state[f"{name}.num_batches_tracked"] = torch.tensor(100)

    conv("conv1", 64, 3, 7)
    bn("bn1", 64)
    cin = 64
    for s, planes in enumerate([64, 128, 256, 512], start=1):
        for b in range(2):
            prefix = f"layer{s}.{b}"
            conv(f"{prefix}.conv1", planes, cin, 3)
            bn(f"{prefix}.bn1", planes)
            conv(f"{prefix}.conv2", planes, planes, 3)
            bn(f"{prefix}.bn2", planes)
            if b == 0 and s > 1:
                conv(f"{prefix}.downsample.0", planes, cin, 1)
                bn(f"{prefix}.downsample.1", planes)
            cin = planes
    state["fc.weight"] = torch.randn(1000, 512, generator=g)
    state["fc.bias"] = torch.randn(1000, generator=g)
    return state


def test_a_torchvision_resnet18_state_dict_loads_tensor_for_tensor(tmp_path):
    state = _torchvision_resnet18_state()
    path = tmp_path / "resnet18.pth"
    torch.save(state, path)
    model = build_model(ModelConfig(arch="resnet18", image_size=112, in_channels=3, num_classes=8))
    report = load_pretrained(model, str(path))
    own = model.backbone.state_dict()
    pairs = {"conv1.weight": "stem.0.weight", "bn1.running_var": "stem.1.running_var",
             "layer1.1.conv2.weight": "layers.1.conv2.weight",
             "layer2.0.downsample.0.weight": "layers.2.shortcut.0.weight",
             "layer3.0.downsample.1.running_mean": "layers.4.shortcut.1.running_mean",
             "layer4.1.bn2.bias": "layers.7.bn2.bias"}
    for theirs, ours in pairs.items():
        assert torch.equal(own[ours], state[theirs]), theirs
    assert sorted(report["ignored"]) == ["fc.bias", "fc.weight"]
    backbone_keys = [k for k in state if not k.startswith("fc.")]
    assert report["loaded"] == len(backbone_keys) == len(own)
    assert sorted(float(v.double().sum()) for k, v in state.items() if k in backbone_keys) == \
        pytest.approx(sorted(float(v.double().sum()) for v in own.values()))
    # a grey model gets the RGB stem summed over the colour channels
    grey = build_model(ModelConfig(arch="resnet18", image_size=112, in_channels=1))
    load_pretrained(grey, str(path))
    torch.testing.assert_close(grey.backbone.state_dict()["stem.0.weight"], state["conv1.weight"].sum(1, keepdim=True))


def test_weights_that_do_not_fit_are_a_clear_error(tmp_path, monkeypatch):
    path = tmp_path / "resnet18.pth"
    torch.save(_torchvision_resnet18_state(), path)
    with pytest.raises(PretrainedError, match="do not match the resnet50 backbone"):
        load_pretrained(build_model(ModelConfig(arch="resnet50", image_size=112)), str(path))
    with pytest.raises(PretrainedError, match="7×7 stem"):  # 48 px: the small-image 3×3 stem
        load_pretrained(build_model(ModelConfig(arch="resnet18", image_size=48)), str(path))
    with pytest.raises(PretrainedError, match="no such weights file"):
        load_pretrained(build_model(ModelConfig()), str(tmp_path / "nope.pth"))
    (tmp_path / "junk.pth").write_text("not weights")
    with pytest.raises(PretrainedError, match="not a PyTorch weights file"):
        load_pretrained(build_model(ModelConfig()), str(tmp_path / "junk.pth"))

    def offline(*args, **kwargs):
        raise OSError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(PretrainedError, match="cannot download .*resnet18-f37072fd.pth.*pass its path"):
        load_pretrained(build_model(ModelConfig(arch="resnet18", image_size=112)), "imagenet")
    with pytest.raises(PretrainedError, match="no ImageNet weights for arch 'compact'"):
        load_pretrained(build_model(ModelConfig()), "imagenet")


@pytest.fixture(scope="module")
def demo_table(tmp_path_factory):
    from uldl_studio.core.data.datasets import load_dataset

    return load_dataset(demo_on_disk(tmp_path_factory.mktemp("demo") / "demo", n=160, seed=1), fmt="csv")


def test_training_starts_from_the_pretrained_weights(demo_table, tmp_path):
    from uldl_studio.core.engine.run import Run

    donor = build_model(TrainConfig(**TINY_RUN, seed=7).model_config(7))
    for module in donor.modules():  # statistics unlike a fresh model's
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.normal_()
    path = tmp_path / "donor.pt"
    torch.save({"model": donor.state_dict()}, path)  # a run's checkpoint has this form
    # lr 0 and frozen BatchNorm: after one epoch the backbone still holds exactly the file's tensors
    run_dir = train_tiny_run(demo_table, tmp_path / "run", method="ce", epochs=1, lr=0.0,
                             weight_decay=0.0, freeze_bn=True, pretrained=str(path))
    trained = Run.open(run_dir).checkpoint()["model"]
    for key, value in donor.state_dict().items():
        if key.startswith("backbone."):
            assert torch.equal(trained[key], value), key
    # without the weights the same training starts elsewhere
    plain = Run.open(train_tiny_run(demo_table, tmp_path / "plain", method="ce", epochs=1, lr=0.0,
                                    weight_decay=0.0, freeze_bn=True)).checkpoint()["model"]
    assert not torch.equal(plain["backbone.stem.0.weight"], donor.state_dict()["backbone.stem.0.weight"])


def test_backbone_learning_rate_multiplier_and_frozen_batchnorm(demo_table, tmp_path):
    from uldl_studio.core.engine.run import Run

    run_dir = train_tiny_run(demo_table, tmp_path / "run", method="ce", epochs=1, backbone_lr_mult=0.1,
                             freeze_bn=True)
    ckpt = Run.open(run_dir).checkpoint()
    groups = ckpt["optimizer"]["param_groups"]
    assert [g["lr_mult"] for g in groups] == [0.1, 1.0]
    assert groups[0]["lr"] == pytest.approx(0.1 * groups[1]["lr"])
    fresh = build_model(TrainConfig(**TINY_RUN).model_config(7))
    # frozen BatchNorm: statistics and affine parameters as initialised (seeded: the same model)
    for key, value in fresh.state_dict().items():
        if key.startswith("backbone.") and (".1." in key or "bn" in key) and "running" in key:
            assert torch.equal(ckpt["model"][key], value), key


def test_cli_names_a_missing_weights_file(tmp_path):
    result = subprocess.run([sys.executable, "-m", "uldl_studio", "train", "demo", "--limit", "40", "--epochs", "1",
                             "--set", f"pretrained={tmp_path / 'missing.pth'}", "--out", str(tmp_path / "run")],
                            capture_output=True, text=True, timeout=240)
    assert result.returncode == 2
    assert "missing.pth: no such weights file" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()


# ----------------------------------------------------------------------------- per-class accuracy
def test_class_accuracy_by_hand():
    from uldl_studio.core.runs.evaluate import class_accuracy

    table = pd.DataFrame({"split": ["test"] * 5 + ["train"], "label": [0, 0, 1, 1, 1, 2],
                          "p_a": [0.9, 0.2, 0.1, 0.6, 0.1, 0.1], "p_b": [0.1, 0.8, 0.9, 0.4, 0.9, 0.1],
                          "p_c": [0.0, 0.0, 0.0, 0.0, 0.0, 0.8],
                          "ref_a": [1, 0, 0, 1, 0, 0], "ref_b": [0, 1, 1, 0, 1, 0], "ref_c": [0, 0, 0, 0, 0, 1]})
    table.attrs["classes"] = ["a", "b", "c"]
    given = class_accuracy(table, "test")
    assert given["n"].tolist() == [2, 3, 0] and given["correct"].tolist() == [1, 2, 0]
    assert given.loc["a", "accuracy"] == 0.5 and given.loc["b", "accuracy"] == pytest.approx(2 / 3)
    assert np.isnan(given.loc["c", "accuracy"])
    assert given.attrs["accuracy"] == pytest.approx(3 / 5)
    assert given.attrs["mean_class_accuracy"] == pytest.approx((0.5 + 2 / 3) / 2)
    ref = class_accuracy(table, "test", truth="reference")   # majorities a, b, b, a, b: all predicted right
    assert ref["accuracy"].tolist()[:2] == [1.0, 1.0] and ref.attrs["mean_class_accuracy"] == 1.0
    assert class_accuracy(table, None).loc["c", "accuracy"] == 1.0


# ----------------------------------------------------------------------------- predict --adapt
@pytest.fixture(scope="module")
def demo_run_dir(demo_table, tmp_path_factory):
    return train_tiny_run(demo_table, tmp_path_factory.mktemp("runs") / "run", epochs=3, augment=True)


def test_adabn_changes_a_copy_never_the_run(demo_run_dir, demo_table):
    from uldl_studio.core.runs.predict import Predictor
    from uldl_studio.core.engine.run import Run

    before = hashlib.sha1((demo_run_dir / "checkpoint.pt").read_bytes()).hexdigest()
    predictor = Predictor(Run.open(demo_run_dir), "cpu")
    original = {k: v.clone() for k, v in predictor.model.state_dict().items()}
    images = np.random.default_rng(0).integers(0, 60, size=(80, 1, 32, 32), dtype=np.uint8)  # dark images
    adapted = predictor.adapted_bn(images)
    after = adapted.model.state_dict()
    assert all(torch.equal(predictor.model.state_dict()[k], v) for k, v in original.items())
    assert not torch.equal(after["backbone.stem.1.running_mean"], original["backbone.stem.1.running_mean"])
    for k, v in original.items():
        if "running" not in k and "num_batches" not in k:
            assert torch.equal(after[k], v), k   # parameters untouched
    # the stem's BatchNorm now holds the statistics of the dark images' first convolution
    with torch.no_grad():
        from uldl_studio.core.engine.augment import to_float

        conv = adapted.model.backbone.stem[0](to_float(torch.as_tensor(images)).contiguous())
    torch.testing.assert_close(after["backbone.stem.1.running_mean"], conv.mean((0, 2, 3)), atol=1e-4, rtol=1e-3)
    assert hashlib.sha1((demo_run_dir / "checkpoint.pt").read_bytes()).hexdigest() == before


def test_predict_adapt_on_the_command_line(demo_run_dir, tmp_path):
    from uldl_studio.core.runs.predict import read_predictions

    out = tmp_path / "p.csv"
    result = subprocess.run([sys.executable, "-m", "uldl_studio", "predict", str(demo_run_dir), "demo", "--limit",
                             "200", "--adapt", "priors", "--adapt", "bn", "--out", str(out)],
                            capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr
    assert "BatchNorm statistics re-estimated" in result.stdout
    assert "class priors (em, 200 rows)" in result.stdout
    assert result.stdout.count(" source ") == 7 and result.stdout.count(" estimated ") == 7
    frame = read_predictions(out)
    applied = set(frame["adapted"])
    assert len(applied) == 1 and applied <= {"bn", "bn+priors"}
    assert ("bn+priors" in applied) == ("class priors (em, 200 rows): applied" in result.stdout)
    plain = tmp_path / "plain.csv"
    subprocess.run([sys.executable, "-m", "uldl_studio", "predict", str(demo_run_dir), "demo", "--limit", "20",
                    "--out", str(plain)], check=True, capture_output=True, timeout=240)
    assert "adapted" not in read_predictions(plain)


def test_prior_adaptation_follows_a_collection_of_one_class(demo_run_dir, tmp_path):
    from uldl_studio.core.data.image_collection import read_collection
    from uldl_studio.core.runs.predict import PredictOptions, Predictor, predict_collection
    from uldl_studio.core.engine.run import Run

    predictor = Predictor(Run.open(demo_run_dir), "cpu")
    collection = read_collection("demo", limit=3000)
    table = collection.table
    happy = table[table["source_label"] == "happiness"].reset_index(drop=True)
    collection.table = happy
    plain = predict_collection(predictor, collection, PredictOptions())
    adapted = predict_collection(predictor, collection, PredictOptions(adapt=("priors",)))
    shift = adapted.summary.prior_shift
    j = predictor.classes.index("happiness")
    gain = np.asarray(shift.target_priors) - np.asarray(shift.source_priors)
    # the collection's one class gains (the tiny model also confuses it with another, which gains
    # too; the Dirichlet prior's 100 pseudo-counts hold both back)
    assert shift.applied and gain[j] > 0.02
    assert adapted.summary.accuracy >= plain.summary.accuracy
    with pytest.raises(DatasetError, match="adapt sharpen"):
        PredictOptions(adapt=("sharpen",))
