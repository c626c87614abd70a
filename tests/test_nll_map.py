"""``nll_map``: nats of every sub-pixel given its past, for every head; checked against the joint NLL."""
from __future__ import annotations

import itertools

import pytest
import torch

import pixelzoo
from pixelzoo.cli import main

HEADS = ["dlogistic", "softmax256", "clogistic"]


def _model(head, channels, num_classes=0, bits=8, size=8):
    torch.manual_seed(0)
    model = pixelzoo.create_model(backbone="pixelcnnpp", head=head, image_shape=(channels, size, size), bits=bits,
                                  nr_filters=8, nr_resnet=1, num_classes=num_classes)
    with torch.no_grad():  # away from the init's near-uniform outputs
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return model.eval()


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("conditional", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_nll_map_sums_to_nll(head, channels, conditional, dtype):
    model = _model(head, channels, num_classes=4 if conditional else 0).to(dtype)
    x = torch.randint(0, 256, (3, channels, 8, 8), generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([0, 3, 1]) if conditional else None
    with torch.no_grad():
        nll_map = model.nll_map(x, labels, generator=torch.Generator().manual_seed(5))
        nll = model.nll(x, labels, generator=torch.Generator().manual_seed(5))
    assert nll_map.shape == (3, channels, 8, 8) and nll_map.dtype == dtype
    tol = 1e-10 if dtype == torch.float64 else 2e-5
    torch.testing.assert_close(nll_map.sum(dim=(1, 2, 3)), nll, rtol=tol, atol=0)
    assert bool((nll_map > 0).all()) or head == "clogistic"  # discrete terms are -log of probabilities < 1



@pytest.mark.parametrize("head_name", ["dlogistic", "softmax256"])
def test_each_rgb_term_is_the_conditional_from_the_joint(head_name):
    """Term c equals -log [Σ_{later channels} p(x_≤c, ·) / Σ_{channels ≥ c} p(x_<c, ·)], the sums enumerated
    over every level at 2 bits with the joint probabilities of the head's ``nll``."""
    bits, K = 2, 4
    model = pixelzoo.create_model(backbone="pixelcnnpp", head=head_name, image_shape=(3, 4, 4), bits=bits,
                                  nr_filters=4, nr_resnet=1)
    head = model.head.double()
    g = torch.Generator().manual_seed(3)
    params = 2.0 * torch.randn(1, head.num_params(), 1, 1, generator=g, dtype=torch.float64)
    grid = torch.tensor(list(itertools.product(range(K), repeat=3)))  # (64, 3): every (R, G, B)
    joint = torch.exp(-head.nll(params.expand(len(grid), -1, -1, -1), grid[:, :, None, None])).reshape(K, K, K)
    assert abs(float(joint.sum()) - 1.0) < 1e-12
    for r, gr, b in [(0, 3, 1), (2, 2, 2), (3, 0, 0)]:
        x = torch.tensor([r, gr, b])[None, :, None, None]
        terms = head.nll_map(params, x)[0, :, 0, 0]
        expect = [-torch.log(joint[r].sum()), -torch.log(joint[r, gr].sum() / joint[r].sum()),
                  -torch.log(joint[r, gr, b] / joint[r, gr].sum())]
        torch.testing.assert_close(terms, torch.stack(expect), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("head_name", ["dlogistic", "softmax256"])
@pytest.mark.parametrize("channels", [1, 3])
def test_every_sub_pixel_term_is_a_normalized_conditional(head_name, channels):
    """Enumerate the 2**bits levels of one sub-pixel with the rest of the image fixed: its term's
    probabilities sum to 1 (the whole model, so the backbone's causality is part of the claim)."""
    bits = 3
    model = _model(head_name, channels, bits=bits).double()
    x = torch.randint(0, 2**bits, (1, channels, 8, 8), generator=torch.Generator().manual_seed(2))
    for c, i, j in [(0, 0, 0), (channels - 1, 3, 5), (channels // 2, 7, 7)]:
        batch = x.repeat(2**bits, 1, 1, 1)
        batch[:, c, i, j] = torch.arange(2**bits)
        with torch.no_grad():
            terms = model.nll_map(batch)[:, c, i, j]
        assert abs(float(torch.exp(-terms).sum()) - 1.0) < 1e-10


def test_changing_a_sub_pixel_leaves_earlier_terms_alone():
    model = _model("dlogistic", 3).double()
    x = torch.randint(0, 256, (1, 3, 8, 8), generator=torch.Generator().manual_seed(4))
    y = x.clone()
    y[0, 1, 4, 4] = (y[0, 1, 4, 4] + 77) % 256  # G at (4, 4)
    with torch.no_grad():
        a, b = model.nll_map(x).flatten(2), model.nll_map(y).flatten(2)
    flat = 4 * 8 + 4
    assert torch.equal(a[0, :, :flat], b[0, :, :flat])  # earlier pixels
    assert torch.equal(a[0, 0, flat], b[0, 0, flat])  # R of the same pixel
    assert not torch.equal(a[0, 1, flat], b[0, 1, flat])


def test_nll_map_validates_like_nll():
    model = _model("dlogistic", 1)
    with pytest.raises(ValueError, match="integer levels"):
        model.nll_map(torch.zeros(1, 1, 8, 8))
    with pytest.raises(ValueError, match="8x8"):
        model.nll_map(torch.zeros(1, 1, 4, 4, dtype=torch.uint8))


def test_nllmap_command_writes_images_beside_heat_maps(tmp_path, capsys):
    import numpy as np
    from PIL import Image

    model = _model("dlogistic", 1)
    folder = tmp_path / "m"
    model.save_pretrained(folder)
    data = tmp_path / "d.npz"
    np.savez(data, images=np.random.default_rng(0).integers(0, 256, (5, 8, 8), dtype=np.uint8))
    out = tmp_path / "map.png"
    assert main(["nllmap", str(folder), "--data", str(data), "--split", "test", "--limit", "3", "--out", str(out),
                 "--no-progress"]) == 0
    img = Image.open(out)
    assert img.mode == "RGB" and img.size == (3 * 2 * (32 + 2) + 2, 32 + 2 + 2)  # one row of 3 (image, map) pairs
    heat = np.asarray(img)[2:34, 36:68]
    assert len(np.unique(heat.reshape(-1, 3), axis=0)) > 5  # a map, not a flat tile
    assert "bits per" in capsys.readouterr().out
