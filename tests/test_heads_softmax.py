"""softmax256: layout, normalisation, NLL and sampling against float64 references written here."""
import itertools
import math

import pytest
import torch

import pixelzoo
from pixelzoo.heads.softmax import CoupledSoftmax

PAIRS_RGB = [(1, 0), (2, 0), (2, 1)]  # (c, j): G←R, B←R, B←G, the documented slot order


def reference_log_probs(params, x, bits):
    """log p(x_c | x_<c) for one pixel, by explicit float64 sums over the documented layout.

    params: sequence of P floats, x: sequence of C levels -> list of C floats.
    """
    K = 2**bits
    C = len(x)
    pairs = [(c, j) for c in range(1, C) for j in range(c)]
    value = [2.0 * k / (K - 1) - 1.0 for k in x]
    out = []
    for c in range(C):
        logits = []
        for k in range(K):
            a = float(params[c * K + k])
            for q, (cc, j) in enumerate(pairs):
                if cc == c:
                    a += float(params[C * K + q * K + k]) * value[j]
            logits.append(a)
        top = max(logits)
        log_z = top + math.log(sum(math.exp(v - top) for v in logits))
        out.append(logits[x[c]] - log_z)
    return out


def all_levels(channels, bits):
    """Every joint value of one pixel as a batch: (K**C, C, 1, 1) int64."""
    combos = list(itertools.product(range(2**bits), repeat=channels))
    return torch.tensor(combos, dtype=torch.int64)[:, :, None, None]


def test_param_count_is_the_papers_1536():
    assert CoupledSoftmax(3, 8).num_params() == 1536
    assert CoupledSoftmax(1, 8).num_params() == 256
    assert CoupledSoftmax(3, 2).num_params() == 3 * 4 + 3 * 4
    assert CoupledSoftmax(4, 1).num_params() == 4 * 2 + 6 * 2
    m = pixelzoo.create_model(backbone="pixelcnnpp", head="softmax256", image_shape=(3, 8, 8),
                              nr_filters=8, nr_resnet=1)
    assert m(torch.zeros(1, 3, 8, 8, dtype=torch.uint8)).shape == (1, 1536, 8, 8)


def test_bits_limit_is_enforced():
    CoupledSoftmax(3, 10)
    with pytest.raises(ValueError, match="1..10"):
        CoupledSoftmax(3, 11)


@pytest.mark.parametrize("channels,bits", [(3, 3), (1, 8), (2, 2)])
def test_nll_matches_float64_reference(channels, bits, gen):
    head = CoupledSoftmax(channels, bits)
    B, H, W = 2, 2, 3
    params = 3.0 * torch.randn(B, head.num_params(), H, W, generator=gen, dtype=torch.float64)
    x = torch.randint(0, 2**bits, (B, channels, H, W), generator=gen)
    nll = head.nll(params, x)
    per_channel = head.channel_log_probs(params, x)
    for b, i, j in itertools.product(range(B), range(H), range(W)):
        ref = reference_log_probs(params[b, :, i, j].tolist(), x[b, :, i, j].tolist(), bits)
        assert per_channel[b, :, i, j].tolist() == pytest.approx(ref, abs=1e-10)
        assert nll[b, i, j].item() == pytest.approx(-sum(ref), abs=1e-10)
    # The float32 path agrees with float64 to float32 precision.
    torch.testing.assert_close(head.nll(params.float(), x), nll.float(), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("scale", [1.0, 30.0, 1e4])
def test_joint_and_conditionals_normalise(scale, gen):
    """Σ over all K**3 pixel values of p(r, g, b) = 1, and each conditional sums to 1 in every context."""
    head = CoupledSoftmax(3, 2)
    x = all_levels(3, 2)
    params = (scale * torch.randn(1, head.num_params(), 1, 1, generator=gen)).expand(len(x), -1, -1, -1)
    joint = torch.exp(-head.nll(params, x)).sum().item()
    assert joint == pytest.approx(1.0, abs=1e-5)
    p = torch.exp(head.channel_log_probs(params, x))[:, :, 0, 0].double().reshape(4, 4, 4, 3)
    torch.testing.assert_close(p[:, 0, 0, 0].sum(), torch.tensor(1.0, dtype=torch.float64), atol=1e-5, rtol=0)
    torch.testing.assert_close(p[:, :, 0, 1].sum(dim=1), torch.ones(4, dtype=torch.float64), atol=1e-5, rtol=0)
    torch.testing.assert_close(p[:, :, :, 2].sum(dim=2), torch.ones(4, 4, dtype=torch.float64), atol=1e-5, rtol=0)


@pytest.mark.parametrize("channels", [1, 3])
def test_every_256_level_conditional_sums_to_one(channels, gen):
    """At 8 bits, for random contexts and extreme parameters, including the edge levels."""
    head = CoupledSoftmax(channels, 8)
    for scale in (1.0, 1e3):
        params = scale * torch.randn(1, head.num_params(), 1, 1, generator=gen)
        context = torch.randint(0, 256, (1, channels, 1, 1), generator=gen)
        for c in range(channels):
            x = context.repeat(256, 1, 1, 1)
            x[:, c, 0, 0] = torch.arange(256)
            logp = head.channel_log_probs(params.expand(256, -1, -1, -1), x)[:, c, 0, 0]
            assert torch.isfinite(logp).all()
            assert torch.logsumexp(logp.double(), 0).exp().item() == pytest.approx(1.0, abs=1e-5)


def conditional_tables(head, params):
    """p(R), p(G | R, B) and p(B | R, G) tables at 2 bits from an enumeration: (4,4,4,3) float64."""
    x = all_levels(3, 2)
    return head.channel_log_probs(params.expand(len(x), -1, -1, -1), x)[:, :, 0, 0].double().reshape(4, 4, 4, 3)


def moves(t, c, j):
    """Largest change of log p(x_c | x_<c), over all x_c, when x_j goes from 0 to 3 (others at 0)."""
    lo, hi = [0, 0, 0], [0, 0, 0]
    hi[j] = 3
    lo[c] = hi[c] = slice(None)
    return (t[(*lo, c)] - t[(*hi, c)]).abs().max().item()


def test_coupling_moves_later_channels_only_through_its_slots(gen):
    head = CoupledSoftmax(3, 2)
    params = torch.randn(1, head.num_params(), 1, 1, generator=gen, dtype=torch.float64)
    t = conditional_tables(head, params)  # t[r, g, b, c] = log p(x_c | x_<c) at (r, g, b)
    # R's distribution never depends on G or B; G's never on B.
    assert torch.equal(t[:, :, :, 0], t[:, :1, :1, 0].expand(4, 4, 4))
    assert torch.equal(t[:, :, :, 1], t[:, :, :1, 1].expand(4, 4, 4))
    # With nonzero coefficients, G moves with R, and B moves with R and with G.
    assert all(moves(t, c, j) > 1e-3 for c, j in PAIRS_RGB)
    # Zero one slot at a time: exactly that dependence disappears (checks the slot order G←R, B←R, B←G).
    K, C = 4, 3
    for q, pair in enumerate(PAIRS_RGB):
        zeroed = params.clone()
        zeroed[:, C * K + q * K: C * K + (q + 1) * K] = 0.0
        tz = conditional_tables(head, zeroed)
        for c, j in PAIRS_RGB:
            assert (moves(tz, c, j) == 0.0) == ((c, j) == pair), (pair, c, j, moves(tz, c, j))


def test_sampler_frequencies_match_the_joint(gen):
    """40,000 draws of one pixel at 2 bits: every joint cell within 5 binomial standard deviations."""
    head = CoupledSoftmax(3, 2)
    one = 1.5 * torch.randn(1, head.num_params(), 1, 1, generator=gen, dtype=torch.float64)
    N = 40_000
    draws = head.sample(one.expand(N, -1, -1, -1).float(), generator=gen)[:, :, 0, 0]
    assert draws.dtype == torch.int64 and draws.min() >= 0 and draws.max() <= 3
    counts = torch.bincount(draws[:, 0] * 16 + draws[:, 1] * 4 + draws[:, 2], minlength=64).double()
    flat = one[0, :, 0, 0].tolist()
    p = torch.tensor([math.exp(sum(reference_log_probs(flat, list(v), 2)))
                      for v in itertools.product(range(4), repeat=3)], dtype=torch.float64)
    assert p.sum().item() == pytest.approx(1.0, abs=1e-12)
    z = (counts / N - p).abs() / torch.sqrt(p * (1 - p) / N)
    # Per-cell two-sided tail at 5 sd is 6e-7; over 64 cells a false alarm has probability < 4e-5.
    assert z.max().item() < 5.0, z.max().item()


def test_sampler_skips_impossible_levels_and_is_reproducible(gen):
    head = CoupledSoftmax(1, 3)
    params = torch.full((2000, 8, 1, 1), -1e4)
    params[:, 5] = 0.0
    params[:, 2] = 0.0
    draws = head.sample(params, generator=gen)
    assert set(draws.unique().tolist()) == {2, 5}
    a = head.sample(params[:50], generator=torch.Generator().manual_seed(7))
    b = head.sample(params[:50], generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, b)
