"""Discrete-code priors (head ``categorical``, ``num_codes``), spatial conditioning maps, sampling temperature."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import pixelzoo

DATA = Path(__file__).parent / "data" / "samplers"
TINY = {  # backbone -> (arguments, image side)
    "pixelcnnpp": (dict(nr_filters=8, nr_resnet=1), 8),
    "pixelcnnpp_dilated": (dict(nr_filters=8, nr_resnet=1, dilations=[1, 2]), 6),
    "small_plain": (dict(nr_filters=8, field=[5, 3]), 6),
    "small_nin": (dict(nr_filters=8, field=[5, 3], nin_blocks=1), 6),
    "small_archannel": (dict(nr_filters=8, field=[5, 3], channel_sets=2), 6),
}


def _jitter(model, scale=0.3, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return model.eval()


def code_model(backbone="pixelcnnpp", channels=1, num_codes=11, cond_channels=0, num_classes=0, **kw):
    args, side = TINY[backbone]
    torch.manual_seed(0)
    m = pixelzoo.create_model(backbone=backbone, head="categorical", image_shape=(channels, side, side),
                              num_codes=num_codes, cond_channels=cond_channels, num_classes=num_classes,
                              **{**args, **kw})
    return _jitter(m.double())


def _codes(m, n=2, seed=1):
    C, H, W = m.image_shape
    return torch.randint(0, m.num_codes, (n, C, H, W), generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------ temperature 1 is today's sampler
def _fixture_model(head, channels):
    m = pixelzoo.create_model(backbone="pixelcnnpp", head=head, image_shape=(channels, 8, 8), nr_filters=8,
                              nr_resnet=1, num_classes=2).double().eval()
    m.load_state_dict(load_file(DATA / f"{head}_c{channels}.safetensors"))
    return m


@pytest.mark.parametrize("head", ["dlogistic", "softmax256", "clogistic"])
@pytest.mark.parametrize("channels", [1, 3])
def test_temperature_one_reproduces_the_samples_of_the_code_before_temperature(head, channels):
    """tests/data/samplers/ holds samples drawn by the sampler before temperature existed (same weights,
    same generators); T = 1 (explicit or default) must give them bit for bit, naive, cached and completion."""
    before = np.load(DATA / "samples_before_temperature.npz")
    m, key = _fixture_model(head, channels), f"{head}_c{channels}"
    labels = torch.tensor([0, 1, 1])
    for method in ("naive", "cached"):
        for kw in ({}, {"temperature": 1.0}, {"temperature": 1}):
            s = m.sample(3, labels, method=method, generator=torch.Generator().manual_seed(7), **kw)
            assert np.array_equal(s.numpy(), before[f"{key}_sample_{method}"])
    done = m.complete(torch.from_numpy(before[f"{key}_given"]), 3, labels, method="cached",
                      generator=torch.Generator().manual_seed(9), temperature=1.0)
    assert np.array_equal(done.numpy(), before[f"{key}_complete"])


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), float("inf"), True, "1"])
def test_temperatures_that_are_not_positive_numbers_are_refused(bad):
    m = code_model()
    with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
        m.sample(1, temperature=bad)
    with pytest.raises(ValueError, match="temperature"):
        m.complete(_codes(m, 1), 2, temperature=bad)
    head = pixelzoo.create_model("pixelcnnpp_small").head
    with pytest.raises(ValueError, match="temperature"):
        head.sample(torch.zeros(1, head.num_params(), 1, 1), temperature=bad)


def _chi2_ok(counts: torch.Tensor, probs: torch.Tensor) -> bool:
    keep = probs * counts.sum() >= 5
    expected = probs[keep] * counts.sum()
    observed = counts[keep].double()
    chi2 = float(((observed - expected) ** 2 / expected).sum())
    dof = int(keep.sum()) - 1
    return chi2 < dof + 5 * math.sqrt(2 * dof)


@pytest.mark.parametrize("temperature", [0.6, 1.0, 1.7])
def test_categorical_frequencies_at_temperature_match_the_tempered_probabilities(temperature):
    head = pixelzoo.heads.Categorical(channels=1, num_codes=9, embed_dim=4).double()
    g = torch.Generator().manual_seed(0)
    params = torch.randn(1, 4, 1, 1, generator=g, dtype=torch.float64) * 2
    n = 30000
    draws = head.sample(params.expand(n, -1, -1, -1).contiguous(), generator=g, temperature=temperature)
    logits = head.logits(params, None)[0, :, 0, 0, 0].detach()
    probs = torch.softmax(logits / temperature, dim=0)
    assert _chi2_ok(torch.bincount(draws.flatten(), minlength=9), probs)


def test_softmax256_and_dlogistic_frequencies_at_temperature():
    """softmax256: logits / T. dlogistic: the sampler at T equals the pmf (from the head's own nll) of the
    mixture with logits / T and log-scales + log T."""
    T, n, g = 0.7, 30000, torch.Generator().manual_seed(1)
    soft = pixelzoo.create_model(backbone="pixelcnnpp", head="softmax256", image_shape=(1, 4, 4), bits=3,
                                 nr_filters=4, nr_resnet=1).head.double()
    params = torch.randn(1, soft.num_params(), 1, 1, generator=g, dtype=torch.float64)
    draws = soft.sample(params.expand(n, -1, -1, -1).contiguous(), generator=g, temperature=T)
    probs = torch.softmax(params[0, :, 0, 0] / T, dim=0)
    assert _chi2_ok(torch.bincount(draws.flatten(), minlength=8), probs)

    mix = pixelzoo.create_model(backbone="pixelcnnpp", head="dlogistic", image_shape=(1, 4, 4), bits=4,
                                nr_filters=4, nr_resnet=1, num_mixtures=3).head.double()
    logits, means, log_s = torch.tensor([0.5, -0.3, 1.0]), torch.tensor([-0.6, 0.1, 0.5]), torch.tensor([-1.5] * 3)
    params = torch.cat([logits, means, log_s]).double().view(1, 9, 1, 1)
    draws = mix.sample(params.expand(n, -1, -1, -1).contiguous(), generator=g, temperature=T)
    tempered = torch.cat([logits / T, means, log_s + math.log(T)]).double().view(1, 9, 1, 1)
    levels = torch.arange(16).view(16, 1, 1, 1)
    probs = torch.exp(-mix.nll(tempered.expand(16, -1, -1, -1), levels)).flatten()
    assert abs(float(probs.sum()) - 1) < 1e-9
    assert _chi2_ok(torch.bincount(draws.flatten(), minlength=16), probs)


def test_temperature_near_zero_gives_the_argmax():
    m = code_model(channels=2)
    x = m.sample(3, generator=torch.Generator().manual_seed(0), temperature=1e-6)
    with torch.no_grad():
        params = m(x)
        logits = m.head.logits(params, x)  # (B, K, C, H, W) given the sampled earlier channels
    assert torch.equal(logits.argmax(dim=1), x)


# ------------------------------------------------------------------------ the categorical head
@pytest.mark.parametrize("channels", [1, 2])
def test_each_position_conditional_sums_to_one_over_all_codes(channels):
    m = code_model(channels=channels, num_codes=13)
    x = _codes(m, 1)
    for c, i, j in [(0, 0, 0), (channels - 1, 3, 5), (0, 7, 7)]:
        batch = x.repeat(13, 1, 1, 1)
        batch[:, c, i, j] = torch.arange(13)
        with torch.no_grad():
            terms = m.nll_map(batch)[:, c, i, j]
        assert abs(float(torch.exp(-terms).sum()) - 1.0) < 1e-10


def test_nll_is_the_sum_of_the_map_and_bits_per_dim_is_bits_per_code():
    m = code_model(channels=2, num_codes=300)
    x = _codes(m, 3)
    with torch.no_grad():
        nll, terms = m.nll(x), m.nll_map(x)
        torch.testing.assert_close(terms.sum(dim=(1, 2, 3)), nll, rtol=1e-12, atol=0)
        assert float(m.bits_per_dim(x)) == pytest.approx(float(nll.sum()) / (3 * 2 * 64 * math.log(2)))


@pytest.mark.parametrize("cond_channels", [0, 3])
def test_changing_a_code_never_changes_earlier_terms(cond_channels):
    m = code_model(channels=2, cond_channels=cond_channels, num_classes=2)
    x = _codes(m, 1)
    labels = torch.tensor([1])
    cond_map = torch.randn(1, 3, 2, 2, dtype=torch.float64) if cond_channels else None
    for c, i, j in [(0, 2, 3), (1, 5, 0)]:
        y = x.clone()
        y[0, c, i, j] = (y[0, c, i, j] + 5) % m.num_codes
        with torch.no_grad():
            a = m.nll_map(x, labels, cond_map=cond_map).flatten(2)
            b = m.nll_map(y, labels, cond_map=cond_map).flatten(2)
        flat = i * 8 + j
        assert torch.equal(a[..., :flat], b[..., :flat])
        assert torch.equal(a[:, :c, flat], b[:, :c, flat])  # earlier channels of the same position
        assert not torch.equal(a[:, c, flat], b[:, c, flat])


def test_the_conditioning_map_changes_the_likelihood_and_composes_with_labels():
    m = code_model(cond_channels=4, num_classes=3)
    x, labels = _codes(m, 2), torch.tensor([0, 2])
    maps = torch.randn(2, 4, 3, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        base = m.nll(x, labels, cond_map=maps)
        assert not torch.allclose(base, m.nll(x, labels, cond_map=maps + 1.0))
        assert not torch.allclose(base, m.nll(x, torch.tensor([1, 1]), cond_map=maps))


def test_conditioning_maps_for_images_too_and_the_resize_is_nearest():
    torch.manual_seed(0)
    m = _jitter(pixelzoo.create_model("pixelcnnpp_small", cond_channels=2).double())
    x = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    small = torch.randn(2, 2, 4, 4, dtype=torch.float64)
    big = small.repeat_interleave(8, dim=2).repeat_interleave(8, dim=3)  # nearest upsampling, by hand
    with torch.no_grad():
        torch.testing.assert_close(m.nll(x, cond_map=small), m.nll(x, cond_map=big), rtol=1e-12, atol=0)


# ------------------------------------------------------------------------ sampling
@pytest.mark.parametrize("backbone", sorted(TINY))
@pytest.mark.parametrize("channels,cond_channels", [(1, 0), (2, 3)])
def test_cached_sampling_equals_naive_for_codes_and_maps(backbone, channels, cond_channels):
    m = code_model(backbone, channels=channels, cond_channels=cond_channels)
    cond_map = torch.randn(2, 3, 3, 2, dtype=torch.float64) if cond_channels else None
    naive = m.sample(2, cond_map=cond_map, method="naive", generator=torch.Generator().manual_seed(3))
    cached = m.sample(2, cond_map=cond_map, method="cached", generator=torch.Generator().manual_seed(3))
    assert naive.dtype == torch.int64 and torch.equal(naive, cached)
    assert int(naive.max()) < m.num_codes and len(naive.unique()) > 3
    given = _codes(m, 2)
    a = m.complete(given, 3, cond_map=cond_map, method="naive", generator=torch.Generator().manual_seed(4))
    b = m.complete(given, 3, cond_map=cond_map, method="cached", generator=torch.Generator().manual_seed(4),
                   temperature=0.8)
    c = m.complete(given, 3, cond_map=cond_map, method="naive", generator=torch.Generator().manual_seed(4),
                   temperature=0.8)
    assert torch.equal(b, c) and torch.equal(a[:, :, :3], given[:, :, :3])


def test_cached_equals_naive_for_an_image_model_with_a_map_and_labels_at_temperature():
    torch.manual_seed(0)
    m = _jitter(pixelzoo.create_model(backbone="pixelcnnpp", head="dlogistic", image_shape=(3, 8, 8),
                                      nr_filters=8, nr_resnet=1, num_mixtures=2, num_classes=2,
                                      cond_channels=2).double())
    kw = dict(cond_map=torch.randn(2, 2, 8, 8, dtype=torch.float64), temperature=0.5)
    a = m.sample(2, torch.tensor([0, 1]), method="naive", generator=torch.Generator().manual_seed(0), **kw)
    b = m.sample(2, torch.tensor([0, 1]), method="cached", generator=torch.Generator().manual_seed(0), **kw)
    assert torch.equal(a, b)


# ------------------------------------------------------------------------ hub, validation
def test_save_and_load_a_code_prior_with_a_map_gives_identical_outputs(tmp_path):
    m = code_model(channels=2, num_codes=70, cond_channels=3, num_classes=2).float()
    m.save_pretrained(tmp_path / "prior")
    loaded = pixelzoo.from_pretrained(tmp_path / "prior").eval()
    assert loaded.config == m.config and loaded.num_codes == 70 and loaded.cond_channels == 3
    x, labels, maps = _codes(m, 2), torch.tensor([0, 1]), torch.randn(2, 3, 4, 4)
    with torch.no_grad():
        assert torch.equal(m(x, labels, maps), loaded(x, labels, maps))
    s1 = m.sample(2, labels, cond_map=maps, generator=torch.Generator().manual_seed(0))
    s2 = loaded.sample(2, labels, cond_map=maps, generator=torch.Generator().manual_seed(0))
    assert torch.equal(s1, s2)


def test_large_codebooks_work():
    m = pixelzoo.create_model(backbone="small_plain", head="categorical", image_shape=(1, 4, 4), num_codes=65536,
                              nr_filters=4, field=[3, 1])
    x = torch.randint(0, 65536, (1, 1, 4, 4))
    assert torch.isfinite(m.nll(x)).all() and m.bits == 16
    assert m.head.num_params() == 64  # the network's output does not grow with K


@pytest.mark.parametrize("call,message", [
    (lambda m: m.nll(torch.full((1, 2, 8, 8), 11)), r"codes must lie in \[0, 11\)"),
    (lambda m: m.nll(torch.full((1, 2, 8, 8), -1)), r"codes must lie in \[0, 11\)"),
    (lambda m: m.nll(torch.zeros(1, 2, 8, 8)), "integer tensor"),
    (lambda m: m.nll(torch.zeros(1, 1, 8, 8, dtype=torch.int64)), r"shape \(B, 2, 8, 8\)"),
    (lambda m: m.nll(torch.zeros(1, 2, 8, 8, dtype=torch.int64)), "pass cond_map="),
    (lambda m: m.nll(torch.zeros(1, 2, 8, 8, dtype=torch.int64), cond_map=torch.zeros(1, 2, 4, 4)),
     r"cond_map must have shape \(1, 3, h, w\)"),
    (lambda m: m.nll(torch.zeros(1, 2, 8, 8, dtype=torch.int64), cond_map=torch.zeros(2, 3, 4, 4)),
     r"cond_map must have shape \(1, 3, h, w\)"),
    (lambda m: m.nll(torch.zeros(1, 2, 8, 8, dtype=torch.int64), cond_map=torch.zeros(1, 3, 4, 4, dtype=torch.int64)),
     "float tensor"),
    (lambda m: m.sample(2, cond_map=torch.zeros(3, 3, 4, 4)), r"\(2, 3, h, w\)"),
])
def test_bad_codes_and_maps_are_clear_errors(call, message):
    m = code_model(channels=2, cond_channels=3)
    with pytest.raises(ValueError, match=message):
        call(m)


def test_bad_model_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="needs head='categorical'"):
        pixelzoo.create_model("pixelcnnpp_small", num_codes=16)
    with pytest.raises(ValueError, match="pass num_codes"):
        pixelzoo.create_model(backbone="pixelcnnpp", head="categorical", image_shape=(1, 8, 8))
    for k in (1, 65537):
        with pytest.raises(ValueError, match=r"num_codes must be an int in \[2, 65536\]"):
            pixelzoo.create_model(backbone="pixelcnnpp", head="categorical", image_shape=(1, 8, 8), num_codes=k)
    plain = pixelzoo.create_model("pixelcnnpp_small")
    with pytest.raises(ValueError, match="takes no conditioning map"):
        plain.nll(torch.zeros(1, 3, 32, 32, dtype=torch.uint8), cond_map=torch.zeros(1, 1, 1, 1))


def test_sample_command_takes_temperature_codes_and_maps(tmp_path, capsys):
    from pixelzoo.cli import main

    m = code_model(channels=1, num_codes=20, cond_channels=2).float()
    m.save_pretrained(tmp_path / "prior")
    maps = np.random.default_rng(0).normal(size=(4, 2, 3, 3)).astype(np.float32)
    np.save(tmp_path / "maps.npy", maps)
    out = tmp_path / "codes.npy"
    assert main(["sample", str(tmp_path / "prior"), "-n", "4", "--npy", str(out), "--temperature", "0.5",
                 "--cond-map", str(tmp_path / "maps.npy"), "--seed", "3"]) == 0
    expect = pixelzoo.from_pretrained(tmp_path / "prior").sample(
        4, cond_map=torch.from_numpy(maps), generator=torch.Generator().manual_seed(3), temperature=0.5)
    assert np.array_equal(np.load(out), expect.numpy())
    assert main(["sample", str(tmp_path / "prior"), "-n", "4", "--cond-map", str(tmp_path / "maps.npy")]) == 1
    assert "--npy" in capsys.readouterr().err
    assert main(["sample", str(tmp_path / "prior"), "-n", "4", "--npy", str(out), "--temperature", "0"]) == 1
    assert "temperature must be" in capsys.readouterr().err
