"""Declared fields against sets written out here, the measured-field API, and ``pixelzoo field``."""
import contextlib
import io

import pytest
import torch

import pixelzoo
from pixelzoo.backbones.base import Backbone
from pixelzoo.cli import main
from pixelzoo.layers import (DownRightShiftedConv2d, DownRightShiftedConvTranspose2d, DownShiftedConv2d,
                             DownShiftedConvTranspose2d)
from pixelzoo.receptive_field import (causal_past, conv_deps, conv_transpose_deps, identity_deps,
                                      unpack_deps)


def paper_field(width: int, height: int, H: int, W: int) -> torch.Tensor:
    """The paper's 'width x height' field, written pixel by pixel: the rectangle above, (width-1)/2 to the left."""
    half = (width - 1) // 2
    field = torch.zeros(H, W, H, W, dtype=torch.bool)
    for i in range(H):
        for j in range(W):
            for p in range(max(0, i - height), i):
                for q in range(max(0, j - half), min(W, j + half + 1)):
                    field[i, j, p, q] = True
            for q in range(max(0, j - half), j):
                field[i, j, i, q] = True
    return field


def measured(net, H: int, W: int, positions=None) -> torch.Tensor:
    """One backward pass per output position, float64: the plain way (independent of the library's batching)."""
    net = net.double().eval()
    cond = torch.zeros(1, net.num_classes, dtype=torch.float64) if net.num_classes else None
    x0 = torch.rand(1, net.in_channels, H, W, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    field = torch.zeros(H, W, H, W, dtype=torch.bool)
    for i, j in positions or [(i, j) for i in range(H) for j in range(W)]:
        x = x0.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(net(x, cond)[0, :, i, j].sum(), x)
        field[i, j] = (grad[0] != 0).any(dim=0)
    return field


# --------------------------------------------------------------------------------- small models
@pytest.mark.parametrize("field", [(11, 5), (15, 8), (3, 1), (9, 2), (5, 7)])
def test_small_declared_field_is_the_papers_set(field):
    H, W = 12, 20
    net = pixelzoo.create_model(backbone="small_plain", head="dlogistic", image_shape=(3, H, W),
                                field=field, nr_filters=4).backbone
    expected = paper_field(*field, H, W)
    assert torch.equal(net.declared_receptive_field(H, W), expected)


@pytest.mark.parametrize("variant", ["small_plain", "small_nin", "small_archannel"])
@pytest.mark.parametrize("field", [(11, 5), (15, 8)])
def test_small_measured_field_is_the_papers_set(variant, field):
    H, W = 11, 19
    net = pixelzoo.create_model(backbone=variant, head="dlogistic", image_shape=(3, H, W), field=field,
                                nr_filters=4).backbone
    positions = [(H - 1, W // 2), (H - 1, 0), (H - 1, W - 1), (field[1], field[0] // 2), (3, 4), (0, 5)]
    got = measured(net, H, W, positions)
    expected = paper_field(*field, H, W)
    for i, j in positions:
        assert torch.equal(got[i, j], expected[i, j]), (i, j)
    # In the interior the field has exactly the paper's size: 11*5 + 5 and 15*8 + 7.
    assert int(got[H - 1, W // 2].sum()) == field[0] * field[1] + (field[0] - 1) // 2


def test_small_field_arguments_are_checked():
    for bad in [(10, 5), (1, 3), (11, 0), (11,), "11x5"]:
        with pytest.raises(ValueError, match="field"):
            pixelzoo.create_model(backbone="small_plain", head="dlogistic", field=bad, nr_filters=4)


# ------------------------------------------------------------------------- the U-net (REFERENCE §2.8)
@pytest.fixture(scope="module")
def unet32():
    return pixelzoo.create_model("pixelcnnpp_cifar10", nr_filters=4).backbone  # nr_resnet=5, as the paper


def test_unet_declared_field_has_the_reference_gaps(unet32):
    field = pixelzoo.declared_receptive_field(unet32, 32, 32)
    past = causal_past(32, 32)
    assert not (field & ~past).any()
    missing = past & ~field
    assert int(missing.flatten(2).any(-1).sum()) == 288  # of 1024 positions miss some earlier pixel
    assert missing[31, 31].nonzero().tolist() == [[31, q] for q in range(9)]
    assert missing[1, 0].nonzero().tolist() == [[0, q] for q in range(23, 32)]
    assert missing[31, 0].nonzero().tolist() == [[30, q] for q in range(23, 32)]


def test_unet_measured_field_at_32x32_matches_declared(unet32):
    positions = [(31, 31), (1, 0), (31, 0), (17, 9)]
    got = measured(unet32, 32, 32, positions)
    declared = pixelzoo.declared_receptive_field(unet32, 32, 32)
    for i, j in positions:
        assert torch.equal(got[i, j], declared[i, j]), (i, j)


def test_unet_without_shortcuts_sees_less():
    plain = pixelzoo.create_model("pixelcnnpp_noshortcut", nr_filters=4, nr_resnet=1, image_shape=(3, 16, 16))
    full = pixelzoo.create_model("pixelcnnpp_cifar10", nr_filters=4, nr_resnet=1, image_shape=(3, 16, 16))
    a = pixelzoo.declared_receptive_field(plain, 16, 16)
    b = pixelzoo.declared_receptive_field(full, 16, 16)
    assert not (a & ~b).any() and (b & ~a).any()
    assert not a[0, 1, 0, 0]  # the down-sampled-only path loses the current row near the top
    assert torch.equal(measured(plain.backbone, 16, 16, [(0, 1), (9, 9)])[[0, 9], [1, 9]], a[[0, 9], [1, 9]])


# ------------------------------------------------------------------------------ dependency maps
def layer_footprint(layer, H: int, W: int) -> torch.Tensor:
    """What each output of one layer depends on, by autograd (float64)."""
    layer = layer.double()
    x0 = torch.rand(1, layer.in_channels, H, W, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    out_h, out_w = layer(x0).shape[-2:]
    field = torch.zeros(out_h, out_w, H, W, dtype=torch.bool)
    for i in range(out_h):
        for j in range(out_w):
            x = x0.clone().requires_grad_(True)
            (grad,) = torch.autograd.grad(layer(x)[0, :, i, j].sum(), x)
            field[i, j] = (grad[0] != 0).any(dim=0)
    return field


@pytest.mark.parametrize("layer", [
    DownShiftedConv2d(2, 2, (2, 3)), DownShiftedConv2d(2, 2, (3, 5), dilation=2),
    DownShiftedConv2d(2, 2, (2, 3), stride=2), DownRightShiftedConv2d(2, 2, (2, 2)),
    DownRightShiftedConv2d(2, 2, (2, 2), dilation=3), DownRightShiftedConv2d(2, 2, (1, 4)),
    DownRightShiftedConv2d(2, 2, (2, 2), stride=2), DownShiftedConvTranspose2d(2, 2, (2, 3)),
    DownRightShiftedConvTranspose2d(2, 2, (2, 2)),
], ids=lambda m: f"{type(m).__name__}{tuple(m.kernel_size)}s{m.stride[0]}d{m.dilation[0]}")
def test_layer_dependency_maps_match_autograd(layer):
    H, W = 6, 8
    deps = identity_deps(H, W)
    if isinstance(layer, torch.nn.ConvTranspose2d):
        got = unpack_deps(conv_transpose_deps(deps, layer), H, W)
    else:
        got = unpack_deps(conv_deps(deps, layer), H, W)
    assert torch.equal(got, layer_footprint(layer, H, W))


def test_packed_identity_round_trips():
    # 9x9 = 81 pixels: two words, the high bit of the first in use.
    assert torch.equal(unpack_deps(identity_deps(9, 9), 9, 9), torch.eye(81, dtype=torch.bool).reshape(9, 9, 9, 9))


# ------------------------------------------------------------------------------ the measuring API
def test_receptive_field_api_matches_plain_autograd():
    model = pixelzoo.create_model("pixelcnnpp_dilated_cifar10", nr_filters=4, nr_resnet=1, num_classes=2,
                                  image_shape=(3, 8, 8))
    model.train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    full = pixelzoo.receptive_field(model, batch_size=7)  # several batches, one partial
    assert full.shape == (8, 8, 8, 8) and full.dtype == torch.bool
    assert torch.equal(full, measured(model.backbone, 8, 8))
    one = pixelzoo.receptive_field(model.backbone, (8, 8), position=(5, 3))
    assert torch.equal(one, full[5, 3])
    assert torch.equal(pixelzoo.receptive_field(model, (3, 8, 8), position=(0, 0)), torch.zeros(8, 8, dtype=torch.bool))
    # The caller's module is not touched: still float32, still training, same weights.
    assert model.training and model.proj.weight.dtype == torch.float32
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


def test_receptive_field_works_under_no_grad():
    net = pixelzoo.create_model("small_plain_11x5", nr_filters=4, image_shape=(3, 8, 8)).backbone
    with torch.no_grad():
        field = pixelzoo.receptive_field(net, (8, 8), position=(7, 4))
    assert int(field.sum()) == 5 * 8 + 4  # rows 2..6 across the whole 8 columns, plus 4 to the left


def test_receptive_field_errors():
    model = pixelzoo.create_model("small_plain_11x5", nr_filters=4, image_shape=(3, 8, 8))
    with pytest.raises(ValueError, match="position"):
        pixelzoo.receptive_field(model, position=(8, 0))
    with pytest.raises(ValueError, match="image_shape"):
        pixelzoo.receptive_field(model.backbone)
    with pytest.raises(ValueError, match="image_shape"):
        pixelzoo.receptive_field(model, (1, 8, 8))
    with pytest.raises(ValueError, match="divisible by 4"):
        pixelzoo.receptive_field(pixelzoo.create_model("pixelcnnpp_small", nr_filters=4).backbone, (6, 6))
    with pytest.raises(ValueError, match="batch_size"):
        pixelzoo.receptive_field(model, batch_size=0)


def test_undeclared_backbone_says_how_to_declare():
    class Bare(Backbone):
        pass

    with pytest.raises(NotImplementedError, match="declared_receptive_field"):
        pixelzoo.declared_receptive_field(Bare(3), 8, 8)


# ---------------------------------------------------------------------------------------- the CLI
def run_cli(*argv) -> tuple[int, list[str]]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = main(["field", *argv])
    return rc, out.getvalue().splitlines()


def test_field_command_draws_the_small_field():
    rc, lines = run_cli("small_nin_15x8", "--size", "12", "20", "--position", "9", "8", "--measured")
    assert rc == 0 and lines[-1] == "measured == declared"
    declared_map, measured_map = lines[1:13], lines[14:26]
    assert declared_map == measured_map
    expected = paper_field(15, 8, 12, 20)[9, 8]
    for i, row in enumerate(declared_map):
        assert len(row) == 20
        for j, ch in enumerate(row):
            assert ch == ("X" if (i, j) == (9, 8) else "#" if expected[i, j] else "."), (i, j)
    assert "sees 127 of the 188 earlier pixels; 0 current-or-later" in lines[0]


def test_field_command_shows_the_unet_gap():
    rc, lines = run_cli("pixelcnnpp_cifar10", "--position", "31", "31")
    assert rc == 0 and lines[-1] == "." * 9 + "#" * 22 + "X"
    assert all(set(row) == {"#"} for row in lines[1:-1])


def test_field_command_rejects_a_bad_position(capsys):
    assert main(["field", "small_plain_11x5", "--size", "8", "8", "--position", "8", "0"]) == 1
    assert "--position" in capsys.readouterr().err
