"""Every registered (backbone, head) pair builds and trains through create_model; every head survives fuzzing.

The pairs are collected from the registry at test time, so backbones and heads added later are covered
without editing this file.
"""
import itertools

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import pixelzoo
from pixelzoo.registry import accepted_args, get_backbone_class, get_head_class

IMAGE_HEADS = [h for h in pixelzoo.list_heads() if not get_head_class(h).models_codes]  # categorical: test_codes.py

# Small sizes, passed only to the parts whose constructor takes them.
SMALL_BACKBONE_ARGS = dict(nr_filters=8, nr_resnet=1)
SMALL_HEAD_ARGS = dict(num_mixtures=2)
IMAGE_SIDES = (8, 16, 32)  # the smallest side the backbone accepts is used


def small_model(backbone, head, channels, num_classes=0):
    b_cls, h_cls = get_backbone_class(backbone), get_head_class(head)
    b_ok = accepted_args(b_cls, ("in_channels", "num_classes")) or set()
    h_ok = accepted_args(h_cls, ("channels", "bits")) or set()
    b_kwargs = {k: v for k, v in SMALL_BACKBONE_ARGS.items() if k in b_ok}
    h_kwargs = {k: v for k, v in SMALL_HEAD_ARGS.items() if k in h_ok}
    probe = b_cls(channels, num_classes, **b_kwargs)
    for side in IMAGE_SIDES:
        try:
            probe.check_image_size(side, side)
        except ValueError:
            continue
        return pixelzoo.create_model(backbone=backbone, head=head, image_shape=(channels, side, side),
                                     num_classes=num_classes, **b_kwargs, **h_kwargs)
    pytest.fail(f"backbone {backbone!r} accepts none of the image sides {IMAGE_SIDES}")


PAIRS = list(itertools.product(pixelzoo.list_backbones(), IMAGE_HEADS))


@pytest.mark.parametrize("backbone,head", PAIRS, ids=[f"{b}+{h}" for b, h in PAIRS])
def test_pair_forward_backward_nll_sample(backbone, head):
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    m = small_model(backbone, head, channels=3, num_classes=2)
    C, H, W = m.image_shape
    x = torch.randint(0, 256, (2, C, H, W), generator=g, dtype=torch.int64).to(torch.uint8)
    labels = torch.tensor([0, 1])
    m.train()
    params = m(x, labels)
    assert params.shape == (2, m.head.num_params(C), H, W)
    nats = m.nll(x, labels, generator=g)
    assert nats.shape == (2,) and torch.isfinite(nats).all()
    nats.mean().backward()
    missing = [n for n, p in m.named_parameters() if p.grad is None]
    assert not missing, f"parameters without a gradient: {missing}"
    bad = [n for n, p in m.named_parameters() if not torch.isfinite(p.grad).all()]
    assert not bad, f"non-finite gradients: {bad}"
    assert m.exact_likelihood == get_head_class(head).exact
    img = m.sample(1, labels=1, method="naive", generator=g)
    assert img.shape == (1, C, H, W) and img.dtype == torch.uint8


@pytest.mark.parametrize("head", IMAGE_HEADS)
def test_pair_one_channel_sample(head):
    m = small_model(pixelzoo.list_backbones()[0], head, channels=1)
    img = m.sample(1, method="naive", generator=torch.Generator().manual_seed(1))
    assert img.shape == (1, *m.image_shape)
    assert torch.isfinite(m.nll(img, generator=torch.Generator().manual_seed(2))).all()


# --------------------------------------------------------------------------------------- fuzzing
BIG = 1e6  # far beyond anything a trained network outputs


@st.composite
def head_case(draw, head_name):
    cls = get_head_class(head_name)
    channels = draw(st.sampled_from([1, 3]))
    bits = draw(st.sampled_from([b for b in (1, 2, 3, 5, 8) if b <= cls.max_bits]))
    kwargs = {k: v for k, v in SMALL_HEAD_ARGS.items() if k in (accepted_args(cls, ("channels", "bits")) or set())}
    head = cls(channels, bits, **kwargs)
    P = head.num_params()
    params = draw(arrays("float32", (1, P, 1, 2), elements=st.floats(-BIG, BIG, width=32),
                         fill=st.floats(-BIG, BIG, width=32)))
    x = draw(arrays("int64", (1, channels, 1, 2), elements=st.integers(0, 2**bits - 1)))
    return head, torch.from_numpy(params), torch.from_numpy(x)


@pytest.mark.parametrize("head_name", IMAGE_HEADS)
def test_nll_and_gradients_finite_for_extreme_params(head_name):
    @settings(max_examples=400, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(head_case(head_name))
    def check(case):
        head, params, x = case
        params.requires_grad_(True)
        nll = head.nll(params, x, generator=torch.Generator().manual_seed(0))
        assert torch.isfinite(nll).all(), (params, x, nll)
        nll.sum().backward()
        assert torch.isfinite(params.grad).all(), (params, x)

    check()
