"""PixelZooModel, the PixelCNN++ U-net and the registry."""
import math

import pytest
import torch

import pixelzoo
from pixelzoo.data import load_bundled
from pixelzoo.layers import count_parameters


def tiny(**kw):
    args = dict(nr_filters=8, nr_resnet=1, num_mixtures=2, dropout=0.0, image_shape=(3, 8, 8))
    args.update(kw)
    return pixelzoo.create_model("pixelcnnpp_cifar10", **args)


# ---------------------------------------------------------------------------------------------- causality
def _dependence(model, x, labels=None):
    """dep[i, j] = |d params(i, j) / d x| summed over the projection's outputs: (H, W, C, H, W)."""
    C, H, W = x.shape[1:]
    xu = x.clone().requires_grad_(True)
    cond = model.condition(labels, torch.float64)
    out = model.params_from_unit(xu, cond)  # (1, P, H, W)
    weights = torch.randn(out.shape[1], dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    dep = torch.zeros(H, W, C, H, W, dtype=torch.float64)
    for i in range(H):
        for j in range(W):
            (g,) = torch.autograd.grad((out[0, :, i, j] * weights).sum(), xu, retain_graph=True)
            dep[i, j] = g[0].abs()
    return dep


@pytest.mark.parametrize("num_classes", [0, 3])
def test_unet_is_exactly_causal(num_classes):
    """float64, dropout off: params at (i, j) have zero gradient from every pixel at or after (i, j)."""
    torch.manual_seed(0)
    model = tiny(nr_filters=4, image_shape=(3, 16, 16), num_classes=num_classes).double().eval()
    x = torch.rand(1, 3, 16, 16, dtype=torch.float64) * 2 - 1
    labels = torch.tensor([1]) if num_classes else None
    dep = _dependence(model, x, labels)
    H, W = 16, 16
    raster = torch.arange(H * W).view(H, W)
    for i in range(H):
        for j in range(W):
            future = (raster >= i * W + j)[None].expand(3, H, W)
            assert dep[i, j][future].max() == 0.0, (i, j)
    # not vacuous: the left and upper neighbours (all channels) are seen
    assert (dep[5, 5][:, 5, 4] > 0).all() and (dep[5, 5][:, 4, 5] > 0).all()
    assert (dep[0, 1][:, 0, 0] > 0).all() and (dep[1, 0][:, 0, 0] > 0).all()


def test_paper_config_parameter_count():
    with torch.device("meta"):
        model = pixelzoo.create_model("pixelcnnpp_cifar10")
    assert count_parameters(model) == 53_618_660           # weights + biases (REFERENCE §2.3, derived)
    assert count_parameters(model, include_weight_norm_gains=True) == 53_659_080
    with torch.device("meta"):
        cond = pixelzoo.create_model("pixelcnnpp_cifar10", num_classes=10)
    assert count_parameters(cond) - count_parameters(model) == 64 * 10 * 2 * 160


def test_outputs_have_head_shape_and_nll_is_per_image():
    model = tiny()
    x = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    assert model(x).shape == (2, 20, 8, 8)
    nll = model.nll(x)
    assert nll.shape == (2,)
    params = model(x)
    torch.testing.assert_close(nll, model.head.nll(params, x).sum(dim=(1, 2)))
    bpd = model.bits_per_dim(x)
    torch.testing.assert_close(bpd, nll.sum() / (2 * 3 * 64 * math.log(2)))


def test_sample_shapes_dtypes_and_reproducibility():
    model = tiny(image_shape=(1, 4, 4))
    a = model.sample(3, generator=torch.Generator().manual_seed(0))
    b = model.sample(3, generator=torch.Generator().manual_seed(0))
    assert a.shape == (3, 1, 4, 4) and a.dtype == torch.uint8 and torch.equal(a, b)
    assert model.training  # restored after sampling
    deep = tiny(image_shape=(1, 4, 4), bits=12)
    s = deep.sample(2, generator=torch.Generator().manual_seed(0))
    assert s.dtype == torch.int32 and int(s.max()) < 4096


def test_naive_sampler_draws_each_pixel_from_the_head_given_the_past():
    """Independent re-statement of ancestral sampling: replaying the generator pixel by pixel on the
    returned images reproduces them."""
    model = tiny(image_shape=(3, 4, 4)).eval()
    out = model.sample(2, generator=torch.Generator().manual_seed(9)).long()
    gen = torch.Generator().manual_seed(9)
    canvas = torch.zeros_like(out)
    for i in range(4):
        for j in range(4):
            params = model(canvas)  # only the pixels before (i, j) are set
            canvas[:, :, i, j] = model.head.sample(params[:, :, i:i + 1, j:j + 1], generator=gen)[:, :, 0, 0]
    assert torch.equal(canvas, out)


# --------------------------------------------------------------------------------------------- validation
@pytest.mark.parametrize("x,match", [
    (torch.zeros(2, 3, 8, 8), "integer levels"),
    (torch.zeros(2, 3, 8, 8, dtype=torch.bool), "integer levels"),
    (torch.zeros(3, 8, 8, dtype=torch.uint8), r"batch dimension"),
    (torch.zeros(2, 1, 8, 8, dtype=torch.uint8), "3-channel"),
    (torch.zeros(2, 8, 8, 3, dtype=torch.uint8), "channels last"),
    (torch.zeros(2, 3, 16, 16, dtype=torch.uint8), "8x8 images"),
    (torch.full((2, 3, 8, 8), 256, dtype=torch.int16), r"\[0, 255\]"),
    (torch.full((2, 3, 8, 8), -1, dtype=torch.int64), r"\[0, 255\]"),
    ([[0]], "torch.Tensor"),
])
def test_bad_images_are_clear_errors(x, match):
    with pytest.raises(ValueError, match=match):
        tiny().nll(x)


def test_level_range_follows_bits():
    model = tiny(bits=5)
    model.nll(torch.full((1, 3, 8, 8), 31))
    with pytest.raises(ValueError, match=r"\[0, 31\] for bits=5"):
        model.nll(torch.full((1, 3, 8, 8), 32))


def test_label_errors():
    cond = tiny(num_classes=4)
    x = torch.zeros(2, 3, 8, 8, dtype=torch.uint8)
    cond.nll(x, torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="pass labels"):
        cond.nll(x)
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        cond.nll(x, torch.tensor([0, 4]))
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        cond.nll(x, torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="integer tensor"):
        cond.nll(x, torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="unconditional"):
        tiny().nll(x, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="class-conditional"):
        cond.sample(1)


def test_image_size_not_divisible_by_4():
    with pytest.raises(ValueError, match="divisible by 4"):
        tiny(image_shape=(3, 10, 8))


# ----------------------------------------------------------------------------------------------- registry
def test_list_functions_filter_and_sort():
    assert "pixelcnnpp_cifar10" in pixelzoo.list_models("*cifar*")
    assert all("cifar" in n for n in pixelzoo.list_models("*cifar*"))
    assert "pixelcnnpp" in pixelzoo.list_backbones() and "dlogistic" in pixelzoo.list_heads()
    assert pixelzoo.list_models("pixelcnnpp_*", exclude_filters="*cifar*") == sorted(
        n for n in pixelzoo.list_models("pixelcnnpp_*") if "cifar" not in n)
    assert pixelzoo.list_models("no_such_*") == []


@pytest.mark.parametrize("call,match", [
    (lambda: pixelzoo.create_model("pixelcnnpp_cifar1"), "pixelcnnpp_cifar10"),
    (lambda: pixelzoo.create_model(backbone="pixelcnpp", head="dlogistic"), "Did you mean: pixelcnnpp"),
    (lambda: pixelzoo.create_model(backbone="pixelcnnpp", head="dlogistc"), "Did you mean: dlogistic"),
    (lambda: pixelzoo.create_model("pixelcnnpp_small", nr_filterz=3), "no part of the model takes"),
    (lambda: pixelzoo.create_model("org/some-model"), "from_pretrained"),
    (lambda: pixelzoo.create_model(), "preset name"),
])
def test_registry_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_overrides_are_routed_to_the_part_that_takes_them():
    m = pixelzoo.create_model("pixelcnnpp_cifar10", nr_filters=32, nr_resnet=1, num_mixtures=5,
                              image_shape=(1, 28, 28))
    assert m.backbone.nr_filters == 32 and m.backbone.nr_resnet == 1
    assert m.head.num_mixtures == 5 and m.image_shape == (1, 28, 28)
    assert m.config["backbone_args"]["nr_filters"] == 32 and m.config["head_args"]["num_mixtures"] == 5
    assert len(m.backbone.up_layers[0].u_stream) == 1


def test_duplicate_registration_is_an_error():
    from pixelzoo.registry import register_backbone

    with pytest.raises(ValueError, match="already registered"):
        @register_backbone("pixelcnnpp")
        class Other(torch.nn.Module):
            pass


def test_config_rebuilds_the_same_model():
    import json

    model = tiny(num_classes=2)
    cfg = json.loads(json.dumps(model.config))
    assert cfg["library"] == "pixelzoo" and cfg["format_version"] == 1
    rebuilt = pixelzoo.PixelZooModel(**{k: cfg[k] for k in ("backbone", "head", "image_shape", "backbone_args",
                                                             "head_args", "bits", "num_classes")})
    rebuilt.load_state_dict(model.state_dict())
    x = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    y = torch.tensor([0, 1])
    model.eval(), rebuilt.eval()
    assert torch.equal(model.nll(x, y), rebuilt.nll(x, y))


# ----------------------------------------------------------------------------------------------- learning
def test_tiny_model_learns_real_images():
    """A tiny U-net fitted on 32 bundled MNIST digits ends far below 8 bits/dim and far below its start."""
    torch.manual_seed(0)
    data = load_bundled("train").subset(32)
    model = pixelzoo.create_model("pixelcnnpp_mnist", nr_filters=8, nr_resnet=1, num_mixtures=2)
    x = data.images
    model.data_dependent_init(x[:16])
    start = model.bits_per_dim(x).item()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3, betas=(0.95, 0.9995))
    for step in range(60):
        loss = model.bits_per_dim(x[(step % 2) * 16:(step % 2 + 1) * 16])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    end = model.bits_per_dim(x).item()
    assert end < 2.0 and end < start - 1.0, (start, end)
