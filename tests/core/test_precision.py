"""core.precision: which precision and layout a device gets, and that they keep the model's output."""
import pytest
import torch

from uldl_studio.core.engine.model import ModelConfig, build_model
from uldl_studio.core.engine.precision import choose_precision, cpu_has_native_bf16

CPU = torch.device("cpu")


def test_cpu_choice_follows_the_hardware_and_the_switches():
    auto = choose_precision(CPU, amp=True, channels_last=True)
    assert auto.dtype == (torch.bfloat16 if cpu_has_native_bf16() else None)
    assert not auto.needs_scaler  # bf16 keeps fp32's exponent range: no loss scaling
    off = choose_precision(CPU, amp=False, channels_last=False)
    assert off.dtype is None and off.name == "fp32" and off.describe() == "fp32"
    assert choose_precision(CPU, amp=False, channels_last=True).describe() == "fp32, channels-last"
    if cpu_has_native_bf16():
        assert auto.describe() == "bf16 autocast, channels-last"


def test_channels_last_input_and_model():
    precision = choose_precision(CPU, amp=False, channels_last=True)
    x = torch.randn(4, 3, 16, 16)
    y = precision.prepare_input(x)
    assert y.is_contiguous(memory_format=torch.channels_last) and torch.equal(x, y)
    flat = torch.randn(4, 8)
    assert precision.prepare_input(flat) is flat  # only 4-D image batches change layout
    model = precision.prepare_model(build_model(ModelConfig(num_classes=3, in_channels=3, width=4)))
    assert model.backbone.stem[0].weight.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("amp", [False, True])
def test_layout_and_autocast_keep_the_predictions(amp):
    """The same weights give (nearly) the same softmax in every setting: bf16 differs by rounding only."""
    torch.manual_seed(0)
    reference = build_model(ModelConfig(num_classes=5, in_channels=1, width=8)).eval()
    x = torch.randn(16, 1, 48, 48)
    with torch.no_grad():
        expected = torch.softmax(reference(x)[0], -1)
        precision = choose_precision(CPU, amp=amp, channels_last=True)
        model = precision.prepare_model(build_model(ModelConfig(num_classes=5, in_channels=1, width=8)))
        model.load_state_dict(reference.state_dict())
        model.eval()
        with precision.autocast():
            logits, features = model(precision.prepare_input(x))
        got = torch.softmax(logits.float(), -1)
    tolerance = 1e-5 if precision.dtype is None else 0.05
    assert (got - expected).abs().max() < tolerance
    assert torch.allclose(got.sum(-1), torch.ones(16), atol=1e-5)
