"""The dilated and small backbones, and the paper's presets: structure, ablations, metadata."""
import json

import pytest
import torch

import pixelzoo
from pixelzoo import PixelZooModel
from pixelzoo.layers import GatedResnet
from pixelzoo.registry import get_head_class

IMAGE_HEADS = [h for h in pixelzoo.list_heads() if not get_head_class(h).models_codes]  # categorical: test_codes.py

OWN_BACKBONES = ["pixelcnnpp_dilated", "small_plain", "small_nin", "small_archannel"]


def tiny(name: str, size: int = 8, **kw):
    return pixelzoo.create_model(name, nr_filters=4, image_shape=(3, size, size), **kw)


def levels(x, bits=8):
    return (x * (2**bits - 1)).round().long()


# ------------------------------------------------------------------------------------- presets
def test_presets_carry_the_papers_figures():
    expected = {
        "pixelcnnpp_cifar10": 2.92, "pixelcnnpp_cifar10_cond": 2.94,
        "small_plain_11x5": 3.11, "small_nin_11x5": 3.09, "small_archannel_11x5": 3.07,
        "small_plain_15x8": 3.07, "small_nin_15x8": 3.04, "small_archannel_15x8": 3.03,
        "pixelcnnpp_noshortcut": None, "pixelcnnpp_nodropout": None, "pixelcnnpp_dilated_cifar10": None,
    }
    for name, bpd in expected.items():
        preset = pixelzoo.get_preset(name)
        assert preset.metadata["paper_bits_per_dim"] == bpd, name
        assert preset.image_shape == (3, 32, 32) and preset.head == "dlogistic", name
        assert preset.head_args == {"num_mixtures": 10}, name
    assert pixelzoo.get_preset("pixelcnnpp_cifar10_cond").num_classes == 10
    assert "fails to train" in pixelzoo.get_preset("pixelcnnpp_noshortcut").metadata["paper_result"]
    assert "6.0" in pixelzoo.get_preset("pixelcnnpp_nodropout").metadata["paper_result"]
    assert "no figure" in pixelzoo.get_preset("pixelcnnpp_dilated_cifar10").metadata["notes"]
    for variant in ("plain", "nin", "archannel"):
        for w, h in ((11, 5), (15, 8)):
            assert pixelzoo.get_preset(f"small_{variant}_{w}x{h}").backbone_args["field"] == [w, h]


def test_ablation_presets_differ_from_the_unet_in_one_argument_only():
    base = pixelzoo.get_preset("pixelcnnpp_cifar10").backbone_args
    assert pixelzoo.get_preset("pixelcnnpp_noshortcut").backbone_args == dict(base, shortcuts=False)
    assert pixelzoo.get_preset("pixelcnnpp_nodropout").backbone_args == dict(base, dropout=0.0)
    assert pixelzoo.get_preset("pixelcnnpp_cifar10_cond").backbone_args == base


@pytest.mark.parametrize("name", ["small_nin_15x8", "small_archannel_11x5", "pixelcnnpp_dilated_cifar10"])
def test_config_round_trips_through_json(name):
    model = tiny(name, nr_resnet=1) if "dilated" in name else tiny(name)
    config = json.loads(json.dumps(model.config))
    keys = ("backbone", "head", "image_shape", "backbone_args", "head_args", "bits", "num_classes")
    again = PixelZooModel(**{k: config[k] for k in keys})
    again.load_state_dict(model.state_dict(), strict=True)
    x = torch.randint(0, 256, (2, 3, 8, 8), generator=torch.Generator().manual_seed(0))
    model.eval(), again.eval()
    assert torch.equal(model(x), again(x))


# ---------------------------------------------------------------------------------- no short-cuts
def down_pass_aux_channels(backbone):
    return [(block.nin_aux.in_channels // 2 if block.nin_aux is not None else 0)
            for layer in backbone.down_layers for stream in (layer.u_stream, layer.ul_stream) for block in stream]


@pytest.mark.parametrize("name", ["pixelcnnpp_noshortcut", "pixelcnnpp_dilated_cifar10"])
def test_without_shortcuts_the_down_pass_takes_no_skip(name):
    F_ = 4
    extra = {} if name == "pixelcnnpp_noshortcut" else {"shortcuts": False}
    plain = tiny(name, nr_resnet=2, **extra).backbone
    assert plain.shortcuts is False
    for layer in plain.down_layers:
        assert all(b.nin_aux is None for b in layer.u_stream)           # u: no aux input at all
        assert all(b.nin_aux.in_channels == 2 * F_ for b in layer.ul_stream)  # ul: only u (F channels)
    full = tiny(name, nr_resnet=2, shortcuts=True).backbone
    assert set(down_pass_aux_channels(full)) == {F_, 2 * F_}  # the contrast: skips widen the aux inputs
    assert set(down_pass_aux_channels(plain)) == {0, F_}


def swap_last_up_outputs(model, x_from, x_into):
    """Run ``x_into`` with the last up-pass u and ul outputs taken from a run on ``x_from``."""
    layer = model.backbone.up_layers[-1]
    last = [layer.u_stream[-1], layer.ul_stream[-1]]
    saved = {}
    hooks = [m.register_forward_hook(lambda m, a, out: saved.__setitem__(m, out)) for m in last]
    model.params_from_unit(x_from)
    for h in hooks:
        h.remove()
    hooks = [m.register_forward_hook(lambda m, a, out: saved[m]) for m in last]
    try:
        return model.params_from_unit(x_into)
    finally:
        for h in hooks:
            h.remove()


@pytest.mark.parametrize("name", ["pixelcnnpp_noshortcut", "pixelcnnpp_dilated_cifar10"])
@torch.no_grad()
def test_without_shortcuts_only_the_last_up_outputs_reach_the_output(name):
    gen = torch.Generator().manual_seed(0)
    x1, x2 = (torch.rand(2, 3, 8, 8, generator=gen, dtype=torch.float64) * 2 - 1 for _ in range(2))
    for shortcuts, same in ((False, True), (True, False)):
        model = tiny(name, nr_resnet=2, shortcuts=shortcuts).double().eval()
        swapped = swap_last_up_outputs(model, x2, x1)
        # Everything before the last up-pass block of x1 is thrown away iff there is no skip path.
        assert torch.equal(swapped, model.params_from_unit(x2)) is same
        assert not torch.equal(swapped, model.params_from_unit(x1))


# ----------------------------------------------------------------------------------- no dropout
def dropouts(model):
    return [m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)]


@torch.no_grad()
def test_nodropout_preset_has_p_zero_everywhere():
    x = torch.randint(0, 256, (2, 3, 8, 8), generator=torch.Generator().manual_seed(0))
    model = tiny("pixelcnnpp_nodropout", nr_resnet=1).train()
    ps = dropouts(model)
    assert len(ps) == sum(isinstance(m, GatedResnet) for m in model.modules()) > 0
    assert set(ps) == {0.0}
    assert torch.equal(model(x), model(x))  # training mode, yet deterministic
    regular = tiny("pixelcnnpp_cifar10", nr_resnet=1).train()
    assert set(dropouts(regular)) == {0.5}
    assert not torch.equal(regular(x), regular(x))


# ------------------------------------------------------------------------------------- dilated
def test_dilated_levels_use_their_dilations():
    net = pixelzoo.create_model("pixelcnnpp_dilated_cifar10", nr_filters=4, nr_resnet=2).backbone
    up = [{b.conv_in.dilation[0] for s in (l.u_stream, l.ul_stream) for b in s} for l in net.up_layers]
    down = [{b.conv_out.dilation[0] for s in (l.u_stream, l.ul_stream) for b in s} for l in net.down_layers]
    assert up == [{1}, {2}, {4}] and down == [{4}, {2}, {1}]
    assert [len(l.u_stream) for l in net.up_layers] == [2, 2, 2]
    assert [len(l.u_stream) for l in net.down_layers] == [2, 3, 3]
    assert [(u.dilation[0], ul.dilation[0]) for u, ul in net.up_links] == [(2, 2), (4, 4)]
    assert [(u.dilation[0], ul.dilation[0]) for u, ul in net.down_links] == [(2, 2), (1, 1)]
    u4, ul4 = net.up_links[1]
    assert u4.causal_pad == (4, 4, 4, 0) and ul4.causal_pad == (4, 0, 4, 0)  # pads (kh-1)d, (kw-1)/2·d / (kw-1)d
    assert all(m.stride == (1, 1) for m in net.modules() if isinstance(m, torch.nn.Conv2d))


@pytest.mark.parametrize("dilations", [(1,), (1, 3), (1, 2, 4, 8)])
def test_dilated_takes_any_number_of_levels(dilations):
    model = tiny("pixelcnnpp_dilated_cifar10", size=6, nr_resnet=1, dilations=list(dilations)).eval()
    assert len(model.backbone.up_layers) == len(dilations)
    out = model(torch.zeros(1, 3, 6, 6, dtype=torch.long))
    assert out.shape == (1, model.head.num_params(), 6, 6) and torch.isfinite(out).all()


@pytest.mark.parametrize("bad", [[], [0, 1], [1, 2.5], "124"])
def test_dilated_rejects_bad_dilations(bad):
    with pytest.raises(ValueError, match="dilations"):
        tiny("pixelcnnpp_dilated_cifar10", nr_resnet=1, dilations=bad)


# --------------------------------------------------------------------------------------- small
@pytest.mark.parametrize("field, steps, stem_u, stem_ul", [
    ((11, 5), 2, (1, 3), (1, 1)), ((15, 8), 3, (2, 3), (1, 1)), ((3, 1), 0, (1, 3), (1, 1)),
    ((9, 2), 0, (2, 9), (1, 4)), ((5, 7), 0, (7, 5), (1, 2)),
])
def test_small_arrangement_is_the_documented_one(field, steps, stem_u, stem_ul):
    net = pixelzoo.create_model(backbone="small_plain", head="dlogistic", field=field, nr_filters=4).backbone
    assert net.num_steps == steps == len(net.u_stream) == len(net.ul_stream)
    assert tuple(net.u_init.kernel_size) == stem_u and tuple(net.ul_init.kernel_size) == stem_ul
    assert all(tuple(b.conv_in.kernel_size) == (2, 3) for b in net.u_stream)
    assert all(tuple(b.conv_in.kernel_size) == (1, 2) for b in net.ul_stream)
    assert tuple(net.merge.conv_in.kernel_size) == (1, 1) and net.merge.nin_aux is not None


def one_by_one_blocks(module):
    return [m for m in module.modules() if isinstance(m, GatedResnet) and tuple(m.conv_in.kernel_size) == (1, 1)]


def test_nin_inserts_three_1x1_blocks_per_stream_between_field_growing_steps():
    for field, steps in (((11, 5), 2), ((15, 8), 3)):
        net = pixelzoo.create_model(backbone="small_nin", head="dlogistic", field=field, nr_filters=4).backbone
        assert len(net.between) == steps
        for group in net.between:
            assert len(group.u_stream) == len(group.ul_stream) == 3
            assert len(one_by_one_blocks(group)) == 6
        assert len(one_by_one_blocks(net)) == 6 * steps + 1  # + the merge
    with pytest.raises(ValueError, match="nin_blocks"):
        pixelzoo.create_model(backbone="small_nin", head="dlogistic", nin_blocks=0)


def test_archannel_updates_each_channel_set_from_the_earlier_ones():
    net = pixelzoo.create_model(backbone="small_archannel", head="dlogistic", nr_filters=12, channel_sets=3).backbone
    for pair in net.between:
        for stream in (pair.u_stream, pair.ul_stream):
            assert [(b.conv_in.in_channels // 2, b.nin_aux.in_channels // 2) for b in stream.blocks] == [(4, 4), (4, 8)]
    with pytest.raises(ValueError, match="channel_sets"):
        pixelzoo.create_model(backbone="small_archannel", head="dlogistic", nr_filters=10, channel_sets=4)


@torch.no_grad()
def test_archannel_sets_depend_only_on_earlier_sets():
    # A 1x1 channel-AR unit on its own: set k of the output moves with input sets <= k only.
    from pixelzoo.backbones.small import _ChannelAR

    unit = _ChannelAR(3, 6, ("down", (1, 1)), 0, 0.0).double().eval()
    x = torch.randn(1, 6, 2, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    base = unit(x)
    for k in range(3):
        moved = x.clone()
        moved[:, 2 * k: 2 * k + 2] += 1.0
        changed = (unit(moved) != base).flatten(2).any(-1)[0].reshape(3, 2).any(-1)
        assert changed.tolist() == [s >= k for s in range(3)]


def test_variants_add_capacity_over_plain():
    counts = {v: pixelzoo.layers.count_parameters(
        pixelzoo.create_model(f"small_{v}_11x5", nr_filters=16).backbone) for v in ("plain", "nin", "archannel")}
    assert counts["plain"] < counts["archannel"] < counts["nin"]


# ------------------------------------------------------------------------- every backbone, any head
@pytest.mark.parametrize("backbone", OWN_BACKBONES)
@pytest.mark.parametrize("head", IMAGE_HEADS)
@torch.no_grad()
def test_every_backbone_with_every_head_and_labels(backbone, head):
    for channels, num_classes in ((1, 0), (3, 2)):
        model = pixelzoo.create_model(backbone=backbone, head=head, image_shape=(channels, 8, 8),
                                      num_classes=num_classes, nr_filters=4).eval()
        x = torch.randint(0, 256, (2, channels, 8, 8), generator=torch.Generator().manual_seed(0))
        labels = torch.tensor([0, 1]) if num_classes else None
        nll = model.nll(x, labels, generator=torch.Generator().manual_seed(0))
        assert nll.shape == (2,) and torch.isfinite(nll).all()
        if num_classes:  # the label moves the prediction
            other = model.nll(x, torch.tensor([1, 0]), generator=torch.Generator().manual_seed(0))
            assert not torch.equal(nll, other)
