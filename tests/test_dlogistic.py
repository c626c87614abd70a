"""The discretized logistic mixture head against independent computations (DESIGN §5)."""
import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pixelzoo.heads.dlogistic import DiscretizedLogisticMixture


def _random_params(head, n, gen, scale=1.0):
    return torch.randn(n, head.num_params(), 1, 1, generator=gen, dtype=torch.float64) * scale


def _extreme_params(head, gen, n=6):
    """Rows of parameters at the edges: tiny and huge scales, far-away means, saturated couplings."""
    M, C = head.num_mixtures, head.channels
    rows = []
    for case in range(n):
        p = torch.randn(head.num_params(), generator=gen, dtype=torch.float64)
        logits, means, log_s, coeffs = _split_reference(p, C, M)
        if case == 0:
            log_s.fill_(-30.0)          # far below the floor
        elif case == 1:
            log_s.fill_(60.0)           # far above the ceiling
        elif case == 2:
            means.mul_(50.0)            # means far outside [-1, 1]
        elif case == 3:
            coeffs.fill_(80.0)          # tanh saturates at +1
            log_s.fill_(-7.0)
        elif case == 4:
            logits.mul_(40.0)
            coeffs.fill_(-80.0)
        else:
            means.fill_(1.0)
            log_s.fill_(-7.0)
        rows.append(p)
    return torch.stack(rows)[:, :, None, None]


def _split_reference(p, C, M):
    """Views (logits, means, log_scales, coeffs) of one flat parameter vector in the reference layout."""
    logits = p[:M]
    if C == 3:
        blocks = p[M:].view(3, 3, M)          # [channel][means | log_scales | coeffs][component]
        return logits, blocks[:, 0], blocks[:, 1], blocks[:, 2]
    blocks = p[M:M + 2 * C * M].view(C, 2, M)
    return logits, blocks[:, 0], blocks[:, 1], p[M + 2 * C * M:].view(-1, M)


def brute_force_nll(p, x, C, M, bits, log_scale_min, log_scale_max=20.0):
    """Negative log-probability of one pixel from the paper's formula, term by term, in float64 numpy."""
    p = p.double().numpy().reshape(-1)
    logits, means, log_s, coeffs = (np.asarray(t) for t in _split_reference(torch.from_numpy(p), C, M))
    K = 2**bits
    xs = [2 * int(k) / (K - 1) - 1 for k in x]
    hb = 1.0 / (K - 1)
    sig = lambda z: 1.0 / (1.0 + math.exp(-z)) if z > -700 else 0.0  # noqa: E731
    w = np.exp(logits - logits.max())
    w = w / w.sum()
    total = 0.0
    pairs = [(c, j) for c in range(1, C) for j in range(c)]
    for m in range(M):
        prob = w[m]
        for c in range(C):
            mu = means[c, m] + sum(math.tanh(coeffs[q, m]) * xs[j] for q, (cc, j) in enumerate(pairs) if cc == c)
            s = math.exp(min(max(log_s[c, m], log_scale_min), log_scale_max))
            upper = 1.0 if int(x[c]) == K - 1 else sig((xs[c] + hb - mu) / s)
            lower = 0.0 if int(x[c]) == 0 else sig((xs[c] - hb - mu) / s)
            prob *= upper - lower
        total += prob
    return -math.log(total)


@pytest.mark.parametrize("C,bits,M", [(1, 8, 3), (3, 8, 4), (3, 5, 2), (1, 1, 2), (3, 1, 3), (2, 4, 2)])
def test_nll_matches_brute_force(C, bits, M, gen):
    head = DiscretizedLogisticMixture(C, bits, M)
    n = 40
    params = _random_params(head, n, gen, scale=0.7)
    x = torch.randint(0, 2**bits, (n, C, 1, 1), generator=gen)
    x[:4] = 0
    x[4:8] = 2**bits - 1  # edge bins
    got = head.nll(params, x)[:, 0, 0]
    want = torch.tensor([brute_force_nll(params[i], x[i, :, 0, 0], C, M, bits, head.log_scale_min)
                         for i in range(n)], dtype=torch.float64)
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)
    got32 = head.nll(params.float(), x)[:, 0, 0].double()
    torch.testing.assert_close(got32, want, rtol=2e-5, atol=2e-5)


def _total_probability_over_all_levels(head, params_row):
    """Σ over every joint value of one pixel's sub-pixels of exp(-nll), in float64 (chunks over channel 0)."""
    K, C = head.levels, head.channels
    rest = torch.tensor(list(itertools.product(range(K), repeat=C - 1)), dtype=torch.int64).reshape(K ** (C - 1), C - 1)
    total = 0.0
    for k0 in range(K):
        x = torch.cat([torch.full((rest.shape[0], 1), k0), rest], dim=1)[:, :, None, None]
        p = params_row.expand(x.shape[0], -1, -1, -1)
        total += torch.exp(-head.nll(p, x).double()).sum().item()
    return total


@pytest.mark.parametrize("C,bits", [(1, 1), (1, 5), (1, 8), (3, 1), (3, 5)])
def test_probabilities_sum_to_one(C, bits, gen):
    """The whole joint over every value of a pixel sums to one, random and extreme parameters."""
    head = DiscretizedLogisticMixture(C, bits, num_mixtures=3)
    rows = torch.cat([_random_params(head, 2, gen), _extreme_params(head, gen)])
    for row in rows:
        # float32 is the production path: the sum must still be 1 to 1e-5
        total = _total_probability_over_all_levels(head, row[None].float())
        assert abs(total - 1.0) < 1e-5, (total, row.flatten()[:8])


@pytest.mark.parametrize("channel", [0, 1, 2])
@pytest.mark.parametrize("given", [0, 255])
def test_each_conditional_sums_to_one_at_8_bits(channel, given, gen):
    """R; G given R; B given R, G, at 8 bits: the other sub-pixels are pinned to one level with probability
    exactly 1 (means 50 away, beyond every level), so summing the joint over the 256 values of one
    sub-pixel sums that sub-pixel's conditional alone."""
    head = DiscretizedLogisticMixture(3, 8, num_mixtures=3)
    rows = torch.cat([_random_params(head, 2, gen), _extreme_params(head, gen)])
    for row in rows:
        row = row.view(-1).clone()
        _, means, log_s, _ = _split_reference(row, 3, 3)
        for c in range(3):
            if c != channel:
                means[c] = 50.0 if given == 255 else -50.0
                log_s[c] = -7.0
        x = torch.full((256, 3, 1, 1), given, dtype=torch.int64)
        x[:, channel, 0, 0] = torch.arange(256)
        total = torch.exp(-head.nll(row[None, :, None, None].float().expand(256, -1, -1, -1), x).double()).sum()
        assert abs(total.item() - 1.0) < 1e-5, total


def test_conditionals_sum_to_one_at_8_bits(gen):
    """With one component the joint factorises, so Σ_B P(R, G, B) = P(R) P(G | R) whatever B's parameters
    are (B's conditional is normalised), and Σ_{G,B} P = P(R) whatever G's and B's parameters are."""
    head = DiscretizedLogisticMixture(3, 8, num_mixtures=1)
    base = _random_params(head, 1, gen).view(-1)
    levels = torch.arange(256)
    gb = torch.tensor(list(itertools.product(range(256), range(256))))

    def variants(channel):
        out = []
        for mean, log_s, coeff in [(0.3, -2.0, 0.0), (40.0, -7.0, 80.0), (-3.0, 30.0, -80.0), (0.9, -30.0, 1.0)]:
            p = base.clone()
            _, means, log_scales, coeffs = _split_reference(p, 3, 1)
            means[channel], log_scales[channel] = mean, log_s
            coeffs[1:] = coeff if channel == 2 else coeffs[1:]  # β, γ couple into B
            if channel == 1:
                coeffs[0] = coeff                                # α couples into G
            out.append(p[None, :, None, None])
        return out

    for r, g in [(0, 0), (255, 17), (100, 255)]:
        x = torch.stack([torch.full((256,), r), torch.full((256,), g), levels], dim=1)[:, :, None, None]
        sums = [torch.exp(-head.nll(p.expand(256, -1, -1, -1), x)).sum().item() for p in variants(2)]
        assert max(sums) - min(sums) < 1e-12 and sums[0] > 0
        x2 = torch.cat([torch.full((gb.shape[0], 1), r), gb], dim=1)[:, :, None, None]
        sums = [torch.exp(-head.nll(p.expand(gb.shape[0], -1, -1, -1), x2)).sum().item() for p in variants(1)]
        assert max(sums) - min(sums) < 1e-10 * max(sums) and sums[0] > 0


@settings(max_examples=150, deadline=None, derandomize=True)
@given(
    C=st.sampled_from([1, 3]),
    bits=st.sampled_from([1, 3, 8, 12, 16]),
    magnitude=st.floats(0.0, 1e4),
    seed=st.integers(0, 2**31 - 1),
    level_kind=st.sampled_from(["low", "high", "random"]),
)
def test_nll_and_gradients_finite_for_extreme_parameters(C, bits, magnitude, seed, level_kind):
    head = DiscretizedLogisticMixture(C, bits, num_mixtures=3)
    g = torch.Generator().manual_seed(seed)
    n = 16  # 150 examples x 16 pixels = 2400 extreme draws
    params = (torch.randn(n, head.num_params(), 1, 1, generator=g) * magnitude).requires_grad_(True)
    K = 2**bits
    if level_kind == "low":
        x = torch.zeros(n, C, 1, 1, dtype=torch.int64)
    elif level_kind == "high":
        x = torch.full((n, C, 1, 1), K - 1, dtype=torch.int64)
    else:
        x = torch.randint(0, K, (n, C, 1, 1), generator=g)
    nll = head.nll(params, x)
    assert torch.isfinite(nll).all()
    assert (nll >= -1e-6).all()  # a probability never exceeds 1
    nll.sum().backward()
    assert torch.isfinite(params.grad).all()


def _head_probabilities(head, params_row):
    K, C = head.levels, head.channels
    grid = torch.tensor(list(itertools.product(range(K), repeat=C)))[:, :, None, None]
    return torch.exp(-head.nll(params_row.expand(grid.shape[0], -1, -1, -1), grid).double()).flatten()


@pytest.mark.parametrize("C,bits", [(1, 8), (3, 2), (3, 3)])
def test_sampler_frequencies_match_probabilities(C, bits):
    gen = torch.Generator().manual_seed(7)
    head = DiscretizedLogisticMixture(C, bits, num_mixtures=3)
    row = torch.randn(1, head.num_params(), 1, 1, generator=gen, dtype=torch.float64) * 0.8
    if C == 3:
        _, means, log_s, coeffs = _split_reference(row.view(-1), C, 3)
        log_s.fill_(-1.0)
        coeffs.fill_(1.5)   # strong coupling, so a wrong conditioning value shows up
    probs = _head_probabilities(head, row)
    n = 40_000
    draws = head.sample(row.expand(n, -1, -1, -1), generator=gen)[:, :, 0, 0]
    K = head.levels
    codes = sum(draws[:, c] * K ** (C - 1 - c) for c in range(C))
    counts = torch.bincount(codes, minlength=K**C).double()
    expected = probs * n
    keep = expected >= 5  # chi-square on cells with enough mass; the rest pooled
    chi2 = (((counts[keep] - expected[keep]) ** 2) / expected[keep]).sum()
    pooled_e, pooled_c = expected[~keep].sum(), counts[~keep].sum()
    if pooled_e > 0:
        chi2 += (pooled_c - pooled_e) ** 2 / max(pooled_e, 1e-9)
    dof = int(keep.sum()) + (1 if pooled_e > 0 else 0) - 1
    # mean dof, sd sqrt(2 dof): 6 sd above the mean is far out of reach for a correct sampler
    assert chi2 < dof + 6 * math.sqrt(2 * dof), (chi2.item(), dof)


def test_sampling_is_reproducible_with_a_generator():
    head = DiscretizedLogisticMixture(3, 8, 5)
    params = torch.randn(4, head.num_params(), 3, 3, generator=torch.Generator().manual_seed(0))
    a = head.sample(params, generator=torch.Generator().manual_seed(5))
    b = head.sample(params, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and a.dtype == torch.int64 and a.min() >= 0 and a.max() <= 255


def test_layout_is_the_reference_one():
    """Channel k < M is logit k; mean of sub-pixel c, component k is at M + 3Mc + k, etc."""
    M = 4
    head = DiscretizedLogisticMixture(3, 8, M)
    assert head.num_params() == 10 * M
    assert DiscretizedLogisticMixture(1, 8, M).num_params() == 3 * M
    p = torch.zeros(1, 10 * M, 1, 1, dtype=torch.float64)
    p[0, :M, 0, 0] = torch.tensor([-50.0, 50.0, -50.0, -50.0])     # component 1 only
    p[0, M + 3 * M * 1 + 1] = 0.5        # mean of G, component 1
    p[0, M + 3 * M * 1 + M + 1] = -7.0   # log-scale of G, component 1
    p[0, M + 3 * M * 0 + 2 * M + 1] = 50.0   # α (G←R) -> tanh = 1, stored in channel slot 0
    # G's mean is 0.5 + 1·x_R; with x_R = -1 (level 0) it sits at -0.5 -> level round(0.25*255) = 64
    x = torch.tensor([[0, 64, 128]])[:, :, None, None]
    x_off = torch.tensor([[0, 191, 128]])[:, :, None, None]
    assert head.nll(p, x)[0, 0, 0] < head.nll(p, x_off)[0, 0, 0] - 5


def test_bad_params_shape_is_a_clear_error():
    head = DiscretizedLogisticMixture(3, 8, 5)
    with pytest.raises(ValueError, match=r"\(B, 50, H, W\)"):
        head.nll(torch.zeros(1, 49, 2, 2), torch.zeros(1, 3, 2, 2, dtype=torch.int64))
    with pytest.raises(ValueError, match="integer levels"):
        head.nll(torch.zeros(1, 50, 2, 2), torch.zeros(1, 3, 2, 2))
    with pytest.raises(ValueError, match="bits"):
        DiscretizedLogisticMixture(3, 17, 5)
