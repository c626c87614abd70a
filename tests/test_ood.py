"""OOD scores and metrics, background-model training (mutation, weight decay) and ``pixelzoo ood``."""
from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

import pixelzoo
from pixelzoo.checkpoint import load_checkpoint
from pixelzoo.cli import main
from pixelzoo.data import ImageDataset, load_bundled
from pixelzoo.mutation import mutate, mutation_generator
from pixelzoo.ood import (complexity_score, compressed_bits, fpr_at_tpr, likelihood_ratio_score, nll_bits_per_dim,
                          ood_metrics)
from pixelzoo.train import TrainConfig, _param_groups, train


# ------------------------------------------------------------------------ metrics, against rank statistics
def _auroc_by_ranks(a, b):
    """Mann-Whitney: P(out > in) + P(out = in) / 2, by comparing every pair."""
    a, b = np.asarray(a)[:, None], np.asarray(b)[None, :]
    return float(((b > a).sum() + 0.5 * (b == a).sum()) / (a.size * b.size))


def _average_precision(a, b):
    """Σ over distinct thresholds (descending) of (recall step) × precision, OOD positive."""
    a, b = np.asarray(a), np.asarray(b)
    ap, last_recall = 0.0, 0.0
    for t in np.unique(np.concatenate([a, b]))[::-1]:
        tp, fp = (b >= t).sum(), (a >= t).sum()
        recall = tp / b.size
        ap += (recall - last_recall) * tp / (tp + fp)
        last_recall = recall
    return ap


def _fpr_at(a, b, tpr):
    a, b = np.asarray(a), np.asarray(b)
    for t in np.unique(np.concatenate([a, b]))[::-1]:
        if (b >= t).mean() >= tpr:
            return float((a >= t).mean())
    raise AssertionError


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("ties", [False, True])
def test_metrics_equal_independent_rank_computations(seed, ties):
    rng = np.random.default_rng(seed)
    a, b = rng.normal(0, 1, 300), rng.normal(0.7, 1.3, 170)
    if ties:
        a, b = np.round(a, 1), np.round(b, 1)
    m = ood_metrics(torch.from_numpy(a), b)
    assert m["auroc"] == pytest.approx(_auroc_by_ranks(a, b), abs=1e-12)
    assert m["auprc"] == pytest.approx(_average_precision(a, b), abs=1e-12)
    assert m["fpr80"] == pytest.approx(_fpr_at(a, b, 0.8), abs=1e-12)
    assert m["fpr95"] == pytest.approx(_fpr_at(a, b, 0.95), abs=1e-12)
    assert (m["num_in"], m["num_out"]) == (300, 170)
    assert fpr_at_tpr(a, b, 0.5) == pytest.approx(_fpr_at(a, b, 0.5), abs=1e-12)


def test_metrics_of_separated_sets_and_bad_input():
    m = ood_metrics([0.0, 1.0, 2.0], [5.0, 6.0])
    assert m["auroc"] == m["auprc"] == 1.0 and m["fpr95"] == 0.0
    assert ood_metrics([5.0, 6.0], [0.0, 1.0])["auroc"] == 0.0
    with pytest.raises(ValueError, match="both sets"):
        ood_metrics([], [1.0])
    with pytest.raises(ValueError, match="finite"):
        ood_metrics([float("nan")], [1.0])


# ------------------------------------------------------------------------ scores
def _tiny_model(seed=0, **kw):
    torch.manual_seed(seed)
    args = dict(backbone="pixelcnnpp", head="dlogistic", image_shape=(1, 8, 8), nr_filters=8, nr_resnet=1,
                num_mixtures=2)
    args.update(kw)
    return pixelzoo.create_model(**args).eval()


def _digits(n=12):
    d = load_bundled("test")
    return d.images[:n, :, 2:26:3, 2:26:3].contiguous()


def test_likelihood_and_ratio_scores_are_bits_per_dim_differences():
    fg, bg = _tiny_model(0), _tiny_model(1)
    x = _digits()
    with torch.no_grad():
        expect_fg = fg.nll(x).double() / (64 * math.log(2))
        expect_bg = bg.nll(x).double() / (64 * math.log(2))
    torch.testing.assert_close(nll_bits_per_dim(fg, x, batch_size=5), expect_fg, rtol=1e-6, atol=0)
    torch.testing.assert_close(likelihood_ratio_score(fg, bg, x, batch_size=7), expect_fg - expect_bg,
                               rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="different images"):
        likelihood_ratio_score(fg, _tiny_model(image_shape=(1, 12, 12)), x)


def test_complexity_is_bits_minus_the_png_byte_count_times_8():
    model = _tiny_model()
    x = _digits(5)
    nll_bpd = nll_bits_per_dim(model, x)
    score = complexity_score(model, x, compressor="png")
    for i in range(len(x)):
        buf = io.BytesIO()
        Image.fromarray(x[i, 0].numpy()).save(buf, format="PNG", compress_level=9, optimize=True)
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(buf.getvalue()))), x[i, 0].numpy())  # lossless
        assert float(compressed_bits(x[i:i + 1])[0]) == 8 * len(buf.getvalue())
        assert float(score[i]) == pytest.approx(float(nll_bpd[i]) - 8 * len(buf.getvalue()) / 64, abs=1e-12)
    for c in ("zlib", "bz2", "lzma"):
        assert bool((compressed_bits(x, c) > 0).all())
    with pytest.raises(ValueError, match="supported"):
        compressed_bits(x, "flif")


# ------------------------------------------------------------------------ mutation
def test_mutation_has_the_rate_is_uniform_and_is_reproducible():
    x = torch.full((40, 1, 50, 50), 7, dtype=torch.uint8)
    y = mutate(x, 0.3, 8, mutation_generator(0, 5))
    replaced = torch.rand((40, 1, 50, 50), generator=mutation_generator(0, 5)) < 0.3  # the same first draw
    assert torch.equal(y != 7, replaced & (y != 7))  # only drawn positions change
    n = replaced.sum().item()
    assert abs(n / x.numel() - 0.3) < 4 * math.sqrt(0.3 * 0.7 / x.numel())
    counts = torch.bincount(y[replaced].long(), minlength=256).double()  # replacement levels: uniform, 7 too
    expected = n / 256
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 255 + 5 * math.sqrt(2 * 255)  # mean 255, sd sqrt(510)
    assert torch.equal(y, mutate(x, 0.3, 8, mutation_generator(0, 5)))
    assert not torch.equal(y, mutate(x, 0.3, 8, mutation_generator(0, 6)))
    assert not torch.equal(y, mutate(x, 0.3, 8, mutation_generator(0, 5, rank=1)))
    assert mutate(x, 0.3, 8).dtype == torch.uint8
    assert int(mutate(torch.zeros(1000, dtype=torch.int64).view(10, 1, 10, 10), 1.0, 3).max()) <= 7
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        mutate(x, 1.5, 8)
    codes = mutate(torch.zeros(20000, dtype=torch.int64).view(200, 1, 10, 10), 1.0, 10, levels=600)
    assert int(codes.max()) == 599 and len(codes.unique()) == 600  # a codebook of 600: every code, none beyond


def _tiny_data(n=40):
    d = load_bundled("train")
    return ImageDataset(d.images[:n, :, 2:26:3, 2:26:3].contiguous(), d.labels[:n], 8, "mnist8")


def _config(tmp_path, name, **kw):
    base = dict(model=None, backbone="pixelcnnpp", head="dlogistic",
                model_args=dict(nr_filters=8, nr_resnet=1, num_mixtures=2, image_shape=[1, 8, 8], dropout=0.0),
                batch_size=8, steps=6, out_dir=str(tmp_path / name), log_every=1, checkpoint_every=3,
                eval_every=-1, sample_every=-1, export=False, progress=False, init_batch_size=8,
                mutation_rate=0.2, weight_decay=1e-3)
    base.update(kw)
    return TrainConfig(**base)


class Crash(Exception):
    pass


def test_mutated_training_resumes_bit_for_bit_and_sees_mutated_batches(tmp_path, monkeypatch):
    data = _tiny_data()
    straight = train(_config(tmp_path, "a"), data=data)

    def crash(step, model):
        if step == 4:
            raise Crash

    with pytest.raises(Crash):
        train(_config(tmp_path, "b"), data=data, callback=crash)
    resumed = train(_config(tmp_path, "b", resume=True), data=data)
    for k, v in straight.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k
    plain = train(_config(tmp_path, "c", mutation_rate=0.0), data=data)
    assert not torch.equal(plain.model.state_dict()["proj.bias"], straight.model.state_dict()["proj.bias"])
    with pytest.raises(ValueError, match="mutation_rate"):
        train(_config(tmp_path, "b", resume=True, steps=8, mutation_rate=0.3), data=data)
    seen = []
    import pixelzoo.train as train_module

    real = train_module.mutate
    monkeypatch.setattr(train_module, "mutate", lambda x, *a, **k: seen.append((x, real(x, *a, **k))) or seen[-1][1])
    train(_config(tmp_path, "d", steps=2), data=data)
    assert len(seen) == 2 and all(0 < (a != b).float().mean() < 0.3 for a, b in seen)


def test_weight_decay_applies_to_the_gains_which_are_the_effective_weight_norms():
    model = _tiny_model()
    groups = _param_groups(model, 1e-3)
    decayed = {id(p) for p in groups[0]["params"]}
    names = {n for n, p in model.named_parameters() if id(p) in decayed}
    assert names and all(n.endswith("parametrizations.weight.original0") for n in names)
    assert groups[0]["weight_decay"] == 1e-3 and groups[1]["weight_decay"] == 0.0
    assert len(groups[0]["params"]) + len(groups[1]["params"]) == len(list(model.parameters()))
    # Σ g² = Σ ||W||² over the effective weights, computed from the modules' weights.
    with torch.no_grad():
        for p in groups[0]["params"]:
            p.mul_(torch.rand_like(p) + 0.5)
    gains = sum(float((p.detach().double() ** 2).sum()) for p in groups[0]["params"])
    weights = sum(float((m.weight.detach().double() ** 2).sum()) for m in model.modules()
                  if hasattr(m, "parametrizations"))
    assert gains == pytest.approx(weights, rel=1e-6)
    assert _param_groups(model, 0.0)[0].get("weight_decay") is None


def test_old_runs_without_the_new_fields_still_resume(tmp_path):
    data = _tiny_data()
    train(_config(tmp_path, "a", mutation_rate=0.0, weight_decay=0.0, steps=3), data=data)
    ck = load_checkpoint(tmp_path / "a")
    del ck["config"]["mutation_rate"], ck["config"]["weight_decay"]
    torch.save(ck, tmp_path / "a" / "checkpoint.pt")
    train(_config(tmp_path, "a", mutation_rate=0.0, weight_decay=0.0, steps=4, resume=True), data=data)


def test_train_cli_flags_reach_the_config():
    from pixelzoo.cli import build_parser
    from pixelzoo.cli.train_cmd import build_config

    args = build_parser().parse_args(["train", "pixelcnnpp_mnist", "--steps", "3", "--mutation-rate", "0.1",
                                      "--weight-decay", "0.01"])
    config = build_config(args)
    assert config.mutation_rate == 0.1 and config.weight_decay == 0.01


# ------------------------------------------------------------------------ the command
@pytest.fixture
def ood_setup(tmp_path):
    fg = _tiny_model(0)
    torch.manual_seed(1)
    bg = pixelzoo.create_model(backbone="small_plain", head="dlogistic", image_shape=(1, 8, 8), field=[3, 1],
                               nr_filters=8, num_mixtures=2)
    fg.save_pretrained(tmp_path / "fg")
    bg.save_pretrained(tmp_path / "bg")
    d = load_bundled("test")
    np.savez(tmp_path / "in.npz", images=d.images[:30, 0, 2:26:3, 2:26:3].numpy())
    np.savez(tmp_path / "out.npz", images=(255 - d.images[30:55, 0, 2:26:3, 2:26:3]).numpy())
    return tmp_path


def test_ood_command_prints_the_table_and_writes_json_scores_and_plot(ood_setup, capsys):
    t = ood_setup
    argv = ["ood", "--model", str(t / "fg"), "--background", str(t / "bg"), "--local", str(t / "bg"),
            "--in-data", str(t / "in.npz"), "--ood-data", str(t / "out.npz"), "--limit", "20",
            "--compressors", "png,lzma", "--json", str(t / "m.json"), "--scores", str(t / "s.npz"),
            "--plot", str(t / "h.png"), "--no-progress"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "AUROC" in out and "likelihood" in out and "20 images" in out
    metrics = json.loads((t / "m.json").read_text())
    assert list(metrics) == ["likelihood", "background_ratio", "local_ratio", "complexity_png", "complexity_lzma"]
    assert all({"auroc", "auprc", "fpr80", "fpr95"} <= set(m) for m in metrics.values())
    scores = np.load(t / "s.npz")
    assert scores["in_likelihood"].shape == (20,) and scores["ood_likelihood"].shape == (20,)
    # --limit takes the first N images, in order
    fg = pixelzoo.from_pretrained(t / "fg")
    first = torch.from_numpy(np.load(t / "in.npz")["images"][:20])[:, None]
    np.testing.assert_allclose(scores["in_likelihood"], nll_bits_per_dim(fg, first).numpy(), rtol=1e-6)
    assert metrics["likelihood"]["auroc"] == pytest.approx(ood_metrics(scores["in_likelihood"],
                                                                       scores["ood_likelihood"])["auroc"])
    assert Image.open(t / "h.png").size[0] > 400


@pytest.mark.parametrize("case,message", [
    ("shape", "holds (1, 12, 12) images but the models take (1, 8, 8)"),
    ("empty", "no images"),
    ("models", "--background: the models take different images"),
    ("compressor", "unknown compressor"),
])
def test_ood_command_bad_input(ood_setup, capsys, case, message):
    t = ood_setup
    argv = ["ood", "--model", str(t / "fg"), "--in-data", str(t / "in.npz"), "--ood-data", str(t / "out.npz"),
            "--no-progress"]
    if case == "shape":
        np.savez(t / "big.npz", images=np.zeros((3, 12, 12), np.uint8))
        argv[argv.index(str(t / "out.npz"))] = str(t / "big.npz")
    elif case == "empty":
        np.savez(t / "empty.npz", images=np.zeros((0, 8, 8), np.uint8))
        argv[argv.index(str(t / "out.npz"))] = str(t / "empty.npz")
    elif case == "models":
        _tiny_model(image_shape=(1, 12, 12)).save_pretrained(t / "big")
        argv += ["--background", str(t / "big")]
    else:
        argv += ["--compressors", "png,flif"]
    assert main(argv) == 1
    assert message in capsys.readouterr().err
