"""The fused training kernels keep the numerics: against plain formulas written here, gradcheck, and across paths."""
import math
import os

import pytest
import torch
import torch.nn.functional as F

import pixelzoo
from pixelzoo.fused import (concat_elu_conv2d, concat_elu_padded, dropout_bits, dropout_keep, gated_residual,
                            keep_threshold)
from pixelzoo.heads.dlogistic import DiscretizedLogisticMixture
from pixelzoo.layers import GatedResnet


# --------------------------------------------------------------------------------- plain formulas
def plain_concat_elu(x):
    return torch.cat([F.elu(x), F.elu(-x)], dim=1)


def plain_conv(m, v):
    return F.conv2d(F.pad(v, getattr(m, "causal_pad", (0, 0, 0, 0))), m.weight, m.bias, m.stride, 0, m.dilation)


def plain_block(block, x, a=None, cond=None):
    """GatedResnet from F.pad / F.conv2d / elu, drawing its dropout mask like the block (same RNG order)."""
    c1 = plain_conv(block.conv_in, plain_concat_elu(x))
    if a is not None:
        c1 = c1 + plain_conv(block.nin_aux, plain_concat_elu(a))
    h = plain_concat_elu(c1)
    p = block.dropout.p
    if block.training and p > 0:
        h = h * dropout_keep(tuple(h.shape), p).to(h.dtype) / (1.0 - p)
    c2 = plain_conv(block.conv_out, h)
    if cond is not None:
        c2 = c2 + (cond @ block.cond_bias)[:, :, None, None]
    a_, b_ = c2.chunk(2, dim=1)
    return x + a_ * torch.sigmoid(b_)


def log_bin_mass(lo, hi):
    """log(σ(hi) - σ(lo)) in float64 as a log-space difference of the two CDFs (of the upper tails when
    lo > 0, where the CDFs round to 1): another identity than the head's. Each branch gets safe inputs
    where it is not selected, so that its gradient there is 0, not NaN."""
    upper = lo > 0
    lo_l, hi_l = torch.where(upper, -1.0, lo), torch.where(upper, -0.5, hi)
    lo_u, hi_u = torch.where(upper, lo, 0.5), torch.where(upper, hi, 1.0)
    lower_form = F.logsigmoid(hi_l) + torch.log(-torch.expm1(F.logsigmoid(lo_l) - F.logsigmoid(hi_l)))
    upper_form = F.logsigmoid(-lo_u) + torch.log(-torch.expm1(F.logsigmoid(-hi_u) - F.logsigmoid(-lo_u)))
    return torch.where(upper, upper_form, lower_form)


def plain_dlogistic_nll(params, x, C, M, bits, log_scale_min, log_scale_max=20.0):
    """-log Σ_m π_m Π_c P_cm(bin of x_c), float64, autograd, the edge bins open-ended."""
    p = params.double()
    B, _, H, W = p.shape
    logits = p[:, :M]
    if C == 3:
        blocks = p[:, M:].reshape(B, 3, 3, M, H, W)  # [channel][means | log_scales | coeffs][component]
        means, log_s, coeffs = blocks[:, :, 0], blocks[:, :, 1], blocks[:, :, 2]
    else:
        blocks = p[:, M:M + 2 * C * M].reshape(B, C, 2, M, H, W)
        means, log_s = blocks[:, :, 0], blocks[:, :, 1]
        coeffs = p[:, M + 2 * C * M:].reshape(B, -1, M, H, W)
    top = 2**bits - 1
    xs = 2.0 * x.double() / top - 1.0
    pairs = [(c, j) for c in range(1, C) for j in range(c)]
    total = torch.log_softmax(logits, dim=1)
    for c in range(C):
        mu = means[:, c] + sum(torch.tanh(coeffs[:, q]) * xs[:, j, None] for q, (cc, j) in enumerate(pairs) if cc == c)
        s = torch.exp(log_s[:, c].clamp(log_scale_min, log_scale_max))
        lo, hi = (xs[:, c, None] - 1.0 / top - mu) / s, (xs[:, c, None] + 1.0 / top - mu) / s
        k = x[:, c, None].expand_as(mu)
        edge = (k == 0) | (k == top)
        interior = log_bin_mass(torch.where(edge, 0.0, lo), torch.where(edge, 1.0, hi))
        total = total + torch.where(k == 0, F.logsigmoid(hi), torch.where(k == top, F.logsigmoid(-lo), interior))
    return -torch.logsumexp(total, dim=1)


def _close(got, want, rtol):
    """Equal within ``rtol`` of each value, or of the largest value for entries near 0."""
    want = want.detach()
    scale = max(want.abs().max().item(), 1.0)
    torch.testing.assert_close(got.detach().double(), want, rtol=rtol, atol=rtol * scale)


# ------------------------------------------------------------------------------------- likelihood
def _params(head, B, H, W, gen, scale=1.0):
    return torch.randn(B, head.num_params(), H, W, generator=gen) * scale


def test_dlogistic_nll_of_channels_last_params_equals_contiguous(gen):
    """A convolution hands the head channels-last parameters; the NLL and its gradient (in that layout) must
    not depend on it."""
    head = DiscretizedLogisticMixture(3, 8, 4)
    p = _params(head, 2, 5, 6, gen, 2.0)
    x = torch.randint(0, 256, (2, 3, 5, 6), generator=gen)
    results = []
    for layout in (torch.contiguous_format, torch.channels_last):
        q = p.clone().contiguous(memory_format=layout).requires_grad_(True)
        nll = head.nll(q, x)
        (g,) = torch.autograd.grad(nll.sum(), q)
        results.append((nll, g))
    assert torch.equal(results[0][0], results[1][0]) and torch.equal(results[0][1], results[1][1])


def _extremes(head, params):
    """Edge cases written into a (B >= 6, P, H, W) batch: scales far past both clamps, far means, saturated
    couplings, huge logit gaps, sharp components sitting on the edge levels."""
    C, M = head.channels, head.num_mixtures
    p = params.clone()
    n = 2 * C * M if C != 3 else 9 * M
    body = p[:, M:M + n].view(p.shape[0], C, -1, M, *p.shape[2:]) if C == 3 else None
    if C == 3:
        means, log_s, coeffs = body[:, :, 0], body[:, :, 1], body[:, :, 2]
    else:
        rest = p[:, M:M + n].view(p.shape[0], C, 2, M, *p.shape[2:])
        means, log_s, coeffs = rest[:, :, 0], rest[:, :, 1], p[:, M + n:]
    log_s[0] = -30.0
    log_s[1] = 60.0
    means[2] *= 50.0
    coeffs[3] = 80.0
    log_s[3] = -7.0
    p[4, :M] *= 40.0
    coeffs[4] = -80.0
    means[5] = 1.0
    log_s[5] = -7.0
    return p


@pytest.mark.parametrize("C,M,bits", [(3, 5, 8), (1, 5, 8), (2, 3, 5), (3, 2, 1)])
@pytest.mark.parametrize("kind", ["random", "extreme"])
def test_fused_likelihood_and_gradient_match_plain_formula(C, M, bits, kind, gen):
    head = DiscretizedLogisticMixture(C, bits, M)
    B, H, W = 6, 4, 5
    params = _params(head, B, H, W, gen, scale=2.0)
    if kind == "extreme":
        params = _extremes(head, params)
    x = torch.randint(0, 2**bits, (B, C, H, W), generator=gen)
    x[:, :, 0, 0], x[:, :, 0, 1] = 0, 2**bits - 1  # both edge bins in every image
    p32 = params.float().requires_grad_(True)
    p64 = params.double().requires_grad_(True)
    got = head.nll(p32, x)
    want = plain_dlogistic_nll(p64, x, C, M, bits, head.log_scale_min, head.log_scale_max)
    _close(got, want, 1e-5)
    g = torch.rand(B, H, W, generator=gen)
    (g32,) = torch.autograd.grad(got, p32, g.float())
    (g64,) = torch.autograd.grad(want, p64, g.double())
    assert torch.isfinite(g32).all()
    _close(g32, g64, 1e-4)


@pytest.mark.parametrize("C,M", [(3, 2), (1, 3), (2, 2)])
def test_fused_likelihood_gradcheck(C, M, gen):
    head = DiscretizedLogisticMixture(C, 8, M)
    params = (0.5 * torch.randn(2, head.num_params(), 2, 3, generator=gen, dtype=torch.float64)).requires_grad_(True)
    x = torch.randint(0, 256, (2, C, 2, 3), generator=gen)
    x[0, :, 0, 0], x[0, :, 0, 1] = 0, 255
    assert torch.autograd.gradcheck(lambda p: head.nll(p, x), (params,))


def test_fused_likelihood_equals_log_prob_components(gen):
    """The head's public per-component formula and its fused NLL agree (same expressions, float64)."""
    head = DiscretizedLogisticMixture(3, 8, 4)
    params = _params(head, 3, 4, 4, gen, 2.0).double()
    x = torch.randint(0, 256, (3, 3, 4, 4), generator=gen)
    torch.testing.assert_close(head.nll(params, x), -torch.logsumexp(head.log_prob_components(params, x), dim=1),
                               rtol=1e-13, atol=1e-12)


# ------------------------------------------------------------------------------- gated resnet parts
def test_concat_elu_padded_is_exactly_pad_of_concat_elu():
    x = torch.randn(2, 5, 6, 7) * 4
    x[0, 0, 0, :6] = torch.tensor([0.0, -0.0, 1e-30, -1e-30, -200.0, float("inf")])
    x[0, 1, 0, 0] = float("-inf")
    for fmt in (torch.channels_last, torch.contiguous_format):
        for pad in [(1, 1, 1, 0), (1, 0, 1, 0), (0, 0, 0, 0), (2, 2, 2, 0)]:
            # torch's vectorized elu and its expm1 may differ in the last bit
            torch.testing.assert_close(concat_elu_padded(x, pad, memory_format=fmt), F.pad(plain_concat_elu(x), pad),
                                       rtol=2.5e-7, atol=0.0)
    nan = torch.full((1, 1, 1, 1), float("nan"))
    assert torch.isnan(concat_elu_padded(nan)).all()


@pytest.mark.parametrize("fmt", [torch.channels_last, torch.contiguous_format])
@pytest.mark.parametrize("recompute", [False, True])
@pytest.mark.parametrize("pad,kernel,stride,dilation,p", [
    ((1, 1, 1, 0), (2, 3), 1, 1, 0.0), ((1, 0, 1, 0), (2, 2), 1, 1, 0.4), ((0, 0, 0, 0), (1, 1), 1, 1, 0.0),
    ((2, 2, 2, 0), (2, 3), 1, 2, 0.5), ((1, 1, 1, 0), (2, 3), 2, 1, 0.3)])
def test_concat_elu_conv2d_gradcheck(fmt, recompute, pad, kernel, stride, dilation, p, gen):
    x = torch.randn(2, 3, 6, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 6, *kernel, generator=gen, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, generator=gen, dtype=torch.float64, requires_grad=True)
    keep = dropout_keep((2, 6, 6, 6), p, generator=gen) if p else None

    def fused(x, w, b):
        return concat_elu_conv2d(x, w, b, pad, (stride, stride), (dilation, dilation), keep, p, fmt, recompute)

    assert torch.autograd.gradcheck(fused, (x, w, b))
    # and the plain chain with the same mask
    h = plain_concat_elu(x)
    if keep is not None:
        h = h * keep.double() / (1.0 - p)
    want = F.conv2d(F.pad(h, pad), w, b, stride, 0, dilation)
    torch.testing.assert_close(fused(x, w, b), want, rtol=1e-12, atol=1e-12)


def test_gated_residual_gradcheck(gen):
    x = torch.randn(2, 3, 4, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    c = torch.randn(2, 6, 4, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(gated_residual, (x, c))
    torch.testing.assert_close(gated_residual(x, c), x + c[:, :3] * torch.sigmoid(c[:, 3:]))


def test_dropout_mask_rate_and_reproducibility():
    assert keep_threshold(0.5) == 0 and keep_threshold(0.0) == 2**15
    for p in (0.1, 0.3, 0.5, 0.9):
        torch.manual_seed(3)
        keep = dropout_keep((1000, 1000), p)
        assert keep.dtype == torch.uint8 and set(keep.unique().tolist()) <= {0, 1}
        assert abs(keep.double().mean().item() - (1 - p)) < 3e-3  # 6 binomial standard deviations
        torch.manual_seed(3)
        assert torch.equal(dropout_keep((1000, 1000), p), keep)
    assert dropout_keep((10, 10), 0.0).all()
    # p != 0.5: 16 random bits per element, compared with the threshold
    torch.manual_seed(4)
    bits = dropout_bits((100, 100))
    torch.manual_seed(4)
    assert torch.equal(dropout_keep((100, 100), 0.3).bool(), bits < keep_threshold(0.3))
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        dropout_keep((2, 2), 1.0)


def test_dropout_keep_bits_are_independent():
    """p = 0.5 spends one random bit per element: neighbours in memory (the bits of one byte, of adjacent
    bytes and words) must be independent. Chi-square of the 4 joint outcomes of pairs at several lags, and
    the 256 outcomes of whole bytes, well within the 1e-6 tail."""
    torch.manual_seed(7)
    keep = dropout_keep((2**20,), 0.5).long()
    for lag in (1, 7, 8, 63, 64, 65):
        pairs = 2 * keep[:-lag] + keep[lag:]
        counts = torch.bincount(pairs, minlength=4).double()
        chi2 = ((counts - counts.sum() / 4) ** 2 / (counts.sum() / 4)).sum().item()
        assert chi2 < 33.0, (lag, chi2)  # 3 degrees of freedom: P(chi2 > 33) < 1e-6
    byte_values = (keep.view(-1, 8) * (2 ** torch.arange(8))).sum(1)
    counts = torch.bincount(byte_values, minlength=256).double()
    chi2 = ((counts - counts.sum() / 256) ** 2 / (counts.sum() / 256)).sum().item()
    assert chi2 < 380.0, chi2  # 255 degrees of freedom: P(chi2 > 380) < 1e-6


def test_dropout_keep_4d_is_filled_in_channels_last_order():
    torch.manual_seed(2)
    keep = dropout_keep((2, 3, 4, 5), 0.5)
    torch.manual_seed(2)
    flat = dropout_keep((2 * 3 * 4 * 5,), 0.5)
    assert torch.equal(keep, flat.view(2, 4, 5, 3).permute(0, 3, 1, 2))
    assert keep.is_contiguous(memory_format=torch.channels_last)


def _block(kind, p=0.3):
    torch.manual_seed(0)
    block = GatedResnet(4, kind, aux_channels=6, num_classes=3, dropout=p).double()
    with torch.no_grad():  # non-trivial biases and gains (the reference init zeroes the biases)
        for name, t in block.named_parameters():
            if name.endswith("bias") or name.endswith("original0"):
                t.add_(0.3 * torch.randn_like(t))
    return block


def _block_run(block, fn, seed=5):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(3, 4, 6, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    a = torch.randn(3, 6, 6, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    cond = F.one_hot(torch.tensor([0, 2, 1]), 3).double()
    torch.manual_seed(seed)
    out = fn(x, a, cond)
    grads = torch.autograd.grad(out, [x, a, *block.parameters()], torch.randn(out.shape, generator=gen,
                                                                              dtype=torch.float64))
    return out, grads


@pytest.mark.parametrize("kind", ["down", "down_right"])
@pytest.mark.parametrize("fmt,recompute", [(torch.channels_last, False), (torch.contiguous_format, True),
                                           (torch.channels_last, True)])
@pytest.mark.parametrize("train", [True, False])
def test_gated_resnet_matches_plain_block(kind, fmt, recompute, train):
    block = _block(kind).train(train)
    want, want_g = _block_run(block, lambda x, a, c: plain_block(block, x, a, c))
    block.memory_format, block.recompute = fmt, recompute
    got, got_g = _block_run(block, lambda x, a, c: block(x, a, c))
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    for g, w in zip(got_g, want_g):
        torch.testing.assert_close(g, w, rtol=1e-11, atol=1e-11)


def _saved_bytes(fn):
    seen = {}

    def pack(t):
        seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(seen.values())


def test_fused_block_keeps_less_for_backward():
    block = _block("down").float().train()
    x, a = torch.randn(8, 4, 16, 16, requires_grad=True), torch.randn(8, 6, 16, 16)
    cond = F.one_hot(torch.arange(8) % 3, 3).float()
    plain = _saved_bytes(lambda: plain_block(block, x, a, cond))
    fused = _saved_bytes(lambda: block(x, a, cond))
    block.recompute = True
    lean = _saved_bytes(lambda: block(x, a, cond))
    assert fused < 0.7 * plain and lean < 0.7 * fused, (plain, fused, lean)


# ---------------------------------------------------------------------------------- model paths
def _tiny(**kw):
    torch.manual_seed(0)
    model = pixelzoo.create_model("pixelcnnpp_small", image_shape=(3, 8, 8), nr_filters=8, num_mixtures=2,
                                  dropout=0.3, **kw).double().train()
    with torch.no_grad():
        for name, t in model.named_parameters():
            if name.endswith("bias"):
                t.add_(0.2 * torch.randn_like(t))
    return model


def _loss_and_grads(model, seed=7):
    x = torch.randint(0, 256, (2, 3, 8, 8), generator=torch.Generator().manual_seed(2))
    torch.manual_seed(seed)  # the dropout masks
    loss = model.nll(x).sum()
    return loss, torch.autograd.grad(loss, list(model.parameters()))


def _set_blocks(model, **attrs):
    for block in model.modules():
        if isinstance(block, GatedResnet):
            for k, v in attrs.items():
                setattr(block, k, v)


@pytest.fixture(scope="module")
def default_path():
    return _loss_and_grads(_tiny())


@pytest.mark.parametrize("path", ["plain", "nchw", "recompute", "checkpointing"])
def test_model_paths_give_the_default_outputs_and_gradients(path, default_path, monkeypatch):
    model = _tiny(checkpointing=path == "checkpointing")
    if path == "plain":
        monkeypatch.setattr(GatedResnet, "forward", plain_block)
        def plain_nll(self, params, x, *, generator):
            return plain_dlogistic_nll(params, x, self.channels, self.num_mixtures, self.bits, self.log_scale_min,
                                       self.log_scale_max)

        monkeypatch.setattr(DiscretizedLogisticMixture, "_nll", plain_nll)
    _set_blocks(model, memory_format=torch.contiguous_format if path == "nchw" else torch.channels_last,
                recompute=path == "recompute")
    loss, grads = _loss_and_grads(model)
    torch.testing.assert_close(loss, default_path[0], rtol=1e-10, atol=1e-10)
    for g, w in zip(grads, default_path[1]):
        torch.testing.assert_close(g, w, rtol=1e-8, atol=1e-10)


def test_checkpointing_is_a_constructor_flag_and_keeps_less():
    model = _tiny(checkpointing=True).float()
    assert model.backbone_args["checkpointing"] is True
    assert all(b.checkpointing for b in model.modules() if isinstance(b, GatedResnet))
    x = torch.randint(0, 256, (4, 3, 8, 8))
    checkpointed = _saved_bytes(lambda: model.nll(x))
    _set_blocks(model, checkpointing=False)
    assert checkpointed < 0.5 * _saved_bytes(lambda: model.nll(x))


def test_bf16_autocast_keeps_the_likelihood_in_float32():
    model = _tiny().float().eval()
    x = torch.randint(0, 256, (2, 3, 8, 8), generator=torch.Generator().manual_seed(2))
    want = model.nll(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        params = model(x)
        got = model.head.nll(params, x).sum(dim=(1, 2))
    assert params.dtype == torch.bfloat16 and got.dtype == torch.float32
    torch.testing.assert_close(got, want, rtol=2e-2, atol=0.0)
    got.sum().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("PIXELZOO_TEST_COMPILE") != "1",
                    reason="opt-in: set PIXELZOO_TEST_COMPILE=1 (torch.compile takes 30-150 s on 2 CPU cores)")
def test_torch_compile_gives_the_default_outputs_and_gradients(gen):
    torch.manual_seed(0)
    block = _block("down_right", p=0.0).float()
    head = DiscretizedLogisticMixture(3, 8, 2)
    proj = torch.nn.Conv2d(4, head.num_params(), 1)
    x = torch.randn(2, 4, 8, 8, generator=gen, requires_grad=True)
    a = torch.randn(2, 6, 8, 8, generator=gen)
    cond = F.one_hot(torch.tensor([1, 2]), 3).float()
    levels = torch.randint(0, 256, (2, 3, 8, 8), generator=gen)

    def loss(x):
        return head.nll(proj(block(x, a, cond)), levels).sum()

    want = loss(x)
    want_g = torch.autograd.grad(want, [x, *block.parameters()])
    got = torch.compile(loss)(x)
    got_g = torch.autograd.grad(got, [x, *block.parameters()])
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-3)
    for g, w in zip(got_g, want_g):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-4 * w.abs().max().item())
    assert math.isfinite(got.item())
