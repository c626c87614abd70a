"""Two processes on the CPU (gloo), as torchrun would start them: identical weights, and the same losses as
one process on the same global batch."""
import json
import socket

import timm.utils  # noqa: F401  (imported before the fork, so the ranks need not import it again)
import torch
import torch.multiprocessing as mp

from pixelzoo.data import ImageDataset, load_bundled
from pixelzoo.train import TrainConfig, train


def mnist8(n: int) -> ImageDataset:
    d = load_bundled("train")
    return ImageDataset(d.images[:n, :, 2:26:3, 2:26:3].contiguous(), d.labels[:n], 8, "mnist8")


def config(out_dir, batch_size: int, steps: int = 4, dropout: float = 0.0, resume: bool = False) -> TrainConfig:
    # float64 and no dropout: a DDP run and a single-process run then differ only by the order of float sums.
    return TrainConfig(model=None, backbone="pixelcnnpp", head="dlogistic",
                       model_args=dict(image_shape=[1, 8, 8], nr_filters=8, nr_resnet=1, num_mixtures=2,
                                       dropout=dropout),
                       dtype="float64", batch_size=batch_size, steps=steps, lr=3e-3, out_dir=str(out_dir),
                       log_every=1, checkpoint_every=2, eval_every=-1, sample_every=-1, export=False, progress=False,
                       device="cpu", resume=resume)


def _worker(rank: int, port: int, out_dir: str, kw: dict) -> None:
    import os

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2",
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    result = train(config(out_dir, batch_size=4, **kw), data=mnist8(40))
    torch.save({"model": result.model.state_dict(), "ema": result.ema_model.state_dict()},
               f"{out_dir}/rank{rank}.pt")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_two_ranks(out_dir, **kw) -> list[dict]:
    """What ``torchrun --nproc_per_node 2`` does, in-process: two gloo ranks; returns each rank's weights."""
    # fork: the children inherit the imported modules (torch, timm, pixelzoo), which saves most of the time.
    mp.start_processes(_worker, args=(_free_port(), str(out_dir), kw), nprocs=2, join=True, start_method="fork")
    return [torch.load(out_dir / f"rank{r}.pt", weights_only=True) for r in (0, 1)]


def test_two_gloo_ranks_match_each_other_and_one_process_on_the_global_batch(tmp_path):
    ranks = run_two_ranks(tmp_path / "ddp")
    for key in ("model", "ema"):
        a, b = ranks[0][key], ranks[1][key]
        assert all(torch.equal(a[k], b[k]) for k in a), f"ranks disagree on the {key} weights"

    single = train(config(tmp_path / "one", batch_size=8), data=mnist8(40))
    ddp_losses = {r["step"]: r["loss_bpd"] for r in map(json.loads, (tmp_path / "ddp" / "metrics.jsonl").open())
                  if r["kind"] == "train"}
    one_losses = {r["step"]: r["loss_bpd"] for r in single.history if r["kind"] == "train"}
    assert sorted(ddp_losses) == [1, 2, 3, 4]
    for step in ddp_losses:
        assert abs(ddp_losses[step] - one_losses[step]) < 1e-10, step
    for k, v in single.model.state_dict().items():
        torch.testing.assert_close(ranks[0]["model"][k], v, rtol=1e-9, atol=1e-10, msg=k)
    # Rank 0 alone wrote the checkpoint, with both ranks' random states.
    state = torch.load(tmp_path / "ddp" / "checkpoint.pt", weights_only=True)
    assert state["world_size"] == 2 and len(state["rng"]) == 2 and state["step"] == 4


def test_two_ranks_resume_exactly_with_dropout(tmp_path):
    straight = run_two_ranks(tmp_path / "a", dropout=0.5)
    run_two_ranks(tmp_path / "b", dropout=0.5, steps=2)
    resumed = run_two_ranks(tmp_path / "b", dropout=0.5, resume=True)
    for r in (0, 1):
        for key in ("model", "ema"):
            assert all(torch.equal(resumed[r][key][k], straight[r][key][k]) for k in straight[r][key]), (r, key)
