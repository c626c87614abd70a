"""Causal layers against explicit loops (independent of torch's conv semantics)."""
import numpy as np
import pytest
import torch

from pixelzoo.layers import (DownRightShiftedConv2d, DownRightShiftedConvTranspose2d, DownShiftedConv2d,
                             DownShiftedConvTranspose2d, GatedResnet, concat_elu, data_dependent_init, down_shift,
                             right_shift)


def test_shifts_move_rows_and_columns():
    x = torch.arange(12.0).view(1, 1, 3, 4)
    assert torch.equal(down_shift(x)[0, 0], torch.tensor([[0.0] * 4, [0, 1, 2, 3], [4, 5, 6, 7]]))
    assert torch.equal(right_shift(x)[0, 0], torch.tensor([[0.0, 0, 1, 2], [0, 4, 5, 6], [0, 8, 9, 10]]))


def test_concat_elu_doubles_channels():
    x = torch.tensor([[-1.0, 2.0]]).view(1, 2, 1, 1)
    want = torch.tensor([np.expm1(-1.0), 2.0, 1.0, np.expm1(-2.0)]).view(1, 4, 1, 1).float()
    torch.testing.assert_close(concat_elu(x), want)


def _loop_conv(x, w, b, top, left, stride=1, dilation=1):
    """out[o, i, j] = b[o] + Σ w[o, c, a, e] · x[c, s·i - top + d·a, s·j - left + d·e] (zero outside)."""
    C, H, W = x.shape
    O, _, kh, kw = w.shape
    Ho, Wo = H // stride, W // stride
    out = np.zeros((O, Ho, Wo))
    for o in range(O):
        for i in range(Ho):
            for j in range(Wo):
                acc = b[o]
                for c in range(C):
                    for a in range(kh):
                        for e in range(kw):
                            r, q = stride * i - top + dilation * a, stride * j - left + dilation * e
                            if 0 <= r < H and 0 <= q < W:
                                acc += w[o, c, a, e] * x[c, r, q]
                out[o, i, j] = acc
    return out


@pytest.mark.parametrize("cls,kernel,stride,dilation", [
    (DownShiftedConv2d, (2, 3), 1, 1), (DownShiftedConv2d, (2, 3), 2, 1), (DownShiftedConv2d, (1, 3), 1, 1),
    (DownShiftedConv2d, (2, 3), 1, 2), (DownRightShiftedConv2d, (2, 2), 1, 1), (DownRightShiftedConv2d, (2, 2), 2, 1),
    (DownRightShiftedConv2d, (2, 1), 1, 1), (DownRightShiftedConv2d, (2, 2), 1, 3)])
def test_shifted_conv_matches_loop(cls, kernel, stride, dilation):
    torch.manual_seed(0)
    conv = cls(2, 3, kernel, stride=stride, dilation=dilation).double()
    x = torch.randn(1, 2, 6, 6, dtype=torch.float64)
    kh, kw = kernel
    top = (kh - 1) * dilation
    left = (kw - 1) // 2 * dilation if cls is DownShiftedConv2d else (kw - 1) * dilation
    want = _loop_conv(x[0].numpy(), conv.weight.detach().numpy(), conv.bias.detach().numpy(), top, left,
                      stride, dilation)
    np.testing.assert_allclose(conv(x)[0].detach().numpy(), want, rtol=1e-12, atol=1e-12)


def _loop_deconv(x, w, b, left_crop, s=2):
    """Transposed conv: input (i, j) adds w[c, o, a, e]·x to output (s·i + a, s·j + e - left_crop), cropped to s·H x s·W."""
    C, H, W = x.shape
    _, O, kh, kw = w.shape
    out = np.tile(b[:, None, None], (1, s * H, s * W)).astype(np.float64)
    for c in range(C):
        for i in range(H):
            for j in range(W):
                for a in range(kh):
                    for e in range(kw):
                        r, q = s * i + a, s * j + e - left_crop
                        if 0 <= r < s * H and 0 <= q < s * W:
                            out[:, r, q] += w[c, :, a, e] * x[c, i, j]
    return out


@pytest.mark.parametrize("cls,left", [(DownShiftedConvTranspose2d, 1), (DownRightShiftedConvTranspose2d, 0)])
def test_shifted_transposed_conv_matches_loop(cls, left):
    torch.manual_seed(0)
    conv = cls(2, 3).double()
    x = torch.randn(1, 2, 3, 4, dtype=torch.float64)
    want = _loop_deconv(x[0].numpy(), conv.weight.detach().numpy(), conv.bias.detach().numpy(), left)
    got = conv(x)[0].detach().numpy()
    assert got.shape == (3, 6, 8)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_weight_norm_is_per_output_channel():
    conv = DownShiftedConv2d(3, 4)
    tconv = DownShiftedConvTranspose2d(3, 4)
    with torch.no_grad():
        conv.parametrizations.weight.original0.fill_(2.0)
        tconv.parametrizations.weight.original0.fill_(2.0)
    torch.testing.assert_close(conv.weight.flatten(1).norm(dim=1), torch.full((4,), 2.0))
    # transposed weight is (in, out, kh, kw): the norm is over everything but the output axis
    torch.testing.assert_close(tconv.weight.transpose(0, 1).flatten(1).norm(dim=1), torch.full((4,), 2.0))


def test_residual_is_applied_once():
    """With a zero second convolution the gate adds 0: the block is exactly the identity (not 2x)."""
    block = GatedResnet(4, "down", aux_channels=4, num_classes=3, dropout=0.0)
    with torch.no_grad():
        block.conv_out.parametrizations.weight.original0.zero_()
        block.conv_out.bias.zero_()
        block.cond_bias.zero_()
    x = torch.randn(2, 4, 5, 5)
    out = block(x, torch.randn(2, 4, 5, 5), cond=torch.eye(3)[:2])
    assert torch.equal(out, x)


def test_gated_resnet_requires_its_inputs():
    block = GatedResnet(4, "down_right", aux_channels=4, num_classes=2)
    with pytest.raises(ValueError, match="auxiliary"):
        block(torch.randn(1, 4, 3, 3), cond=torch.eye(2)[:1])
    with pytest.raises(ValueError, match="class-conditional"):
        block(torch.randn(1, 4, 3, 3), torch.randn(1, 4, 3, 3))
    with pytest.raises(ValueError, match="'down' or 'down_right'"):
        GatedResnet(4, "up")


def test_data_dependent_init_normalises_preactivations():
    """After init on a batch, each layer's pre-activations on that batch have mean 0 and std init_scale."""
    torch.manual_seed(0)
    block = GatedResnet(6, "down", dropout=0.0).double()
    x = torch.randn(16, 6, 8, 8, dtype=torch.float64) * 3 + 1
    data_dependent_init(block, x)
    seen = {}
    hooks = [m.register_forward_hook(lambda m, i, o, name=name: seen.__setitem__(name, o))
             for name, m in [("conv_in", block.conv_in), ("conv_out", block.conv_out)]]
    block(x)
    for h in hooks:
        h.remove()
    for name, target in [("conv_in", 1.0), ("conv_out", 0.1)]:
        out = seen[name]
        torch.testing.assert_close(out.mean(dim=(0, 2, 3)), torch.zeros(out.shape[1], dtype=torch.float64),
                                   atol=1e-10, rtol=0)
        torch.testing.assert_close(out.std(dim=(0, 2, 3), unbiased=False),
                                   torch.full((out.shape[1],), target, dtype=torch.float64), atol=1e-6, rtol=0)
    # the init runs once: a second forward leaves the parameters alone
    g = block.conv_in.parametrizations.weight.original0.clone()
    block(x * 5)
    assert torch.equal(g, block.conv_in.parametrizations.weight.original0)
