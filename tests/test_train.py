"""Training: loss goes down on real images, EMA, data-dependent init once, exact resume, time limit, evaluation.

Models are tiny (8 filters, 1 resnet, 2 mixtures) so the whole file runs in well under a minute on one thread.
"""
import json
import math

import pytest
import torch

import pixelzoo
from pixelzoo.checkpoint import load_checkpoint
from pixelzoo.data import ImageDataset, load_bundled
from pixelzoo.evaluation import evaluate
from pixelzoo.model import PixelZooModel
from pixelzoo.train import TrainConfig, TrainingDiverged, epoch_batches, train

TINY = dict(nr_filters=8, nr_resnet=1, num_mixtures=2)


def tiny_mnist(n: int, split: str = "train") -> ImageDataset:
    """Real bundled MNIST digits shrunk to 8x8 (centre 24x24, every 3rd pixel): fast, and not noise."""
    d = load_bundled(split)
    return ImageDataset(d.images[:n, :, 2:26:3, 2:26:3].contiguous(), d.labels[:n], 8, f"mnist8 {split}")


def tiny_config(tmp_path, **kw) -> TrainConfig:
    base = dict(model=None, backbone="pixelcnnpp", head="dlogistic",
                model_args=dict(TINY, image_shape=[1, 8, 8], dropout=0.5), batch_size=8, steps=4,
                out_dir=str(tmp_path / "run"), log_every=1, checkpoint_every=100, eval_every=-1,
                sample_every=-1, export=False, progress=False, init_batch_size=8)
    base.update(kw)
    return TrainConfig(**base)


def states_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def train_losses(records) -> dict[int, float]:
    return {r["step"]: r["loss_bpd"] for r in records if r["kind"] == "train"}


# ------------------------------------------------------------------------------------------ learning
def test_a_few_steps_on_bundled_mnist_lower_the_loss_and_beat_uniform(tmp_path):
    config = TrainConfig(model_args=dict(TINY, dropout=0.0), data="bundled", batch_size=8, steps=24, lr=3e-3,
                         out_dir=str(tmp_path / "run"), log_every=1, checkpoint_every=100, eval_every=-1,
                         sample_every=-1, export=False, progress=False)
    result = train(config)
    losses = [r["loss_bpd"] for r in result.history if r["kind"] == "train"]
    assert len(losses) == 24
    first, last = sum(losses[:4]) / 4, sum(losses[-4:]) / 4
    assert last < first - 0.2, (first, last)
    assert last < 8.0 - 3.0  # far better than the uniform 8 bits/dim of 256 levels
    # The learning rate of step k is lr * decay**(k - 1) (decayed after every step, DESIGN §4).
    for r in result.history:
        if r["kind"] == "train":
            assert r["lr"] == pytest.approx(3e-3 * 0.999995 ** (r["step"] - 1), rel=1e-12)


def test_ema_follows_the_explicit_recursion_and_is_what_is_evaluated_and_exported(tmp_path):
    data, test = tiny_mnist(64), tiny_mnist(23, "test")
    raw_steps = []
    config = tiny_config(tmp_path, steps=5, ema_decay=0.6, eval_every=0, export=True, eval_batch_size=10)
    result = train(config, data=data, eval_data=test,
                   callback=lambda step, model: raw_steps.append(
                       {k: v.detach().double().clone() for k, v in model.state_dict().items()}))
    # EMA by hand in float64: the first update copies (timm: decay 0 at step 1), then e = d*e + (1-d)*w.
    ema = dict(raw_steps[0])
    for w in raw_steps[1:]:
        ema = {k: 0.6 * ema[k] + 0.4 * w[k] for k in ema}
    got = result.ema_model.state_dict()
    for k in ema:
        torch.testing.assert_close(got[k].double(), ema[k], rtol=1e-5, atol=1e-6, msg=k)
    raw = result.model.state_dict()
    assert not all(torch.equal(raw[k], got[k]) for k in raw), "EMA weights should differ from the raw weights"

    # The reported evaluation is of the EMA weights, over all 23 images, by explicit per-image sums.
    exported = PixelZooModel.from_pretrained(str(result.model_dir)) if not hasattr(pixelzoo, "from_pretrained") \
        else pixelzoo.from_pretrained(str(result.model_dir))
    assert states_equal(exported.state_dict(), got)

    def per_image_bpd(model) -> float:
        model.eval()
        with torch.no_grad():
            nats = sum(float(model.nll(test.images[i:i + 1]).double()) for i in range(len(test)))
        return nats / (len(test) * 64 * math.log(2.0))

    assert result.eval["num_images"] == 23
    assert result.eval["bits_per_dim"] == pytest.approx(per_image_bpd(exported), rel=1e-6)
    assert abs(result.eval["bits_per_dim"] - per_image_bpd(result.model)) > 1e-4
    records = [json.loads(line) for line in (result.out_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["kind"] for r in records].count("eval") == 1


def test_evaluate_counts_every_image_when_n_is_not_a_multiple_of_the_batch():
    torch.manual_seed(0)
    model = pixelzoo.create_model(backbone="pixelcnnpp", head="dlogistic", image_shape=(1, 8, 8), **TINY).double()
    data = tiny_mnist(23, "test")
    out = evaluate(model, data, batch_size=5, progress=False)
    model.eval()
    with torch.no_grad():
        total = sum(float(model.nll(data.images[i:i + 1])) for i in range(23))  # float64 model, one by one
    assert out["num_images"] == 23
    assert out["nats_per_image"] == pytest.approx(total / 23, rel=1e-12)
    assert out["bits_per_dim"] == pytest.approx(total / (23 * 64 * math.log(2.0)), rel=1e-12)


# --------------------------------------------------------------------------- init, resume, time limit
def test_data_dependent_init_runs_once_on_a_fresh_run_never_on_resume_or_from_weights(tmp_path, monkeypatch):
    calls = []
    original = PixelZooModel.data_dependent_init

    def counting(self, x, labels=None, cond_map=None):
        calls.append(x.shape[0])
        return original(self, x, labels, cond_map)

    monkeypatch.setattr(PixelZooModel, "data_dependent_init", counting)
    data = tiny_mnist(32)
    first = train(tiny_config(tmp_path, steps=2), data=data)
    assert calls == [8]  # init_batch_size images, once
    train(tiny_config(tmp_path, steps=3, resume=True), data=data)
    assert calls == [8]
    ckpt = first.out_dir / "checkpoint.pt"
    train(tiny_config(tmp_path, model=None, backbone=None, head=None, model_args={}, init_from=str(ckpt), steps=1,
                      out_dir=str(tmp_path / "b")), data=data)
    assert calls == [8]


class Crash(Exception):
    pass


def test_resume_after_a_crash_ends_bit_for_bit_where_the_uninterrupted_run_does(tmp_path):
    # 40 images, batch 8: 5 steps per epoch, so the resumed part crosses an epoch boundary; dropout 0.5 makes
    # the result depend on the restored random state too.
    data = tiny_mnist(40)
    straight = train(tiny_config(tmp_path, steps=8, checkpoint_every=2, out_dir=str(tmp_path / "a")), data=data)

    def crash_at_5(step, model):
        if step == 5:
            raise Crash

    with pytest.raises(Crash):
        train(tiny_config(tmp_path, steps=8, checkpoint_every=2, out_dir=str(tmp_path / "b")), data=data,
              callback=crash_at_5)
    assert load_checkpoint(tmp_path / "b")["step"] == 4  # step 5's work is lost and redone
    resumed = train(tiny_config(tmp_path, steps=8, checkpoint_every=2, out_dir=str(tmp_path / "b"), resume=True),
                    data=data)

    assert resumed.step == straight.step == 8
    assert states_equal(resumed.model.state_dict(), straight.model.state_dict())
    assert states_equal(resumed.ema_model.state_dict(), straight.ema_model.state_dict())
    a, b = load_checkpoint(tmp_path / "a"), load_checkpoint(tmp_path / "b")
    assert states_equal(a["model"], b["model"]) and states_equal(a["ema"], b["ema"])
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert a["optimizer"]["param_groups"][0]["betas"] == (0.95, 0.9995)  # the reference's Adam betas
    # metrics.jsonl of the resumed run: each step once, with the same losses as the uninterrupted run.
    lines = [json.loads(line) for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in lines if r["kind"] == "train"]
    assert steps == list(range(1, 9))
    assert train_losses(lines) == train_losses(straight.history)


def test_time_limit_checkpoints_exports_and_resumes_to_the_end(tmp_path):
    data = tiny_mnist(32)
    first = train(tiny_config(tmp_path, steps=6, max_minutes=1e-9, export=True), data=data)
    assert first.stopped == "time_limit" and first.step == 1
    assert load_checkpoint(first.out_dir)["step"] == 1
    assert (first.model_dir / "model.safetensors").is_file() and (first.model_dir / "config.json").is_file()
    second = train(tiny_config(tmp_path, steps=6, resume=True), data=data)
    assert second.stopped == "completed" and second.step == 6


def test_epochs_count_full_batches_and_the_data_order_depends_on_seed_and_epoch_only(tmp_path):
    data = tiny_mnist(20)
    result = train(tiny_config(tmp_path, steps=None, epochs=2), data=data)  # 20 // 8 = 2 steps per epoch
    assert result.step == 4
    e0, e0_again, e1 = (epoch_batches(data, 4, 7, e) for e in (0, 0, 1))
    assert e0 == e0_again and e0 != e1 and len(e0) == 5
    assert sorted(i for b in e0 for i in b) == list(range(20))
    # Two ranks with batch 2 see, at every step, exactly the images of one process with batch 4.
    r0, r1 = (epoch_batches(data, 2, 7, 0, rank, 2) for rank in (0, 1))
    assert [sorted(a + b) for a, b in zip(r0, r1)] == [sorted(b) for b in e0]


def test_bf16_autocast_keeps_a_float32_loss(tmp_path):
    result = train(tiny_config(tmp_path, steps=2, bf16=True), data=tiny_mnist(16))
    assert all(math.isfinite(r["loss_bpd"]) for r in result.history if r["kind"] == "train")
    assert all(p.dtype == torch.float32 for p in result.model.parameters())


def test_num_workers_give_the_same_batches(tmp_path):
    data = tiny_mnist(24)
    a = train(tiny_config(tmp_path, steps=3, out_dir=str(tmp_path / "a")), data=data)
    b = train(tiny_config(tmp_path, steps=3, out_dir=str(tmp_path / "b"), num_workers=1), data=data)
    assert states_equal(a.model.state_dict(), b.model.state_dict())


def test_a_diverged_loss_stops_with_a_clear_error(tmp_path):
    with pytest.raises(TrainingDiverged, match="NaN|nan|inf"):
        train(tiny_config(tmp_path, steps=3, lr=1e30, init_batch_size=0), data=tiny_mnist(16))


# ----------------------------------------------------------------------------------------- bad input
def test_bad_settings_are_value_errors_that_name_the_fix(tmp_path):
    with pytest.raises(ValueError, match="exactly one of steps / epochs"):
        TrainConfig(steps=None)
    with pytest.raises(ValueError, match="exactly one of steps / epochs"):
        TrainConfig(steps=3, epochs=1)
    with pytest.raises(ValueError, match="batch_size"):
        TrainConfig(steps=1, batch_size=0)
    with pytest.raises(ValueError, match="unknown TrainConfig field"):
        TrainConfig.from_dict({"steps": 1, "batchsize": 4})
    with pytest.raises(ValueError, match="Unknown model 'pixelcnnpp_mnsit'.*pixelcnnpp_mnist"):
        train(TrainConfig(model="pixelcnnpp_mnsit", steps=1, out_dir=str(tmp_path / "x"), progress=False))


def test_data_that_does_not_fit_the_model_is_refused(tmp_path):
    data = tiny_mnist(16)
    with pytest.raises(ValueError, match=r"shape \(1, 8, 8\).*\(3, 32, 32\).*image_shape=\[1,8,8\]"):
        train(TrainConfig(model="pixelcnnpp_small", steps=1, out_dir=str(tmp_path / "x"), progress=False), data=data)
    with pytest.raises(ValueError, match="class-conditional.*no labels"):
        unlabeled = ImageDataset(data.images, None, 8, "unlabeled")
        train(tiny_config(tmp_path, model_args=dict(TINY, image_shape=[1, 8, 8], num_classes=10)), data=unlabeled)
    with pytest.raises(ValueError, match="fewer than one global batch"):
        train(tiny_config(tmp_path, batch_size=32), data=data)


def test_resume_needs_a_checkpoint_and_the_same_settings(tmp_path):
    data = tiny_mnist(16)
    with pytest.raises(ValueError, match="holds no checkpoint.pt.*without --resume"):
        train(tiny_config(tmp_path, resume=True), data=data)
    train(tiny_config(tmp_path, steps=1), data=data)
    with pytest.raises(ValueError, match="already holds a checkpoint.*--resume"):
        train(tiny_config(tmp_path, steps=2), data=data)
    with pytest.raises(ValueError, match=r"different settings \(lr: 0.001 -> 0.5\)"):
        train(tiny_config(tmp_path, steps=2, lr=0.5, resume=True), data=data)
    with pytest.raises(ValueError, match="trained on 16 images, the data now has 24"):
        train(tiny_config(tmp_path, steps=2, resume=True), data=tiny_mnist(24))
