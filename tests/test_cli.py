"""``pixelzoo train / eval / sample`` in-process through ``pixelzoo.cli.main``: outputs, resume, every error."""
import json
import re

import numpy as np
import pytest

from pixelzoo.checkpoint import load_checkpoint
from pixelzoo.cli import main
from pixelzoo.data import load_bundled

TINY = ["--backbone", "pixelcnnpp", "--head", "dlogistic", "--set", "image_shape=[1,8,8]", "--set", "nr_filters=8",
        "--set", "nr_resnet=1", "--set", "num_mixtures=2"]


@pytest.fixture
def npz(tmp_path):
    """Bundled MNIST digits shrunk to 8x8, as a training .npz (48 images) and a test .npz (13 images)."""
    paths = {}
    for split, n in (("train", 48), ("test", 13)):
        d = load_bundled(split)
        paths[split] = tmp_path / f"{split}.npz"
        np.savez(paths[split], images=d.images[:n, 0, 2:26:3, 2:26:3].numpy(), labels=d.labels[:n].numpy())
    return paths


def test_train_then_eval_and_sample_the_run_then_resume_it(tmp_path, npz, capsys):
    run = tmp_path / "run"
    argv = ["train", *TINY, "--data", str(npz["train"]), "--eval-data", str(npz["test"]), "--steps", "3",
            "--batch-size", "8", "--out", str(run), "--checkpoint-every", "2", "--sample-every", "2",
            "--num-samples", "4", "--log-every", "1", "--ema-warmup", "--no-progress"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "train"] == [1, 2, 3]
    (evaluation,) = [r for r in records if r["kind"] == "eval"]
    assert evaluation["num_images"] == 13 and f"EMA eval bits/dim = {evaluation['bits_per_dim']:.4f}" in out
    assert (run / "samples_step2.png").is_file() and (run / "samples_step3.png").is_file()
    assert (run / "model" / "config.json").is_file() and (run / "model" / "model.safetensors").is_file()

    # eval of the run (EMA weights of the checkpoint) and of the exported folder give the training's number.
    for spec in (str(run), str(run / "checkpoint.pt"), str(run / "model")):
        assert main(["eval", spec, "--data", str(npz["test"]), "--json"]) == 0
        got = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert got["num_images"] == 13 and got["bits_per_dim"] == pytest.approx(evaluation["bits_per_dim"], rel=1e-9)
    assert main(["eval", str(run), "--weights", "model", "--data", str(npz["test"]), "--json"]) == 0
    raw = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert raw["bits_per_dim"] != pytest.approx(evaluation["bits_per_dim"], rel=1e-9)

    assert main(["sample", str(run), "-n", "3", "--out", str(tmp_path / "s.png"), "--npy", str(tmp_path / "s.npy"),
                 "--device", "cpu"]) == 0
    images = np.load(tmp_path / "s.npy")
    assert images.shape == (3, 1, 8, 8) and images.dtype == np.uint8 and (tmp_path / "s.png").is_file()

    # --resume without a model reuses the saved settings; --steps extends the run.
    assert main(["train", "--out", str(run), "--resume", "--steps", "5", "--no-progress"]) == 0
    state = load_checkpoint(run)
    assert state["step"] == 5 and state["config"]["batch_size"] == 8 and state["config"]["data"] == str(npz["train"])
    assert state["config"]["ema_warmup"] is True and state["config"]["lr"] == 1e-3


def test_eval_prints_less_or_equal_for_a_bound(tmp_path, npz, capsys, monkeypatch):
    from pixelzoo.heads.dlogistic import DiscretizedLogisticMixture

    run = tmp_path / "run"
    assert main(["train", *TINY, "--data", str(npz["train"]), "--steps", "1", "--batch-size", "8", "--out", str(run),
                 "--eval-every", "-1", "--sample-every", "-1", "--no-progress"]) == 0
    assert main(["eval", str(run), "--data", str(npz["test"])]) == 0
    assert "bits/dim = " in capsys.readouterr().out
    monkeypatch.setattr(DiscretizedLogisticMixture, "exact", False)
    assert main(["eval", str(run), "--data", str(npz["test"])]) == 0
    assert "bits/dim ≤ " in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["train", "pixelcnnpp_mnsit", "--steps", "1"], "Unknown model 'pixelcnnpp_mnsit'"),
    (["train", "--set", "nr_filters", "--steps", "1"], "--set expects KEY=VALUE"),
    (["train", "--set", "nr_filterz=8", "--steps", "1"], "no part of the model takes the argument 'nr_filterz'"),
    (["train", "--data", "{tmp}/missing.npz", "--steps", "1"], "missing.npz"),
    (["train", "pixelcnnpp_small", "--steps", "1"], r"image_shape=\[1,28,28\]"),
    (["train", "--resume"], "cannot resume"),
    (["train"], "--steps N or --epochs N"),
    (["eval", "{tmp}/no_such_run"], "no_such_run"),
])
def test_bad_input_is_one_line_on_stderr_and_exit_code_1(tmp_path, capsys, argv, message):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv] + ["--out", str(tmp_path / "out")] * (argv[0] == "train")
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"pixelzoo {argv[0]}: error:") and len(err.strip().splitlines()) == 1
    assert re.search(message, err), err
    assert not (tmp_path / "out" / "checkpoint.pt").exists()



def test_train_speed_flags_reach_the_config():
    from pixelzoo.cli import build_parser
    from pixelzoo.cli.train_cmd import build_config

    parse = build_parser().parse_args
    default = build_config(parse(["train", "--steps", "1"]))
    assert default.compile_kernels is False and default.reuse_cpu_memory is True
    config = build_config(parse(["train", "--steps", "1", "--compile-kernels", "--no-reuse-cpu-memory"]))
    assert config.compile_kernels is True and config.reuse_cpu_memory is False
