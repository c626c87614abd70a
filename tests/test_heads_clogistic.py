"""clogistic: dequantization onto dlogistic's bins, the density (normalised, against float64 formulas), its
induced pmf (= dlogistic's), the bound (>= dlogistic's exact NLL), the sampler."""
import itertools
import math

import numpy as np
import pytest
import torch

import pixelzoo
from pixelzoo.heads.base import unit_to_levels
from pixelzoo.heads.clogistic import ContinuousLogisticMixture, continuous_to_levels, dequantize
from pixelzoo.heads.dlogistic import DiscretizedLogisticMixture


# ------------------------------------------------------------------ float64 references, written out
def grid(bits):
    """Level centres x_k = 2k/(K-1) - 1 and the half-bin h = 1/(K-1): level k's bin is [x_k - h, x_k + h]."""
    K = 2**bits
    return [2.0 * k / (K - 1) - 1.0 for k in range(K)], 1.0 / (K - 1)


def ref_unpack(flat, C, M, bits):
    """Mixture log-weights, means[c][m], log_scales[c][m] (clamped), coeffs[q][m] (tanh) of one pixel."""
    flat = [float(v) for v in flat]
    logits = flat[:M]
    if C == 3:  # reference layout: per channel c, M means | M log-scales | M coeffs (coeff slot q = c)
        blocks = [flat[M + c * 3 * M: M + (c + 1) * 3 * M] for c in range(3)]
        means = [b[:M] for b in blocks]
        log_s = [b[M:2 * M] for b in blocks]
        coeffs = [b[2 * M:] for b in blocks]
    else:  # C == 1: logits | means | log-scales
        means, log_s, coeffs = [flat[M:2 * M]], [flat[2 * M:3 * M]], []
    lo = -7.0 + math.log(255.0 / (2**bits - 1))
    log_s = [[min(max(v, lo), 20.0) for v in row] for row in log_s]
    top = max(logits)
    log_z = top + math.log(sum(math.exp(v - top) for v in logits))
    return [v - log_z for v in logits], means, log_s, [[math.tanh(v) for v in row] for row in coeffs]


def ref_coupled(flat, x, C, M, bits):
    """Per component: log-weight and, per channel, (mean shifted by the levels of earlier channels, scale)."""
    log_w, means, log_s, coeffs = ref_unpack(flat, C, M, bits)
    value = [grid(bits)[0][k] for k in x]
    pairs = [(1, 0), (2, 0), (2, 1)][: C * (C - 1) // 2]
    out = []
    for m in range(M):
        chans = []
        for c in range(C):
            mu = means[c][m] + sum(coeffs[q][m] * value[j] for q, (cc, j) in enumerate(pairs) if cc == c)
            chans.append((mu, math.exp(log_s[c][m])))
        out.append((log_w[m], chans))
    return out


def sigmoid(t):
    return 1.0 / (1.0 + math.exp(-t)) if t > -700 else 0.0


def ref_log_density(flat, x, y, C, M, bits):
    """log of Σ_m π_m Π_c [logistic pdf(y_c) + edge-bin share of the tail mass beyond -1 - h, 1 + h]."""
    h = grid(bits)[1]
    total = 0.0
    for log_w, chans in ref_coupled(flat, x, C, M, bits):
        prod = math.exp(log_w)
        for (mu, s), k, yc in zip(chans, x, y):
            t = (yc - mu) / s
            dens = math.exp(-abs(t)) / (s * (1.0 + math.exp(-abs(t))) ** 2)
            if k == 0:
                dens += sigmoid((-1.0 - h - mu) / s) / (2 * h)
            if k == 2**bits - 1:
                dens += (1.0 - sigmoid((1.0 + h - mu) / s)) / (2 * h)
            prod *= dens
        total += prod
    return math.log(total)


def logistic_mass(a, b):
    """σ(b) - σ(a) for a < b (±inf allowed), without cancellation in either tail."""
    if a > 0:  # both in the right tail: 1 - σ(t) = σ(-t)
        return sigmoid(-a) - (0.0 if b == math.inf else sigmoid(-b))
    return (1.0 if b == math.inf else sigmoid(b)) - (0.0 if a == -math.inf else sigmoid(a))


def ref_pmf(flat, x, C, M, bits):
    """P(k): logistic masses of [x_k - h, x_k + h], the edge bins extended to ∓∞ (dlogistic's bins)."""
    centres, h = grid(bits)
    total = 0.0
    for log_w, chans in ref_coupled(flat, x, C, M, bits):
        prod = math.exp(log_w)
        for (mu, s), k in zip(chans, x):
            hi = math.inf if k == 2**bits - 1 else (centres[k] + h - mu) / s
            lo = -math.inf if k == 0 else (centres[k] - h - mu) / s
            prod *= logistic_mass(lo, hi)
        total += prod
    return total


def make_params(head, gen, log_scale=(-2.0, 0.0), mean_spread=1.2, dtype=torch.float64):
    """One pixel's parameters (1, P, 1, 1) with log-scales drawn in ``log_scale`` (no clamping)."""
    C, M = head.channels, head.num_mixtures
    flat = torch.randn(head.num_params(), generator=gen, dtype=dtype)
    lo, hi = log_scale
    slots = range(M, M + 3 * C * M) if C == 3 else range(M, 3 * M)
    for i in slots:  # rewrite means and log-scales by their role in the layout
        part = ((i - M) // M) % 3 if C == 3 else (i - M) // M
        r = torch.rand((), generator=gen, dtype=dtype)
        if part == 0:
            flat[i] = mean_spread * (2 * r - 1)
        elif part == 1:
            flat[i] = lo + (hi - lo) * r
    return flat[None, :, None, None]


def set_component(params, C, M, m, mean, log_scale, coeff=0.0):
    """Put component m of every channel at ``mean`` with ``log_scale`` (raw coupling coefficient ``coeff``)."""
    p = params.clone()
    for c in range(C):
        base = M + 3 * M * c if C == 3 else None
        mean_at, scale_at = (base + m, base + M + m) if C == 3 else (M + m, 2 * M + m)
        p[0, mean_at, 0, 0], p[0, scale_at, 0, 0] = mean[c], log_scale
        if C == 3:
            p[0, base + 2 * M + m, 0, 0] = coeff
    return p


# --------------------------------------------------------------------------------- dequantization
@pytest.mark.parametrize("bits", [1, 3, 8, 16])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dequantization_keeps_edge_levels_in_their_own_bins(bits, dtype):
    """Level 0 and level K-1 land in dlogistic's bins [x_k - h, x_k + h] for every u in [0, 1)."""
    centres, h = grid(bits)
    slack = 2 * torch.finfo(dtype).eps  # one rounding of a value near ±1 in u's dtype
    below_one = torch.nextafter(torch.tensor(1.0, dtype=dtype), torch.tensor(0.0, dtype=dtype))
    u = torch.cat([torch.tensor([0.0, 1e-7, 0.5], dtype=dtype), below_one[None],
                   torch.linspace(0.001, 0.999, 101, dtype=dtype)])
    for k in (0, 2**bits - 1):
        y = dequantize(torch.full(u.shape, k), u, bits)
        lo, hi = centres[k] - h, centres[k] + h
        assert (y.double() >= lo - slack).all() and (y.double() <= hi + slack).all(), (k, y.tolist())
        # The bin's own level comes back, by this head's flooring and by dlogistic's rounding, for u away from
        # the bin's inner boundary (u -> 0 for the top level, u -> 1 for level 0), which rounding may cross
        # (float32 resolves only ~128 steps of a bin at 16 bits).
        inner = torch.linspace(0.05, 0.95, 91, dtype=dtype)
        assert (continuous_to_levels(dequantize(torch.full(inner.shape, k), inner, bits), bits) == k).all()
        assert (unit_to_levels(dequantize(torch.full(inner.shape, k), inner, bits), bits) == k).all()
    assert dequantize(torch.tensor([0]), torch.tensor([0.0], dtype=torch.float64), bits).item() == -1.0 - h


@pytest.mark.parametrize("bits", [2, 8, 16])
def test_every_level_dequantizes_into_dlogistics_bin(bits, gen):
    K = 2**bits
    k = torch.arange(K).repeat(3)
    u = torch.rand(len(k), generator=gen, dtype=torch.float64) * 0.998 + 0.001
    y = dequantize(k, u, bits)
    centres = torch.tensor(grid(bits)[0], dtype=torch.float64)[k]
    h = grid(bits)[1]
    assert ((y - centres).abs() < h).all()
    assert torch.equal(continuous_to_levels(y, bits), k)
    assert torch.equal(unit_to_levels(y, bits), k)  # dlogistic's sampler rounding: the same bins
    # Values beyond the range (the folded logistic tails) go to the edge levels.
    assert continuous_to_levels(torch.tensor([-5.0, -1.0 - h, 1.0 + h, 7.0]), bits).tolist() == [0, 0, K - 1, K - 1]


# ------------------------------------------------------------------------------------- density
@pytest.mark.parametrize("channels,bits", [(1, 3), (3, 8), (3, 2)])
def test_log_density_bound_and_induced_pmf_match_float64_formulas(channels, bits, gen):
    head = ContinuousLogisticMixture(channels, bits, num_mixtures=3)
    dlog = DiscretizedLogisticMixture(channels, bits, num_mixtures=3)
    B, H, W = 2, 2, 2
    params = torch.cat([make_params(head, gen, mean_spread=1.4) for _ in range(B * H * W)])
    params = params.reshape(B, H, W, -1).permute(0, 3, 1, 2).contiguous()
    x = torch.randint(0, 2**bits, (B, channels, H, W), generator=gen)
    x[0, :, 0, 0] = 0
    x[0, :, 0, 1] = 2**bits - 1  # the folded edge bins
    u = torch.rand(x.shape, generator=gen, dtype=torch.float64)
    bound = head.dequantized_nll(params, x, u)
    y = dequantize(x, u, bits)
    log_dens = head.log_density(params, y)
    discrete = head.discrete_nll(params, x)
    torch.testing.assert_close(discrete, dlog.nll(params, x), atol=1e-12, rtol=0)
    offset = channels * math.log((2**bits - 1) / 2.0)  # -C·log(bin width 2/(K-1))
    for b, i, j in itertools.product(range(B), range(H), range(W)):
        flat, xs, ys = params[b, :, i, j].tolist(), x[b, :, i, j].tolist(), y[b, :, i, j].tolist()
        ref = ref_log_density(flat, xs, ys, channels, 3, bits)
        assert log_dens[b, i, j].item() == pytest.approx(ref, abs=1e-9)
        assert bound[b, i, j].item() == pytest.approx(-ref + offset, abs=1e-9)
        assert discrete[b, i, j].item() == pytest.approx(-math.log(ref_pmf(flat, xs, channels, 3, bits)), abs=1e-9)


def test_bits_per_dim_term_is_log2_127_5_at_8_bits():
    assert -math.log2(ContinuousLogisticMixture(3, 8).bin_width) == pytest.approx(math.log2(127.5), abs=1e-12)


def gauss_nodes(bits, n):
    """Gauss-Legendre nodes and weights on every bin [x_k - h, x_k + h] (the density is smooth inside a bin)."""
    t, wt = np.polynomial.legendre.leggauss(n)
    centres, h = grid(bits)
    nodes = np.concatenate([c + h * t for c in centres])
    weights = np.concatenate([h * wt for _ in centres])
    return torch.from_numpy(nodes), torch.from_numpy(weights)


@pytest.mark.parametrize("bits,log_scale,mean_spread", [(3, (-4.0, 0.5), 1.5), (1, (-2.0, 1.0), 2.0),
                                                         (8, (-5.0, -3.0), 0.99), (8, (-1.0, 0.5), 1.1)])
def test_density_integrates_to_one_on_one_channel_and_bins_hold_dlogistics_pmf(bits, log_scale, mean_spread, gen):
    head = ContinuousLogisticMixture(1, bits, num_mixtures=4)
    params = make_params(head, gen, log_scale=log_scale, mean_spread=mean_spread)
    params[0, 0:4, 0, 0] = torch.tensor([0.0, 2.0, -1.0, 0.5], dtype=torch.float64)
    if bits == 8:  # one broad component whose tail folds into the bottom bin
        params[0, 4, 0, 0], params[0, 8, 0, 0] = -0.95, 0.0
    nodes, weights = gauss_nodes(bits, 40 if bits < 8 else 12)
    y = nodes[:, None, None, None]
    dens = torch.exp(head.log_density(params.expand(len(y), -1, -1, -1), y))[:, 0, 0]
    assert (dens * weights).sum().item() == pytest.approx(1.0, abs=1e-7)
    # The mass of each bin is the induced pmf: dlogistic's, and the CDF differences written out here.
    per_bin = (dens * weights).reshape(2**bits, -1).sum(dim=1)
    levels = torch.arange(2**bits)[:, None, None, None]
    dlog = DiscretizedLogisticMixture(1, bits, num_mixtures=4)
    torch.testing.assert_close(per_bin, torch.exp(-dlog.nll(params.expand(2**bits, -1, -1, -1), levels))[:, 0, 0],
                               atol=1e-7, rtol=0)
    flat = params[0, :, 0, 0].tolist()
    pmf = [ref_pmf(flat, [k], 1, 4, bits) for k in range(2**bits)]
    torch.testing.assert_close(per_bin, torch.tensor(pmf, dtype=torch.float64), atol=1e-7, rtol=0)


def test_coupled_rgb_density_integrates_to_one_and_bins_hold_dlogistics_pmf(gen):
    """3-D tensor-product quadrature at 2 bits: the coupling jumps only at bin edges, which the nodes respect."""
    bits, n = 2, 10
    head = ContinuousLogisticMixture(3, bits, num_mixtures=2)
    params = make_params(head, gen, log_scale=(-1.5, 0.0), mean_spread=1.3)
    params[0, 0:2, 0, 0] = torch.tensor([0.3, -0.4], dtype=torch.float64)
    nodes, weights = gauss_nodes(bits, n)
    y = torch.cartesian_prod(nodes, nodes, nodes)
    wgrid = torch.cartesian_prod(weights, weights, weights).prod(dim=1)
    dens = torch.exp(head.log_density(params.expand(len(y), -1, -1, -1), y[:, :, None, None]))[:, 0, 0]
    assert (dens * wgrid).sum().item() == pytest.approx(1.0, abs=1e-6)
    box = (dens * wgrid).reshape(4, n, 4, n, 4, n).sum(dim=(1, 3, 5))  # mass per (r, g, b) bin
    levels = torch.tensor(list(itertools.product(range(4), repeat=3)))[:, :, None, None]
    dlog = DiscretizedLogisticMixture(3, bits, num_mixtures=2)
    pmf = torch.exp(-dlog.nll(params.expand(len(levels), -1, -1, -1), levels))[:, 0, 0].reshape(4, 4, 4)
    torch.testing.assert_close(box, pmf, atol=1e-6, rtol=0)
    # The coupling is active: the G marginal given R's bin changes with R's bin.
    g_given_r = box.sum(dim=2) / box.sum(dim=(1, 2))[:, None]
    assert (g_given_r[0] - g_given_r[3]).abs().max() > 1e-2


# --------------------------------------------------------------------------------------- bound
def mc_bound(head, params, x, draws, seed):
    """Monte Carlo mean and standard error of the bound, one dequantization per replicated pixel."""
    g = torch.Generator().manual_seed(seed)
    vals = head.nll(params.expand(draws, -1, -1, -1), x.expand(draws, -1, -1, -1), generator=g)[:, 0, 0]
    return vals.mean().item(), vals.std().item() / math.sqrt(draws)


@pytest.mark.parametrize("bits", [8, 3])
@pytest.mark.parametrize("channels", [1, 3])
def test_expected_bound_exceeds_dlogistics_exact_nll(bits, channels, gen):
    """Jensen: E_u[-log(p(y)·w)] >= -log ∫_bin p = -log P(k), and P is dlogistic's pmf with the same params.

    Cases: data drawn from the model, and the edge levels under a dominant component near the edge, sharp
    (scale h, mean on the bin's inner boundary) and broad (scale 2h, i.e. a bin, centred on the neighbouring
    level, so that 18% of its mass is the tail folded into the edge bin). The Jensen gap shrinks like
    (bin/scale)^2 and its standard error only like bin/scale, so broader logistics are left to the quadrature
    test below. 40,000 draws each; the mean must clear dlogistic's NLL by 5 standard errors.
    """
    M, K = 3, 2**bits
    h = grid(bits)[1]
    head = ContinuousLogisticMixture(channels, bits, num_mixtures=M)
    dlog = DiscretizedLogisticMixture(channels, bits, num_mixtures=M)
    params = make_params(head, gen, log_scale=(math.log(h) - 0.5, math.log(h) + 0.5), mean_spread=0.9)
    params[0, :M, 0, 0] = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)  # component 0 dominates
    lo_hi = [-1.0 + h, 1.0 - h, -1.0 + h][:channels]  # on the inner edge of the edge bins
    sharp = set_component(params, channels, M, 0, lo_hi, math.log(h))
    broad = set_component(params, channels, M, 0, [-1.0 + 2 * h, 1.0 - 2 * h, -1.0 + 2 * h][:channels],
                          math.log(2 * h))
    edge = [0, K - 1, 0][:channels]
    drawn = head.sample(params.expand(2, -1, -1, -1), generator=gen)[:, :, 0, 0].tolist()
    cases = [(params, x) for x in drawn] + [(sharp, edge), (broad, edge), (sharp, [1, K - 2, 1][:channels])]
    for i, (p, x) in enumerate(cases):
        xs = torch.tensor(x)[None, :, None, None]
        target = dlog.nll(p, xs).item()
        mean, se = mc_bound(head, p, xs, 40_000, seed=i)
        assert mean - 5 * se > target, (i, x, mean, se, target)


@pytest.mark.parametrize("bits,channels", [(8, 1), (3, 1), (8, 3), (3, 3)])
def test_expected_bound_by_quadrature_is_at_least_dlogistics_nll_even_for_broad_logistics(bits, channels, gen):
    """Where the logistic is broad the Jensen gap is ~1e-8, below any Monte Carlo error: the expectation over
    u ∈ [0, 1)^C by Gauss-Legendre quadrature (smooth integrand, 12 nodes per channel) must still be >= it.
    Scales run from 2.7 to 20 bins; trial 0 puts a component of scale 7 bins on the edge levels."""
    M, K = 2, 2**bits
    h = grid(bits)[1]
    head = ContinuousLogisticMixture(channels, bits, num_mixtures=M)
    dlog = DiscretizedLogisticMixture(channels, bits, num_mixtures=M)
    t, wt = np.polynomial.legendre.leggauss(12)
    t, wt = torch.from_numpy((t + 1) / 2), torch.from_numpy(wt / 2)
    u = torch.cartesian_prod(*[t] * channels).reshape(-1, channels)
    w = torch.cartesian_prod(*[wt] * channels).reshape(-1, channels).prod(dim=1)
    for trial in range(4):
        params = make_params(head, gen, log_scale=(math.log(h) + 1.0, math.log(h) + 3.0), mean_spread=1.3)
        if trial == 0:  # a broad component centred on the edge levels, half its mass folded into their bins
            params = set_component(params, channels, M, 0, [-1.0, 1.0, -1.0][:channels], math.log(h) + 2.0)
        for x in ([0, K - 1, 0][:channels], [K - 1, 0, K // 2][:channels], [1, K // 2, K - 2][:channels]):
            xs = torch.tensor(x)[None, :, None, None]
            vals = head.dequantized_nll(params.expand(len(u), -1, -1, -1), xs.expand(len(u), -1, -1, -1),
                                        u[:, :, None, None])[:, 0, 0]
            gap = (vals * w).sum().item() - dlog.nll(params, xs).item()
            assert gap >= -1e-12, (trial, x, gap)


def test_nll_draws_noise_from_the_generator(gen):
    head = ContinuousLogisticMixture(3, 8, num_mixtures=2, num_draws=3)
    params = torch.randn(2, head.num_params(), 3, 3, generator=gen, dtype=torch.float64)
    x = torch.randint(0, 256, (2, 3, 3, 3), generator=gen)
    a = head.nll(params, x, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, head.nll(params, x, generator=torch.Generator().manual_seed(5)))
    assert not torch.equal(a, head.nll(params, x, generator=torch.Generator().manual_seed(6)))
    assert not torch.equal(head.nll(params, x), head.nll(params, x))  # fresh global noise per call
    # num_draws = 3 averages three bounds, each with one U(0, 1) tensor of x's shape, in draw order.
    g = torch.Generator().manual_seed(5)
    draws = [head.dequantized_nll(params, x, torch.rand(x.shape, generator=g, dtype=torch.float64))
             for _ in range(3)]
    torch.testing.assert_close(a, sum(draws) / 3, atol=1e-12, rtol=0)
    with pytest.raises(ValueError, match="num_draws"):
        ContinuousLogisticMixture(3, 8, num_draws=0)


def test_model_reports_a_bound():
    m = pixelzoo.create_model(backbone="pixelcnnpp", head="clogistic", image_shape=(1, 8, 8), nr_filters=8,
                              nr_resnet=1, num_draws=2)
    assert m.exact_likelihood is False and m.head.num_draws == 2
    assert pixelzoo.create_model(backbone="pixelcnnpp", head="dlogistic", nr_filters=8,
                                 nr_resnet=1).exact_likelihood is True


# ------------------------------------------------------------------------------------ sampling
def test_sampler_frequencies_match_the_induced_pmf(gen):
    """40,000 draws of one RGB pixel at 2 bits: the coupling must use the sampled levels."""
    head = ContinuousLogisticMixture(3, 2, num_mixtures=2)
    params = make_params(head, gen, log_scale=(-1.5, -0.5), mean_spread=1.0)
    N = 40_000
    draws = head.sample(params.expand(N, -1, -1, -1).float(), generator=gen)[:, :, 0, 0]
    assert draws.dtype == torch.int64 and draws.min() >= 0 and draws.max() <= 3
    counts = torch.bincount(draws[:, 0] * 16 + draws[:, 1] * 4 + draws[:, 2], minlength=64).double()
    flat = params[0, :, 0, 0].tolist()
    p = torch.tensor([ref_pmf(flat, list(v), 3, 2, 2)
                      for v in itertools.product(range(4), repeat=3)], dtype=torch.float64)
    assert p.sum().item() == pytest.approx(1.0, abs=1e-12)
    z = (counts / N - p).abs() / torch.sqrt(p * (1 - p) / N)
    # Per-cell two-sided tail at 5 sd is 6e-7; over 64 cells a false alarm has probability < 4e-5.
    assert z.max().item() < 5.0, z.max().item()
