"""Cached sampling: each cached layer against its ordinary forward, every cached backbone against its
forward pass while pixels arrive one by one, and cached == naive images for every backbone and head.

All exactness checks run in float64 with random weights, so that a wrong tap, a missing term or a peek at
a future pixel shows up as a difference far above rounding, and ties in the samplers are impossible.
"""
import pytest
import torch
from torch import nn

import pixelzoo
from pixelzoo.backbones.base import Backbone
from pixelzoo.backbones.pixelcnnpp import PixelCNNPP
from pixelzoo.cached import build_cached, cached_class
from pixelzoo.cached.layers import CachedConv, CachedConvTranspose, CachedGatedResnet
from pixelzoo.cached.planes import Plane
from pixelzoo.layers import (NIN, DownRightShiftedConv2d, DownRightShiftedConvTranspose2d, DownShiftedConv2d,
                             DownShiftedConvTranspose2d, GatedResnet, right_shift)
from pixelzoo.registry import get_backbone_class, get_head_class
from pixelzoo.sampling import resolve_method

IMAGE_HEADS = [h for h in pixelzoo.list_heads() if not get_head_class(h).models_codes]  # categorical: test_codes.py

TOL = 1e-10

# A tiny configuration and image size per registered backbone (a new backbone must add one here).
TINY = {
    "pixelcnnpp": (dict(nr_resnet=1, nr_filters=8), 4),
    "pixelcnnpp_dilated": (dict(nr_resnet=1, nr_filters=8, dilations=[1, 2]), 6),
    "small_plain": (dict(nr_filters=8, field=[7, 3]), 6),
    "small_nin": (dict(nr_filters=8, field=[7, 3], nin_blocks=2), 6),
    "small_archannel": (dict(nr_filters=8, field=[7, 3], channel_sets=2), 6),
}
# Backbones that deliberately have no cache (documented fallback to naive sampling): none today.
NO_CACHE: set[str] = set()


def _jitter(module: nn.Module, seed: int = 0, scale: float = 0.3) -> nn.Module:
    """Random weights: push every parameter away from its init, so that no block is close to the identity."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return module.eval()


def _model(backbone: str, head: str = "dlogistic", channels: int = 3, num_classes: int = 0, size: int | None = None,
           **overrides) -> pixelzoo.PixelZooModel:
    args, default_size = TINY[backbone]
    size = size or default_size
    m = pixelzoo.create_model(backbone=backbone, head=head, image_shape=(channels, size, size),
                              num_classes=num_classes, **{**args, **overrides})
    return _jitter(m.double())


def _plane(x: torch.Tensor, margin: int = 2, activations: bool = False) -> Plane:
    """A plane holding the channels-first map x (B, C, H, W)."""
    B, C, H, W = x.shape
    p = Plane(B, C, H, W, margin=margin, dtype=x.dtype, device=x.device, activations=activations)
    p.write(0, 0, x.permute(0, 2, 3, 1))
    return p


def _cl(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 2, 3, 1)


def _regions(H: int, W: int):
    """Every single position, every whole row, the top half, and an interior block."""
    yield from ((i, i + 1, j, j + 1) for i in range(H) for j in range(W))
    yield from ((i, i + 1, 0, W) for i in range(H))
    yield 0, H // 2, 0, W
    yield 1, H - 1, 1, W - 1


# ---------------------------------------------------------------------------------------- layers
CONVS = [
    (DownShiftedConv2d, (2, 3), 1, 1), (DownShiftedConv2d, (1, 3), 1, 1), (DownShiftedConv2d, (2, 3), 2, 1),
    (DownShiftedConv2d, (2, 3), 1, 2), (DownShiftedConv2d, (3, 5), 1, 3), (DownShiftedConv2d, (1, 1), 1, 1),
    (DownRightShiftedConv2d, (2, 2), 1, 1), (DownRightShiftedConv2d, (2, 1), 1, 1),
    (DownRightShiftedConv2d, (1, 2), 1, 1), (DownRightShiftedConv2d, (2, 2), 2, 1),
    (DownRightShiftedConv2d, (2, 2), 1, 2), (DownRightShiftedConv2d, (3, 2), 2, 3),
]


@pytest.mark.parametrize("margin", [0, 3])
@pytest.mark.parametrize("cls, kernel, stride, dilation", CONVS)
def test_cached_conv_matches_forward(cls, kernel, stride, dilation, margin):
    conv = _jitter(cls(3, 5, kernel, stride=stride, dilation=dilation).double())
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    expected = _cl(conv(x))
    cached, src = CachedConv(conv), _plane(x, margin)  # margin 0: every window takes the zero-fill path
    for r0, r1, c0, c1 in _regions(*expected.shape[1:3]):
        torch.testing.assert_close(cached.region(src, r0, r1, c0, c1), expected[:, r0:r1, c0:c1], rtol=0, atol=TOL)


def test_cached_nin_matches_forward():
    nin = _jitter(NIN(6, 4).double())
    x = torch.randn(2, 6, 5, 5, dtype=torch.float64)
    cached, src = CachedConv(nin), _plane(x)
    for r0, r1, c0, c1 in _regions(5, 5):
        torch.testing.assert_close(cached.region(src, r0, r1, c0, c1), _cl(nin(x))[:, r0:r1, c0:c1], rtol=0, atol=TOL)


@pytest.mark.parametrize("cls, kernel, stride", [
    (DownShiftedConvTranspose2d, (2, 3), 2), (DownShiftedConvTranspose2d, (3, 5), 2),
    (DownRightShiftedConvTranspose2d, (2, 2), 2), (DownRightShiftedConvTranspose2d, (3, 3), 2),
    (DownRightShiftedConvTranspose2d, (2, 2), 3),  # kernel smaller than the stride: rows of bias only
])
def test_cached_conv_transpose_matches_forward(cls, kernel, stride):
    conv = _jitter(cls(3, 4, kernel, stride=stride).double())
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    expected = _cl(conv(x))
    cached, src = CachedConvTranspose(conv), _plane(x, margin=0)
    for r0, r1, c0, c1 in _regions(*expected.shape[1:3]):
        torch.testing.assert_close(cached.region(src, r0, r1, c0, c1), expected[:, r0:r1, c0:c1], rtol=0, atol=TOL)


@pytest.mark.parametrize("num_classes", [0, 3])
@pytest.mark.parametrize("aux_planes", [0, 1, 2])
@pytest.mark.parametrize("kind, dilation", [("down", 1), ("down_right", 1), ("down", 2), ("down_right", 2),
                                            (("down_right", (1, 2)), 1)])
def test_cached_gated_resnet_matches_forward(kind, dilation, aux_planes, num_classes):
    F_, B, H, W = 4, 2, 6, 6
    block = _jitter(GatedResnet(F_, kind, aux_channels=F_ * aux_planes, num_classes=num_classes,
                                dilation=dilation).double())
    x = torch.randn(B, F_, H, W, dtype=torch.float64)
    aux = [torch.randn(B, F_, H, W, dtype=torch.float64) for _ in range(aux_planes)]
    cond = torch.eye(3, dtype=torch.float64)[[0, 2]] if num_classes else None
    expected = _cl(block(x, torch.cat(aux, dim=1) if aux else None, cond=cond))

    def make_plane(channels, values=True):
        return Plane(B, channels, H, W, margin=2, dtype=torch.float64, device="cpu", activations=True, values=values)

    cached = CachedGatedResnet(block, _plane(x, activations=True), [_plane(a, activations=True) for a in aux],
                               make_plane, cond)
    # The vertical kind is computed a row at a time, the horizontal ones pixel by pixel in raster order
    # (their hidden layer is then filled in the order the sampler fills it).
    down = kind == "down"
    for i in range(H):
        for r0, r1, c0, c1 in [(i, i + 1, 0, W)] if down else [(i, i + 1, j, j + 1) for j in range(W)]:
            cached.run(r0, r1, c0, c1)
            torch.testing.assert_close(cached.out.window(r0, r1, c0, c1), expected[:, r0:r1, c0:c1], rtol=0, atol=TOL)
    # and all at once (priming)
    bulk = CachedGatedResnet(block, _plane(x, activations=True), [_plane(a, activations=True) for a in aux],
                             make_plane, cond)
    bulk.run(0, H, 0, W)
    torch.testing.assert_close(bulk.out.interior, expected, rtol=0, atol=TOL)


def test_plane_windows_outside_the_image_are_zero():
    x = torch.randn(1, 2, 3, 4, dtype=torch.float64)
    for margin in (0, 1, 5):
        p = _plane(x, margin)
        w = p.window(-2, 5, -3, 6)  # (7, 9) around the (3, 4) image
        expected = torch.zeros(1, 7, 9, 2, dtype=torch.float64)
        expected[:, 2:5, 3:7] = _cl(x)
        assert torch.equal(w, expected)
        assert torch.equal(p.window(4, 6, 0, 2), torch.zeros(1, 2, 2, 2, dtype=torch.float64))


# ------------------------------------------------------------------------------------- backbones
def _incremental_features(backbone, x: torch.Tensor, cond, start_row: int = 0) -> torch.Tensor:
    """Features of a cached backbone filled as the sampler fills them, pixel by pixel: the canvas holds
    noise where pixels are not yet set, so reading a future pixel would show."""
    B, C, H, W = x.shape
    canvas = torch.where(torch.arange(H)[:, None] < start_row, x, torch.rand_like(x) * 2 - 1)
    state = build_cached(backbone, canvas, cond)
    state.prime(start_row)
    out = torch.zeros(B, backbone.out_features, H, W, dtype=x.dtype)
    for i in range(start_row, H):
        state.begin_row(i)
        for j in range(W):
            out[:, :, i, j] = state.features_at(i, j)
            state.set_pixel(i, j, x[:, :, i, j])
    return out


@pytest.mark.parametrize("channels, num_classes", [(1, 0), (3, 3)])
@pytest.mark.parametrize("name", sorted(TINY))
def test_cached_backbone_features_match_forward(name, channels, num_classes):
    m = _model(name, channels=channels, num_classes=num_classes, size=8)
    x = torch.rand(2, channels, 8, 8, dtype=torch.float64) * 2 - 1
    cond = m.condition(torch.tensor([0, 2]), torch.float64) if num_classes else None
    expected = m.backbone(x, cond)
    torch.testing.assert_close(_incremental_features(m.backbone, x, cond), expected, rtol=0, atol=TOL)
    for start_row in (1, 3):  # prime the rows above, then continue pixel by pixel
        got = _incremental_features(m.backbone, x, cond, start_row)
        torch.testing.assert_close(got[:, :, start_row:], expected[:, :, start_row:], rtol=0, atol=TOL)


@pytest.mark.parametrize("overrides", [dict(shortcuts=False), dict(nr_resnet=2)])
def test_cached_unet_variants_match_forward(overrides):
    m = _model("pixelcnnpp", size=8, **overrides)
    x = torch.rand(2, 3, 8, 8, dtype=torch.float64) * 2 - 1
    torch.testing.assert_close(_incremental_features(m.backbone, x, None), m.backbone(x), rtol=0, atol=TOL)


def test_cached_features_float32_agree_to_rounding():
    m = _model("pixelcnnpp", size=8).float()
    x = torch.rand(2, 3, 8, 8) * 2 - 1
    torch.testing.assert_close(_incremental_features(m.backbone, x, None), m.backbone(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", pixelzoo.list_backbones())
def test_every_backbone_has_a_cache_or_a_documented_fallback(name):
    assert name in TINY, f"add a tiny configuration for backbone {name!r} to TINY in this file"
    assert (cached_class(get_backbone_class(name)) is not None) != (name in NO_CACHE)


# -------------------------------------------------------------------------------------- sampling
@pytest.mark.parametrize("channels, num_classes", [(1, 0), (3, 3)])
@pytest.mark.parametrize("head", IMAGE_HEADS)
@pytest.mark.parametrize("name", sorted(TINY))
def test_cached_sampling_equals_naive(name, head, channels, num_classes):
    m = _model(name, head, channels, num_classes)
    labels = torch.tensor([1, 2]) if num_classes else None
    naive = m.sample(2, labels, method="naive", generator=torch.Generator().manual_seed(7))
    cached = m.sample(2, labels, method="cached", generator=torch.Generator().manual_seed(7))
    assert cached.dtype == naive.dtype == torch.uint8
    assert torch.equal(cached, naive)
    assert len(naive.unique()) > 4  # the images are not trivially constant


def test_auto_uses_the_cache_and_sampling_restores_training_mode():
    m = _model("pixelcnnpp").train()
    assert resolve_method(m, "auto") == "cached"
    a = m.sample(2, method="auto", generator=torch.Generator().manual_seed(3))
    assert m.training
    b = m.eval().sample(2, method="naive", generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)  # dropout was off while sampling in training mode
    assert m.sample(0, method="cached").shape == (0, 3, 4, 4)
    with pytest.raises(ValueError, match="unknown sampling method"):
        m.sample(1, method="fast")


class _NoCacheBackbone(Backbone):
    """A causal backbone without a cached form: features (i, j) from pixel (i, j - 1) only."""

    registry_name = "throwaway_no_cache"

    def __init__(self, in_channels: int = 3, num_classes: int = 0) -> None:
        super().__init__(in_channels, num_classes)
        self.out_features = 4
        self.mix = nn.Conv2d(in_channels, 4, 1)

    def forward(self, x, cond=None):
        return torch.tanh(right_shift(self.mix(x)))


class _UNetSubclass(PixelCNNPP):
    """A subclass may change forward, so it does not inherit the cache of its parent."""


@pytest.mark.parametrize("backbone_cls, name", [(_NoCacheBackbone, "throwaway_no_cache"),
                                                (_UNetSubclass, "_UNetSubclass")])
def test_backbone_without_cache_raises_for_cached_and_auto_falls_back(backbone_cls, name):
    m = _model("pixelcnnpp")
    m.backbone = _jitter(backbone_cls(3, 0).double()) if backbone_cls is _NoCacheBackbone else \
        _jitter(backbone_cls(3, 0, nr_resnet=1, nr_filters=8).double())
    m.proj = _jitter(NIN(m.backbone.out_features, m.head.num_params()).double())
    with pytest.raises(ValueError, match=f"backbone '{name}' has no cached sampler"):
        m.sample(1, method="cached")
    with pytest.raises(ValueError, match="has no cached sampler"):
        m.complete(torch.zeros(1, 3, 4, 4, dtype=torch.uint8), 2, method="cached")
    assert resolve_method(m, "auto") == "naive"
    auto = m.sample(2, generator=torch.Generator().manual_seed(0))
    assert torch.equal(auto, m.sample(2, method="naive", generator=torch.Generator().manual_seed(0)))


# ------------------------------------------------------------------------------------ completion
@pytest.mark.parametrize("name, num_classes", [("pixelcnnpp", 0), ("pixelcnnpp_dilated", 3), ("small_archannel", 0)])
def test_completion_keeps_rows_and_cached_equals_naive(name, num_classes):
    m = _model(name, num_classes=num_classes)
    H = m.image_shape[1]
    x = torch.randint(0, 256, (2, 3, H, H), dtype=torch.uint8)
    labels = torch.tensor([0, 1]) if num_classes else None
    for rows in (0, 3, H):
        naive = m.complete(x, rows, labels, method="naive", generator=torch.Generator().manual_seed(rows))
        cached = m.complete(x, rows, labels, method="cached", generator=torch.Generator().manual_seed(rows))
        assert cached.dtype == torch.uint8
        assert torch.equal(cached, naive)
        assert torch.equal(cached[:, :, :rows], x[:, :, :rows])
    # with no rows kept, completion is sampling
    assert torch.equal(m.complete(x, 0, labels, generator=torch.Generator().manual_seed(5)),
                       m.sample(2, labels, generator=torch.Generator().manual_seed(5)))


@pytest.mark.parametrize("rows", [-1, 9, 2.0, True])
def test_completion_rejects_bad_rows(rows):
    m = _model("pixelcnnpp", size=8)
    with pytest.raises(ValueError, match="rows must be an int"):
        m.complete(torch.zeros(1, 3, 8, 8, dtype=torch.uint8), rows)

