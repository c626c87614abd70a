"""The contract every likelihood head keeps, and the numeric helpers heads share."""
from __future__ import annotations

import contextlib
import math
from typing import Any, ClassVar, Iterator

import torch
from torch import nn

__all__ = ["Head", "levels_to_unit", "unit_to_levels", "uniform", "log1mexp", "float_params", "check_temperature"]


def levels_to_unit(x: torch.Tensor, bits: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Map integer levels ``k`` in ``[0, 2**bits)`` to ``2k / (2**bits - 1) - 1`` in ``[-1, 1]``.

    Level 0 maps to exactly -1 and the top level to exactly +1, which the heads use to find the edge bins.
    """
    return x.to(dtype) * (2.0 / (2**bits - 1)) - 1.0


def unit_to_levels(y: torch.Tensor, bits: int) -> torch.Tensor:
    """Nearest integer level of a value in model space, clamped into ``[0, 2**bits)``; returns int64."""
    top = 2**bits - 1
    return torch.round((y + 1.0) * (top / 2.0)).clamp_(0, top).to(torch.int64)


def uniform(shape: tuple[int, ...], like: torch.Tensor, generator: torch.Generator | None,
            low: float = 0.0, high: float = 1.0) -> torch.Tensor:
    """``U(low, high)`` noise drawn from ``generator`` (on its own device), returned on ``like``'s device/dtype."""
    device = generator.device if generator is not None else like.device
    u = torch.rand(shape, generator=generator, device=device, dtype=torch.float64 if like.dtype == torch.float64
                   else torch.float32)
    return (low + (high - low) * u).to(device=like.device, dtype=like.dtype)


def log1mexp(d: torch.Tensor) -> torch.Tensor:
    """``log(1 - exp(-d))`` for ``d > 0``, accurate at both ends (Maechler 2012: switch at ln 2).

    Each branch only ever sees inputs on its own side of ln 2: torch.where evaluates both, and an infinite
    derivative in the untaken branch (log1p(-1) at tiny d) would turn the zero gradient it gets into NaN.
    """
    small = d < math.log(2.0)
    d_small = torch.where(small, d, torch.ones_like(d))
    d_large = torch.where(small, torch.ones_like(d), d)
    return torch.where(small, torch.log(-torch.expm1(-d_small)), torch.log1p(-torch.exp(-d_large)))


def check_temperature(temperature: Any) -> float:
    """A sampling temperature: a finite number > 0 (1 is the model itself)."""
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not math.isfinite(temperature) \
            or temperature <= 0:
        raise ValueError(f"temperature must be a finite number > 0 (1 samples the model itself; smaller values "
                         f"approach each conditional's mode), got {temperature!r}")
    return float(temperature)


def inverse_cdf_sample(logits: torch.Tensor, generator: torch.Generator | None,
                       temperature: float = 1.0) -> torch.Tensor:
    """One draw per position from ``softmax(logits / T)`` over dim 1, by inverse CDF in float64 with one uniform
    per position (T = 1: the logits as they are; T -> 0: their argmax).

    Shape:
        logits: (B, K, H, W) -> (B, H, W) int64 in [0, K)
    """
    logits = logits.double()
    if temperature != 1.0:
        logits = logits / temperature
    cdf = torch.softmax(logits, dim=1).cumsum(dim=1)
    B, _, H, W = logits.shape
    u = uniform((B, H, W), cdf, generator)
    # Count the levels whose CDF lies below u·total: scaling by the total (≈ 1 up to rounding) keeps the result
    # < K and never picks a zero-probability level.
    return (cdf < (u * cdf[:, -1])[:, None]).sum(dim=1)


@contextlib.contextmanager
def _no_autocast(device_type: str) -> Iterator[None]:
    with torch.autocast(device_type=device_type, enabled=False):
        yield


def float_params(params: torch.Tensor) -> torch.Tensor:
    """Likelihoods run in float32 or better even when the network ran in bf16/fp16."""
    return params if params.dtype == torch.float64 else params.float()


class Head(nn.Module):
    """A normalized distribution over the ``2**bits`` levels of every sub-pixel, given per-pixel parameters.

    Channels are modelled with whole-pixel conditioning: channel ``c`` may depend on channels ``< c`` of the
    same pixel (R, then G given R, then B given R and G), all from one network output.

    Subclasses implement :meth:`num_params`, :meth:`_nll` and :meth:`_sample`; this base class validates
    shapes and turns autocast off so the likelihood is always computed in float32 or float64.

    Attributes:
        exact: ``True`` when :meth:`nll` is the exact discrete negative log-likelihood; ``False`` when it is
            a variational upper bound (dequantized continuous heads).
    """

    exact: ClassVar[bool] = True
    models_codes: ClassVar[bool] = False  # True: unordered discrete codes (model num_codes), not intensities
    registry_name: ClassVar[str] = ""
    max_bits: ClassVar[int] = 16

    def __init__(self, channels: int, bits: int = 8) -> None:
        super().__init__()
        if not isinstance(channels, int) or channels < 1:
            raise ValueError(f"channels must be a positive int, got {channels!r}")
        if not isinstance(bits, int) or not 1 <= bits <= self.max_bits:
            raise ValueError(f"{type(self).__name__} supports bits in 1..{self.max_bits}, got {bits!r}")
        self.channels = channels
        self.bits = bits

    @property
    def levels(self) -> int:
        return 2**self.bits

    def num_params(self, channels: int | None = None) -> int:
        """Number of network outputs per pixel position for ``channels`` (default: this head's)."""
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"channels={self.channels}, bits={self.bits}"

    def _check(self, params: torch.Tensor, x: torch.Tensor | None = None) -> None:
        P = self.num_params()
        if params.dim() != 4 or params.shape[1] != P:
            raise ValueError(f"{type(self).__name__} expects params of shape (B, {P}, H, W), "
                             f"got {tuple(params.shape)}")
        if x is not None:
            B, _, H, W = params.shape
            if tuple(x.shape) != (B, self.channels, H, W):
                raise ValueError(f"{type(self).__name__} expects x of shape {(B, self.channels, H, W)} to match "
                                 f"params {tuple(params.shape)}, got {tuple(x.shape)}")
            if x.dtype.is_floating_point or x.dtype == torch.bool:
                raise ValueError(f"x must hold integer levels, got dtype {x.dtype}")

    def nll(self, params: torch.Tensor, x: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """Negative log-likelihood in nats per pixel position, channels summed.

        Shape:
            params: (B, P, H, W) any float dtype; x: (B, C, H, W) integer levels -> (B, H, W) float32/64
        """
        self._check(params, x)
        with _no_autocast(params.device.type):
            return self._nll(float_params(params), x, generator=generator)

    def nll_map(self, params: torch.Tensor, x: torch.Tensor, *,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """Nats of every sub-pixel given everything before it: channel c of a pixel given channels < c.

        Sums over channels to :meth:`nll` (to float rounding). For a bound head (``exact = False``) the terms
        are the bound's per-sub-pixel parts, drawn with the same ``generator`` in the same order as :meth:`nll`.

        Shape:
            params: (B, P, H, W); x: (B, C, H, W) integer levels -> (B, C, H, W) float32/64
        """
        self._check(params, x)
        with _no_autocast(params.device.type):
            return self._nll_map(float_params(params), x, generator=generator)

    @torch.no_grad()
    def sample(self, params: torch.Tensor, *, generator: torch.Generator | None = None,
               temperature: float = 1.0) -> torch.Tensor:
        """Draw integer levels, sequentially over channels inside each pixel, from one network output.

        ``temperature`` T sharpens (T < 1) or flattens (T > 1) each conditional as the head defines it (see
        its docstring); T = 1 draws from the model itself, exactly as without the argument.

        Shape:
            params: (B, P, H, W) -> (B, C, H, W) int64 in [0, 2**bits)
        """
        self._check(params)
        temperature = check_temperature(temperature)
        with _no_autocast(params.device.type):
            return self._sample(float_params(params), generator=generator, temperature=temperature)

    def _nll(self, params: torch.Tensor, x: torch.Tensor, *, generator: torch.Generator | None) -> torch.Tensor:
        raise NotImplementedError

    def _sample(self, params: torch.Tensor, *, generator: torch.Generator | None,
                temperature: float = 1.0) -> torch.Tensor:
        raise NotImplementedError

    def _nll_map(self, params: torch.Tensor, x: torch.Tensor, *, generator: torch.Generator | None) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} has no per-sub-pixel NLL map")
