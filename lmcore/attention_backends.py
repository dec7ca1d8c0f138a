"""Scaled-dot-product-attention backends for work over sequences of many lengths.

On Hopper GPUs PyTorch's SDPA dispatcher prefers cuDNN attention for bf16 / fp16 inputs, and cuDNN builds an
execution graph for every new (batch, heads, length) shape, hundreds of milliseconds each. GrAInS extraction, MC
scoring, the CAP teacher and generation meet a new length with nearly every example (generation with a KV cache:
every token, inferred, not measured), so they pay that build again and again: measured on an H200, bf16 extraction
took 1.11 s per example against 0.16 s in fp32, bf16 MC scoring 3.7x the time (README, "GPU benchmark").
``variable_length_attention`` turns cuDNN attention off and keeps whichever of flash, memory-efficient and math
attention the caller has enabled; fp32 never used cuDNN, so it is unchanged there, and on a CPU nothing changes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel


def _enabled_without_cudnn() -> list[SDPBackend]:
    cuda = torch.backends.cuda
    flags = ((SDPBackend.FLASH_ATTENTION, cuda.flash_sdp_enabled()),
             (SDPBackend.EFFICIENT_ATTENTION, cuda.mem_efficient_sdp_enabled()),
             (SDPBackend.MATH, cuda.math_sdp_enabled()))  # fmt: skip
    return [backend for backend, on in flags if on] or [SDPBackend.MATH]


@contextmanager
def variable_length_attention() -> Iterator[None]:
    """SDPA without cuDNN attention (no per-shape graph builds), the caller's other backend choices kept; the flags
    are restored on exit. Also a decorator: ``@variable_length_attention()``."""
    with sdpa_kernel(_enabled_without_cudnn()):
        yield
