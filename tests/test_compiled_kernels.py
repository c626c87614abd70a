"""pixelzoo.compiled_kernels: the inductor-compiled elementwise kernels give the eager kernels' values.

The concat_elu kernels do the same float operations as the eager ones and must agree to the bit; the gate's
kernels may round differently (fused multiply-adds), so they are held to float32 tolerance. Each test
compiles a few kernels (about a second each), so the shapes are few and small.
"""
import shutil

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from pixelzoo.compiled_kernels import compiled_kernels, compiled_kernels_enabled, use_compiled_kernels
from pixelzoo.fused import concat_elu_conv2d, concat_elu_padded, dropout_keep, gated_residual
from pixelzoo.layers import GatedResnet

pytestmark = pytest.mark.skipif(not (shutil.which("g++") or shutil.which("c++")),
                                reason="torch.compile's CPU kernels need a C++ compiler")

CL = torch.channels_last


def _x(*shape, seed=0, scale=3.0):
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * scale
    x.view(-1)[:4] = torch.tensor([0.0, -0.0, -90.0, 1e-30])  # the elu corner cases
    return x.contiguous(memory_format=CL)


@pytest.mark.parametrize("pad,p", [((1, 1, 1, 0), 0.5), ((1, 0, 1, 0), 0.0)])
def test_concat_elu_forward_and_input_gradient_equal_eager_to_the_bit(pad, p):
    x = _x(2, 3, 5, 6).requires_grad_(True)
    w = torch.randn(4, 6, 2, 3 if pad[1] else 2)
    b = torch.randn(4)
    torch.manual_seed(1)
    keep = dropout_keep((2, 6, 5, 6), p) if p else None
    g_out = torch.randn(2, 4, 5, 6).contiguous(memory_format=CL)

    def run():
        out = concat_elu_conv2d(x, w, b, pad, keep=keep, p=p)
        (g_x,) = torch.autograd.grad(out, x, g_out)
        return concat_elu_padded(x.detach(), pad, keep), out, g_x

    eager = run()
    with compiled_kernels():
        compiled = run()
    for e, c in zip(eager, compiled):
        assert torch.equal(e, c)
    assert not compiled_kernels_enabled()  # the context restores the switch


def test_gated_residual_kernels_match_the_formula():
    x = _x(2, 3, 4, 5, seed=1, scale=1.0).requires_grad_(True)
    c = _x(2, 6, 4, 5, seed=2).requires_grad_(True)
    g = torch.randn(2, 3, 4, 5)
    with compiled_kernels():
        y = gated_residual(x, c)
        g_x, g_c = torch.autograd.grad(y, (x, c), g)
    xd, cd = x.detach().double().requires_grad_(True), c.detach().double().requires_grad_(True)
    want = xd + cd[:, :3] * torch.sigmoid(cd[:, 3:])
    want_x, want_c = torch.autograd.grad(want, (xd, cd), g.double())
    for got, ref in [(y, want), (g_x, want_x), (g_c, want_c)]:
        torch.testing.assert_close(got.double(), ref, rtol=1e-6, atol=1e-6)


def test_a_gated_resnet_with_dropout_trains_the_same_with_compiled_kernels():
    torch.manual_seed(0)
    block = GatedResnet(4, "down", aux_channels=4, dropout=0.5).train()
    x, a = _x(2, 4, 6, 6, seed=3, scale=1.0), _x(2, 4, 6, 6, seed=4, scale=1.0)

    def run():
        block.zero_grad()
        torch.manual_seed(5)  # the same dropout mask
        out = block(x, a)
        out.square().sum().backward()
        return [out.detach()] + [p.grad.clone() for p in block.parameters()]

    eager = run()
    with compiled_kernels():
        compiled = run()
    for e, c in zip(eager, compiled):  # float32 sums of gradients: tolerance relative to the largest entry
        torch.testing.assert_close(c, e, rtol=1e-4, atol=1e-5 * e.abs().max().item())


def test_dispatch_modes_fall_back_to_the_eager_kernels():
    x, w = _x(1, 2, 3, 3), torch.randn(3, 4, 1, 1)
    with compiled_kernels(), FlopCounterMode(display=False) as counter:
        assert not compiled_kernels_enabled()
        out = concat_elu_conv2d(x, w, None)
    assert counter.get_total_flops() == 2 * 9 * 3 * 4
    torch.testing.assert_close(out, F.conv2d(torch.cat([F.elu(x), F.elu(-x)], 1), w))


def test_use_compiled_kernels_switches_the_process():
    try:
        use_compiled_kernels()
        assert compiled_kernels_enabled()
    finally:
        use_compiled_kernels(False)
    assert not compiled_kernels_enabled()


def test_train_with_compile_kernels_matches_eager_and_restores_the_switch(tmp_path):
    from pixelzoo.data import ImageDataset
    from pixelzoo.train import TrainConfig, train

    images = torch.randint(0, 256, (16, 1, 8, 8), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    data = ImageDataset(images, None, 8, "random 8x8")

    def losses(compile_kernels: bool) -> list[float]:
        config = TrainConfig(model=None, backbone="pixelcnnpp", head="dlogistic",
                             model_args=dict(nr_filters=8, nr_resnet=1, num_mixtures=2, image_shape=[1, 8, 8],
                                             dropout=0.5), batch_size=8, steps=3, log_every=1, eval_every=-1,
                             sample_every=-1, export=False, progress=False, init_batch_size=8,
                             out_dir=str(tmp_path / str(compile_kernels)), compile_kernels=compile_kernels)
        result = train(config, data=data)
        return [r["loss_bpd"] for r in result.history if r["kind"] == "train"]

    eager, compiled = losses(False), losses(True)
    assert not compiled_kernels_enabled()
    assert len(compiled) == 3
    torch.testing.assert_close(torch.tensor(compiled), torch.tensor(eager), rtol=1e-5, atol=0.0)


def test_train_with_compile_kernels_and_no_compiler_is_a_clear_error(tmp_path, monkeypatch):
    from pixelzoo import compiled_kernels as ck
    from pixelzoo.train import TrainConfig, train

    monkeypatch.setattr(ck.shutil, "which", lambda name: None)
    assert not ck.cpu_compiler_available()
    config = TrainConfig(model_args=dict(nr_filters=8, nr_resnet=1, num_mixtures=2), steps=1, device="cpu",
                         compile_kernels=True, out_dir=str(tmp_path / "run"), progress=False)
    with pytest.raises(ValueError, match="no C\\+\\+ compiler"):
        train(config)
    assert not (tmp_path / "run").exists()  # nothing half-written
