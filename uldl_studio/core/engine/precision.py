"""Numeric precision and memory layout of the forward pass: one place that decides.

- Mixed precision (``TrainConfig.amp``, on by default) is used only where the hardware does it
  natively: on CUDA (bf16 where supported, else fp16 with a GradScaler) and on CPUs with native
  bf16 matrix units (Intel AMX or AVX512-BF16). Elsewhere bf16 is emulated and slower than
  fp32, so the pass stays fp32. Weights, optimiser state, the λ parameters, BatchNorm and the
  losses stay fp32 in every case (autocast only lowers the convolutions and linear layers).
- Channels-last layout (``TrainConfig.channels_last``): oneDNN and cuDNN convolutions run
  faster on NHWC tensors (measured with ``bench/cpu_speed.py``).
"""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from functools import lru_cache
from typing import ContextManager

import torch


@lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """True when this CPU multiplies bf16 in hardware (AMX-BF16 or AVX512-BF16)."""
    try:
        caps = torch.cpu.get_capabilities()
    except Exception:  # noqa: BLE001 - older torch or an unknown CPU: assume no
        return False
    return bool(caps.get("amx_bf16") or caps.get("avx512_bf16"))


@dataclass(frozen=True)
class Precision:
    """How to run the forward pass on one device."""

    dtype: torch.dtype | None          # autocast dtype, None for plain fp32
    device_type: str
    channels_last: bool

    @property
    def name(self) -> str:
        return "fp32" if self.dtype is None else {torch.bfloat16: "bf16", torch.float16: "fp16"}[self.dtype]

    def describe(self) -> str:
        """For progress messages, e.g. ``"bf16 autocast, channels-last"``."""
        parts = ["fp32" if self.dtype is None else f"{self.name} autocast"]
        if self.channels_last:
            parts.append("channels-last")
        return ", ".join(parts)

    @property
    def needs_scaler(self) -> bool:
        """fp16 gradients underflow without loss scaling; bf16 has fp32's range."""
        return self.dtype == torch.float16

    def autocast(self) -> ContextManager:
        if self.dtype is None:
            return nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def prepare_model(self, model: torch.nn.Module) -> torch.nn.Module:
        return model.to(memory_format=torch.channels_last) if self.channels_last else model

    def prepare_input(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last and x.dim() == 4 else x


def choose_precision(device: torch.device, amp: bool = True, channels_last: bool = True) -> Precision:
    """The fastest precision this device does natively (fp32 when ``amp`` is False)."""
    dtype = None
    if amp and device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    elif amp and device.type == "cpu" and cpu_has_native_bf16():
        dtype = torch.bfloat16
    return Precision(dtype=dtype, device_type=device.type, channels_last=bool(channels_last))
