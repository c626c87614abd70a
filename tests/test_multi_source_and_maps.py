"""Several files or a folder of batches as one training set; conditioning maps and code maps in training."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import pixelzoo
from pixelzoo.cli import main
from pixelzoo.data import ImageDataset, load_dataset
from pixelzoo.train import TrainConfig, train


def _batch(path, seed, n=6, shape=(8, 8, 3), label_base=0, **extra):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, *shape), dtype=np.uint8)
    labels = (np.arange(n) + label_base) % 10
    np.savez(path, images=images, labels=labels, **extra)
    return images, labels


def test_a_folder_of_npz_batches_is_one_training_set_in_natural_order(tmp_path):
    parts = [_batch(tmp_path / f"cifar10_train_{k}.npz", k, label_base=k) for k in (1, 2, 10)]
    test_images, _ = _batch(tmp_path / "cifar10_test.npz", 99)
    train = load_dataset(tmp_path, "train")
    assert len(train) == 18 and train.split == "train" and train.image_shape == (3, 8, 8)
    expect = np.concatenate([p[0] for p in parts])  # _1, _2, _10: natural order, not _1, _10, _2
    assert np.array_equal(train.images.permute(0, 2, 3, 1).numpy(), expect)
    assert np.array_equal(train.labels.numpy(), np.concatenate([p[1] for p in parts]))
    test = load_dataset(tmp_path, "test")
    assert test.split == "test" and np.array_equal(test.images.permute(0, 2, 3, 1).numpy(), test_images)


def test_a_list_of_files_and_a_comma_separated_string_join_in_order(tmp_path):
    a, _ = _batch(tmp_path / "a.npz", 0)
    b, _ = _batch(tmp_path / "b.npz", 1)
    for source in ([tmp_path / "b.npz", tmp_path / "a.npz"], f"{tmp_path / 'b.npz'},{tmp_path / 'a.npz'}"):
        d = load_dataset(source)
        assert np.array_equal(d.images.permute(0, 2, 3, 1).numpy(), np.concatenate([b, a]))
        assert d.split is None  # single-split files


@pytest.mark.parametrize("other,message", [
    (dict(shape=(8, 8, 1)), r"different image shapes.*\(3, 8, 8\).*\(1, 8, 8\)"),
    (dict(shape=(16, 16, 3)), "different image shapes"),
])
def test_mixed_shapes_are_refused_clearly(tmp_path, other, message):
    _batch(tmp_path / "x_train_1.npz", 0)
    _batch(tmp_path / "x_train_2.npz", 1, **other)
    with pytest.raises(ValueError, match=message):
        load_dataset(tmp_path)
    with pytest.raises(ValueError, match=message):
        load_dataset([tmp_path / "x_train_1.npz", tmp_path / "x_train_2.npz"])


def test_labelled_and_unlabelled_parts_are_refused(tmp_path):
    _batch(tmp_path / "a.npz", 0)
    np.savez(tmp_path / "b.npz", images=np.zeros((2, 8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="labelled and unlabelled"):
        load_dataset([tmp_path / "a.npz", tmp_path / "b.npz"])


def _cli_args(tmp_path, *data, extra=()):
    return ["train", "--backbone", "pixelcnnpp", "--head", "dlogistic", "--set", "image_shape=[3,8,8]",
            "--set", "nr_filters=4", "--set", "nr_resnet=1", "--set", "num_mixtures=1", "--steps", "2",
            "--batch-size", "4", "--out", str(tmp_path / "run"), "--no-progress", "--threads", "1",
            "--data", *map(str, data), *extra]


def test_train_cli_takes_several_files_and_refuses_to_evaluate_on_them_without_eval_data(tmp_path, capsys):
    for k in range(3):
        _batch(tmp_path / f"train_{k}.npz", k)
    files = [tmp_path / f"train_{k}.npz" for k in range(3)]
    assert main(_cli_args(tmp_path, *files)) == 1
    assert "pass --eval-data" in capsys.readouterr().err
    assert not (tmp_path / "run" / "checkpoint.pt").exists()
    _batch(tmp_path / "held_out.npz", 9)
    assert main(_cli_args(tmp_path, *files, extra=["--eval-data", str(tmp_path / "held_out.npz"),
                                                   "--eval-split", "test"])) == 0
    config = json.loads((tmp_path / "run" / "train_config.json").read_text())
    assert config["data"] == ",".join(map(str, files))
    card = (tmp_path / "run" / "model" / "README.md").read_text()
    assert "`test` split" in card and "6 images" in card


# ------------------------------------------------------------------------ maps and codes in training
def _coded(n=24, K=20, D=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    maps = torch.randn(n, D, 2, 2, generator=g)
    # codes that follow the map: the first map channel's sign picks the half of the codebook
    half = (maps[:, :1, :1, :1] > 0).long() * (K // 2)
    codes = (torch.randint(0, K // 2, (n, 1, 4, 4), generator=g) + half).to(torch.int32)
    return ImageDataset(codes, None, bits=5, name="codes", cond_maps=maps)


def test_a_code_prior_with_maps_trains_from_an_npz_resumes_exactly_and_saves_samples(tmp_path):
    d = _coded()
    np.savez(tmp_path / "codes.npz", images=d.images[:, 0].numpy(), bits=np.int64(5), cond_maps=d.cond_maps.numpy())
    data = load_dataset(tmp_path / "codes.npz")
    assert data.cond_maps is not None and torch.equal(data.cond_maps, d.cond_maps)
    base = dict(model=None, backbone="pixelcnnpp", head="categorical", batch_size=8, log_every=1,
                model_args=dict(image_shape=[1, 4, 4], num_codes=20, cond_channels=2, nr_filters=8, nr_resnet=1,
                                dropout=0.0),
                eval_every=-1, sample_every=0, num_samples=3, progress=False, checkpoint_every=2, init_batch_size=8)
    straight = train(TrainConfig(steps=4, out_dir=str(tmp_path / "a"), **base), data=data)
    train(TrainConfig(steps=2, out_dir=str(tmp_path / "b"), **base), data=data)
    resumed = train(TrainConfig(steps=4, out_dir=str(tmp_path / "b"), resume=True, **base), data=data)
    for k, v in straight.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k
    samples = np.load(tmp_path / "a" / "samples_step4.npy")
    assert samples.shape == (3, 1, 4, 4) and samples.max() < 20
    model = pixelzoo.from_pretrained(tmp_path / "a" / "model")
    assert model.num_codes == 20 and model.cond_channels == 2
    from pixelzoo.evaluation import evaluate

    result = evaluate(model, data, batch_size=5, progress=False)
    with torch.no_grad():
        expect = float(model.nll(data.images.long(), cond_map=data.cond_maps).double().sum()) / (24 * 16 * np.log(2))
    assert result["bits_per_dim"] == pytest.approx(expect, rel=1e-6)


def test_a_map_model_on_data_without_maps_is_refused(tmp_path):
    d = _coded()
    plain = ImageDataset(d.images, None, bits=5, name="codes without maps")
    config = TrainConfig(model=None, backbone="pixelcnnpp", head="categorical", steps=1, batch_size=4,
                         model_args=dict(image_shape=[1, 4, 4], num_codes=20, cond_channels=2, nr_filters=4,
                                         nr_resnet=1), eval_every=-1, progress=False, out_dir=str(tmp_path / "r"))
    with pytest.raises(ValueError, match="store 'cond_maps'"):
        train(config, data=plain)
    too_big = ImageDataset(d.images.clamp(max=19) + 5, None, bits=5, name="codes 25")
    too_big.cond_maps = d.cond_maps
    with pytest.raises(ValueError, match=r"codes must lie in \[0, 20\)"):
        train(config, data=too_big)


def test_plot_command_draws_a_runs_curves(tmp_path, capsys):
    from PIL import Image

    run = tmp_path / "run"
    run.mkdir()
    lines = [{"kind": "train", "step": s, "loss_bpd": 5.0 - s / 100} for s in range(10, 110, 10)]
    lines += [{"kind": "eval", "step": 50, "bits_per_dim": 4.6}, {"kind": "sample", "step": 50, "path": "x.png"},
              {"kind": "eval", "step": 100, "bits_per_dim": 4.2}]
    (run / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in lines) + "\n")
    assert main(["plot", str(run), "--out", str(tmp_path / "curve.png")]) == 0
    assert "10 train and 2 eval points" in capsys.readouterr().out
    assert Image.open(tmp_path / "curve.png").size[0] > 300
    assert main(["plot", str(run), "--out", str(tmp_path / "zoomed.png"), "--ymax", "4.5"]) == 0
    full, zoomed = (np.asarray(Image.open(tmp_path / f)) for f in ("curve.png", "zoomed.png"))
    assert full.shape == zoomed.shape and (full != zoomed).any()  # the axis changed
    assert main(["plot", str(run), "--out", str(tmp_path / "c3.png"), "--ymax", "0"]) == 1
    assert "--ymax must be a positive" in capsys.readouterr().err
    (run / "metrics.jsonl").write_text("")
    assert main(["plot", str(run), "--out", str(tmp_path / "c2.png")]) == 1
    assert "no train or eval records" in capsys.readouterr().err
