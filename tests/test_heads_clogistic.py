"""clogistic: dequantization, the density (normalised, against float64 formulas), the bound, the sampler."""
import itertools
import math

import numpy as np
import pytest
import torch

import pixelzoo
from pixelzoo.heads.clogistic import ContinuousLogisticMixture, continuous_to_levels, dequantize
from pixelzoo.heads.dlogistic import DiscretizedLogisticMixture


# ------------------------------------------------------------------ float64 references, written out
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
    value = [2.0 * k / (2**bits - 1) - 1.0 for k in x]
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
    """log of Σ_m π_m Π_c [logistic pdf(y_c) + edge-bin share of the tail mass beyond ±1]."""
    w = 2.0 / 2**bits
    total = 0.0
    for log_w, chans in ref_coupled(flat, x, C, M, bits):
        prod = math.exp(log_w)
        for (mu, s), k, yc in zip(chans, x, y):
            t = (yc - mu) / s
            dens = math.exp(-abs(t)) / (s * (1.0 + math.exp(-abs(t))) ** 2)
            if k == 0:
                dens += sigmoid((-1.0 - mu) / s) / w
            if k == 2**bits - 1:
                dens += (1.0 - sigmoid((1.0 - mu) / s)) / w
            prod *= dens
        total += prod
    return math.log(total)


def logistic_mass(a, b):
    """σ(b) - σ(a) for a < b (±inf allowed), without cancellation in either tail."""
    if a > 0:  # both in the right tail: 1 - σ(t) = σ(-t)
        return sigmoid(-a) - (0.0 if b == math.inf else sigmoid(-b))
    return (1.0 if b == math.inf else sigmoid(b)) - (0.0 if a == -math.inf else sigmoid(a))


def ref_pmf(flat, x, C, M, bits):
    """P(k) = ∫_bins density: logistic masses of [-1 + k·w, -1 + (k+1)·w], the edge bins extended to ∓∞."""
    w = 2.0 / 2**bits
    total = 0.0
    for log_w, chans in ref_coupled(flat, x, C, M, bits):
        prod = math.exp(log_w)
        for (mu, s), k in zip(chans, x):
            hi = math.inf if k == 2**bits - 1 else (-1.0 + (k + 1) * w - mu) / s
            lo = -math.inf if k == 0 else (-1.0 + k * w - mu) / s
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


# --------------------------------------------------------------------------------- dequantization
@pytest.mark.parametrize("bits", [1, 3, 8, 16])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dequantization_keeps_edge_levels_in_their_own_bins(bits, dtype):
    w = 2.0 / 2**bits
    below_one = torch.nextafter(torch.tensor(1.0, dtype=dtype), torch.tensor(0.0, dtype=dtype))
    u = torch.stack([torch.tensor(0.0, dtype=dtype), torch.tensor(1e-7, dtype=dtype),
                     torch.tensor(0.5, dtype=dtype), below_one])
    for k in (0, 2**bits - 1):
        y = dequantize(torch.full((4,), k), u, bits).double()
        lo, hi = -1.0 + k * w, -1.0 + (k + 1) * w
        # Inside the closed bin for every u in [0, 1); float rounding may only touch the upper edge.
        assert (y >= lo).all() and (y <= hi).all(), (k, y.tolist())
        assert continuous_to_levels(y[:3], bits).tolist() == [k] * 3
    assert dequantize(torch.tensor([0]), torch.tensor([0.0], dtype=dtype), bits).item() == -1.0


def test_bins_tile_the_range_at_8_and_16_bits(gen):
    for bits in (8, 16):
        k = torch.arange(2**bits)
        u = torch.rand(2**bits, generator=gen, dtype=torch.float64) * 0.98 + 0.01
        assert torch.equal(continuous_to_levels(dequantize(k, u, bits), bits), k)
    # Values beyond ±1 (logistic tails) go to the edge levels.
    assert continuous_to_levels(torch.tensor([-5.0, -1.0, 1.0, 7.0]), 8).tolist() == [0, 0, 255, 255]


# ------------------------------------------------------------------------------------- density
@pytest.mark.parametrize("channels,bits", [(1, 3), (3, 8), (3, 2)])
def test_log_density_and_bound_match_float64_formulas(channels, bits, gen):
    head = ContinuousLogisticMixture(channels, bits, num_mixtures=3)
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
    offset = channels * math.log(2**bits / 2.0)  # -C·log(bin width 2/2**bits)
    for b, i, j in itertools.product(range(B), range(H), range(W)):
        flat, xs, ys = params[b, :, i, j].tolist(), x[b, :, i, j].tolist(), y[b, :, i, j].tolist()
        ref = ref_log_density(flat, xs, ys, channels, 3, bits)
        assert log_dens[b, i, j].item() == pytest.approx(ref, abs=1e-9)
        assert bound[b, i, j].item() == pytest.approx(-ref + offset, abs=1e-9)
        assert head.discrete_nll(params, x)[b, i, j].item() == pytest.approx(
            -math.log(ref_pmf(flat, xs, channels, 3, bits)), abs=1e-9)


def gauss_nodes(bits, n):
    """Gauss-Legendre nodes and weights on every bin of [-1, 1] (the density is smooth inside a bin)."""
    t, wt = np.polynomial.legendre.leggauss(n)
    w = 2.0 / 2**bits
    nodes = np.concatenate([-1.0 + (k + 0.5) * w + 0.5 * w * t for k in range(2**bits)])
    weights = np.concatenate([0.5 * w * wt for _ in range(2**bits)])
    return torch.from_numpy(nodes), torch.from_numpy(weights)


@pytest.mark.parametrize("bits,log_scale,mean_spread", [(3, (-4.0, 0.5), 1.5), (1, (-2.0, 1.0), 2.0),
                                                         (8, (-5.0, -3.0), 0.99)])
def test_density_integrates_to_one_on_one_channel(bits, log_scale, mean_spread, gen):
    head = ContinuousLogisticMixture(1, bits, num_mixtures=4)
    params = make_params(head, gen, log_scale=log_scale, mean_spread=mean_spread)
    nodes, weights = gauss_nodes(bits, 40 if bits < 8 else 12)
    y = nodes[:, None, None, None]
    dens = torch.exp(head.log_density(params.expand(len(y), -1, -1, -1), y))[:, 0, 0]
    assert (dens * weights).sum().item() == pytest.approx(1.0, abs=1e-7)
    # And the mass of each bin is the induced pmf (computed by CDF differences).
    per_bin = (dens * weights).reshape(2**bits, -1).sum(dim=1)
    flat = params[0, :, 0, 0].tolist()
    pmf = [ref_pmf(flat, [k], 1, 4, bits) for k in range(2**bits)]
    torch.testing.assert_close(per_bin, torch.tensor(pmf, dtype=torch.float64), atol=1e-7, rtol=0)


def test_coupled_rgb_density_integrates_to_one(gen):
    """3-D tensor-product quadrature at 2 bits: the coupling jumps only at bin edges, which the nodes respect."""
    bits, n = 2, 10
    head = ContinuousLogisticMixture(3, bits, num_mixtures=2)
    params = make_params(head, gen, log_scale=(-1.5, 0.0), mean_spread=1.3)
    params[0, 0:2, 0, 0] = torch.tensor([0.3, -0.4], dtype=torch.float64)
    nodes, weights = gauss_nodes(bits, n)
    grid = torch.cartesian_prod(nodes, nodes, nodes)
    wgrid = torch.cartesian_prod(weights, weights, weights).prod(dim=1)
    dens = torch.exp(head.log_density(params.expand(len(grid), -1, -1, -1), grid[:, :, None, None]))[:, 0, 0]
    assert (dens * wgrid).sum().item() == pytest.approx(1.0, abs=1e-6)
    # The coupling is active: the G marginal given R's bin changes with R's bin.
    box = (dens * wgrid).reshape(4, n, 4, n, 4, n).sum(dim=(1, 3, 5))  # mass per (r, g, b) bin
    g_given_r = box.sum(dim=2) / box.sum(dim=(1, 2))[:, None]
    assert (g_given_r[0] - g_given_r[3]).abs().max() > 1e-2


# --------------------------------------------------------------------------------------- bound
def mc_bound(head, params, x, draws, seed):
    """Monte Carlo mean and standard error of the bound, one dequantization per replicated pixel."""
    g = torch.Generator().manual_seed(seed)
    vals = head.nll(params.expand(draws, -1, -1, -1), x.expand(draws, -1, -1, -1), generator=g)[:, 0, 0]
    return vals.mean().item(), vals.std().item() / math.sqrt(draws)


def test_expected_bound_exceeds_the_induced_discrete_nll_at_8_bits(gen):
    """Jensen: E_u[-log(p(y)·w)] >= -log ∫_bin p = -log P(k), P computed here by CDF differences."""
    head = ContinuousLogisticMixture(3, 8, num_mixtures=3)
    params = make_params(head, gen, log_scale=(-6.5, -5.5), mean_spread=0.9)
    # Data points the model finds plausible (drawn from it), and the edge levels where component 0 sits
    # on the edges (means -1, +1, -1, no coupling), so that the folded tails matter.
    edges = params.clone()
    M = 3
    for c, mu in enumerate((-1.0, 1.0, -1.0)):
        edges[0, M + 3 * M * c, 0, 0], edges[0, M + 3 * M * c + 2 * M, 0, 0] = mu, 0.0
    cases = [(params, x) for x in head.sample(params.expand(3, -1, -1, -1), generator=gen)[:, :, 0, 0].tolist()]
    for params, x in cases + [(edges, [0, 255, 0]), (edges, [1, 254, 0])]:
        flat = params[0, :, 0, 0].tolist()
        target = -math.log(ref_pmf(flat, x, 3, 3, 8))
        mean, se = mc_bound(head, params, torch.tensor(x)[None, :, None, None], 4000, seed=sum(x))
        assert mean - 5 * se > target, (x, mean, se, target)


def test_expected_bound_exceeds_dlogistic_nll_where_the_bins_coincide(gen):
    """At 1 bit the bins of clogistic ([-1, 0], [0, 1], tails folded) and dlogistic (levels ±1, edges at 0,
    extended to ∓∞) are the same, so its induced pmf is dlogistic's and the bound is >= dlogistic's exact NLL.

    At more bits the grids differ (clogistic's bin edges are ``-1 + k·2/2**bits``, dlogistic's are
    ``(2k+1)/(2**bits-1) - 1``), and the theorem holds against clogistic's own induced pmf (test above).
    """
    head = ContinuousLogisticMixture(3, 1, num_mixtures=3)
    dlog = DiscretizedLogisticMixture(3, 1, num_mixtures=3)
    params = make_params(head, gen, log_scale=(-2.0, -0.5), mean_spread=1.0)
    xs = torch.tensor(list(itertools.product(range(2), repeat=3)))[:, :, None, None]
    pexp = params.expand(len(xs), -1, -1, -1)
    torch.testing.assert_close(head.discrete_nll(pexp, xs), dlog.nll(pexp, xs), atol=1e-12, rtol=0)
    for x in xs:
        target = dlog.nll(params, x[None]).item()
        mean, se = mc_bound(head, params, x[None], 4000, seed=int(x.sum()))
        assert mean - 5 * se > target, (x.tolist(), mean, se, target)


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
