"""core.model and core.augment: shapes, sizes, determinism."""
import pytest
import torch

from uldl_studio.core.engine.augment import augment_batch, random_erasing, random_flip, random_pad_crop
from uldl_studio.core.engine.model import ModelConfig, build_model

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize("size,channels", [(48, 1), (64, 3), (112, 1)])
def test_compact_shapes(size, channels):
    torch.manual_seed(0)
    model = build_model(ModelConfig(num_classes=7, in_channels=channels, image_size=size, calib_hidden=[32, 16]))
    logits, feats = model(torch.randn(2, channels, size, size))
    assert logits.shape == (2, 7)
    assert feats.shape == (2, model.feature_dim) and model.feature_dim == 64  # width 16 · 2²
    zeta = model.zeta(feats, feats[:, None, :].repeat(1, 8, 1))
    assert zeta.shape == (2, 8) and ((zeta > 0) & (zeta < 1)).all()


def test_compact_is_small_and_width_configurable():
    small = build_model(ModelConfig(width=8, stages=2, blocks=1, calib_hidden=[16]))
    default = build_model(ModelConfig())
    count = lambda m: sum(p.numel() for p in m.backbone.parameters())  # noqa: E731
    assert small.feature_dim == 16
    assert count(small) < count(default) < 1_000_000


def test_calibration_mlp_published_layout():
    model = build_model(ModelConfig())
    linears = [m for m in model.calibration.net if isinstance(m, torch.nn.Linear)]
    assert [(l.in_features, l.out_features) for l in linears] == [(128, 512), (512, 256), (256, 1)]
    assert sum(isinstance(m, torch.nn.BatchNorm1d) for m in model.calibration.net) == 2


def test_resnet18_option():
    model = build_model(ModelConfig(arch="resnet18", image_size=48, calib_hidden=[8]))
    assert model.feature_dim == 512
    n = sum(p.numel() for p in model.backbone.parameters())
    assert 10_000_000 < n < 12_000_000  # ResNet-18 has ~11.2 M backbone weights
    model.eval()
    with torch.no_grad():
        logits, _ = model(torch.randn(1, 1, 48, 48))
    assert logits.shape == (1, 7)
    big = build_model(ModelConfig(arch="resnet18", image_size=112, in_channels=3, calib_hidden=[8])).eval()
    with torch.no_grad():
        assert big(torch.randn(1, 3, 112, 112))[0].shape == (1, 7)


def test_bad_arch():
    with pytest.raises(ValueError, match="arch"):
        build_model(ModelConfig(arch="vgg"))


def test_augment_seeded_and_shape_preserving():
    images = torch.randint(0, 256, (6, 1, 48, 48), dtype=torch.uint8)
    a = augment_batch(images, torch.Generator().manual_seed(3))
    b = augment_batch(images, torch.Generator().manual_seed(3))
    c = augment_batch(images, torch.Generator().manual_seed(4))
    assert a.shape == (6, 1, 48, 48) and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_flip_crop_erase_semantics():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    flipped = random_flip(x, torch.Generator().manual_seed(0), p=1.0)
    assert torch.equal(flipped, x.flip(-1))
    assert torch.equal(random_flip(x, torch.Generator(), p=0.0), x)
    crops = random_pad_crop(x.repeat(50, 1, 1, 1), torch.Generator().manual_seed(0), pad=1)
    # every crop is a shifted window: its interior values come from x
    assert crops.shape == (50, 1, 4, 4)
    assert any(torch.equal(c[0], x[0, 0]) for c in crops)
    assert set(crops.unique().tolist()) <= set(range(16)) | {0}
    ones = torch.ones(20, 1, 8, 8)
    erased = random_erasing(ones, torch.Generator().manual_seed(0), p=1.0)
    assert ((erased == 0).flatten(1).sum(1) > 0).all()
    assert torch.equal(random_erasing(ones, torch.Generator(), p=0.0), ones)
