"""Exact causality of every registered backbone and preset, and measured field == declared field.

Everything runs in float64, eval mode (dropout off), on tiny widths: every registered backbone at 16x16
(both with and without class conditioning), every preset at 8x8 (its own structural arguments, such as
``field``, ``dilations`` or ``shortcuts``, kept; 8x8 keeps the sweep cheap). The dependence of each
output position is measured here with autograd, independently of ``pixelzoo.receptive_field``: each
batch element b gets the gradient of a random combination of the outputs at its own position (i_b, j_b),
so one backward pass gives the dependence of every position. Causality is also checked without
autograd: perturbing every pixel at or after (i, j) must leave output (i, j) bit-for-bit unchanged.
"""
import functools

import pytest
import torch

import pixelzoo
from pixelzoo.registry import accepted_args, get_backbone_class, get_head_class

BACKBONE_SIZE, PRESET_SIZE = 16, 8
TINY_BACKBONE = dict(nr_filters=4, nr_resnet=1)
TINY_HEAD = dict(num_mixtures=1)


def tiny_overrides(backbone: str, head: str) -> dict:
    b_ok = accepted_args(get_backbone_class(backbone), ("in_channels", "num_classes"))
    h_ok = accepted_args(get_head_class(head), ("channels", "bits"))
    out = {k: v for k, v in TINY_BACKBONE.items() if b_ok is None or k in b_ok}
    out.update({k: v for k, v in TINY_HEAD.items() if h_ok is None or k in h_ok})
    return out


def tiny_preset(name: str, num_classes: int, size: int = PRESET_SIZE):
    preset = pixelzoo.get_preset(name)
    C = preset.image_shape[0]
    return pixelzoo.create_model(name, image_shape=(C, size, size), num_classes=num_classes,
                                 **tiny_overrides(preset.backbone, preset.head))


def tiny_backbone_model(backbone: str, channels: int, num_classes: int, size: int = BACKBONE_SIZE):
    return pixelzoo.create_model(backbone=backbone, head="dlogistic", image_shape=(channels, size, size),
                                 num_classes=num_classes, **tiny_overrides(backbone, "dlogistic"))


def prepare(model):
    model = model.double().eval()
    C, H, W = model.image_shape
    positions = torch.tensor([(i, j) for i in range(H) for j in range(W)])
    gen = torch.Generator().manual_seed(0)
    x = torch.rand((1, C, H, W), generator=gen, dtype=torch.float64) * 2 - 1
    x = x.expand(len(positions), C, H, W).clone()
    cond = None
    if model.num_classes:
        labels = torch.arange(len(positions)) % model.num_classes
        cond = torch.nn.functional.one_hot(labels, model.num_classes).double()
    return model, positions, x, cond


def measured_dependence(model, positions, x, cond) -> tuple[torch.Tensor, torch.Tensor]:
    """(H, W, H, W) bool: [i, j] = input pixels (any channel) whose gradient at output (i, j) is non-zero;
    and the outputs (B, P, H, W)."""
    H, W = x.shape[-2:]
    x = x.clone().requires_grad_(True)
    out = model.params_from_unit(x, cond)
    weights = torch.randn(out.shape[1], generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    picked = out[torch.arange(len(positions)), :, positions[:, 0], positions[:, 1]]
    (grad,) = torch.autograd.grad((picked * weights).sum(), x)
    return (grad != 0).any(dim=1).reshape(H, W, H, W), out.detach()


@functools.lru_cache(maxsize=None)
def not_before(H: int, W: int) -> torch.Tensor:
    """[i, j, p, q] True iff (p, q) is (i, j) or comes after it in raster order (explicit loops)."""
    return torch.tensor([[[[(p, q) >= (i, j) for q in range(W)] for p in range(H)] for j in range(W)]
                         for i in range(H)])


@torch.no_grad()
def assert_future_perturbation_invisible(model, positions, x, cond, base):
    future = not_before(*x.shape[-2:])[positions[:, 0], positions[:, 1]][:, None]  # (B, 1, H, W)
    noise = torch.rand(x.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64) * 2 - 1
    moved = model.params_from_unit(torch.where(future, noise, x), cond)
    idx = torch.arange(len(positions))
    changed = (base[idx, :, positions[:, 0], positions[:, 1]] != moved[idx, :, positions[:, 0], positions[:, 1]])
    changed = changed.any(dim=1)
    assert not changed.any(), f"outputs at {positions[changed][:5].tolist()} change with their own or later pixels"


def check(model):
    model, positions, x, cond = prepare(model)
    H, W = x.shape[-2:]
    field, out = measured_dependence(model, positions, x, cond)
    leaks = field & not_before(H, W)
    assert not leaks.any(), f"{int(leaks.flatten(2).any(-1).sum())} output positions depend on current/later pixels"
    assert not field[0, 0].any() and field[H - 1, W - 1].any()  # the first pixel sees nothing
    assert_future_perturbation_invisible(model, positions, x, cond, out)
    try:
        declared = pixelzoo.declared_receptive_field(model, H, W)
    except NotImplementedError:
        return
    differ = field ^ declared
    assert not differ.any(), (f"measured != declared at {int(differ.flatten(2).any(-1).sum())} positions, "
                              f"e.g. {differ.flatten(2).any(-1).nonzero()[:3].tolist()}")


@pytest.mark.parametrize("num_classes", [0, 3])
@pytest.mark.parametrize("name", pixelzoo.list_models())
def test_every_preset_is_exactly_causal(name, num_classes):
    check(tiny_preset(name, num_classes))


@pytest.mark.parametrize("channels, num_classes", [(1, 0), (3, 3)])
@pytest.mark.parametrize("backbone", pixelzoo.list_backbones())
def test_every_backbone_is_exactly_causal(backbone, channels, num_classes):
    check(tiny_backbone_model(backbone, channels, num_classes))


@pytest.mark.parametrize("leak", ["autograd", "perturbation"])
def test_a_leaky_network_is_caught(leak):
    # The checker itself can fail: a backbone that sees its own pixel is caught by each method.
    model, positions, x, cond = prepare(tiny_backbone_model("small_plain", 3, 0, size=8))
    real = model.backbone.forward
    model.backbone.forward = lambda x, cond=None: real(x, cond) + x.sum(dim=1, keepdim=True)
    with pytest.raises(AssertionError, match="current/later pixels|their own or later"):
        if leak == "autograd":
            check(model)
        else:
            assert_future_perturbation_invisible(model, positions, x, cond, model.params_from_unit(x, cond))
