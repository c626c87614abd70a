"""Run ``pixelzoo train`` in segments and keep the exported EMA model of each segment end.

One run, stopped and resumed at the given steps (resume is bit-exact, so the final weights are those of an
uninterrupted run), leaving ``RUN/snapshots/step{N}/`` (config.json + model.safetensors) at every stop. The
OOD study (scripts/ood_study.py) scores these snapshots to show how each score depends on training length.

    python scripts/train_with_snapshots.py --out runs/fmnist --at 250 500 1000 2000 --deadline-minutes 120 \\
        -- pixelcnnpp_fashion_mnist --data fashion_mnist_train.npz --batch-size 32 --threads 1

Everything after ``--`` is passed to the first ``pixelzoo train`` call (with ``--out`` and ``--steps``); later
segments resume the run with ``--resume --steps N`` (and the same ``--threads``). Intermediate segments skip the
evaluation and sample grid; ``--deadline-minutes`` bounds the whole run: the segment running at the deadline
stops there (``--max-minutes``), and its snapshot is the last one.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path


def _last_step(out: Path) -> int:
    lines = (out / "metrics.jsonl").read_text().splitlines()
    steps = [json.loads(line).get("step", 0) for line in lines if line.strip()]
    return max(steps) if steps else 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    split = argv.index("--") if "--" in argv else len(argv)
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--at", type=int, nargs="+", required=True, help="steps at which to stop and snapshot")
    p.add_argument("--deadline-minutes", type=float, default=None, help="wall-clock budget of the whole run")
    args = p.parse_args(argv[:split])
    train_args = argv[split + 1:]
    threads = []
    if "--threads" in train_args:
        i = train_args.index("--threads")
        threads = train_args[i:i + 2]
    out = Path(args.out)
    start = time.monotonic()
    pixelzoo = [sys.executable, "-m", "pixelzoo", "train"]
    for k, steps in enumerate(sorted(set(args.at))):
        last = k == len(set(args.at)) - 1
        common = ["--steps", str(steps), "--no-progress"]
        common += ["--eval-every", "0", "--sample-every", "0"] if last else ["--eval-every", "-1", "--sample-every", "-1"]
        if args.deadline_minutes is not None:
            left = args.deadline_minutes - (time.monotonic() - start) / 60
            if left <= 0.5:
                break
            common += ["--max-minutes", f"{left:.2f}"]
        if (out / "checkpoint.pt").exists():
            cmd = pixelzoo + ["--out", str(out), "--resume", *threads, *common]
        else:
            cmd = pixelzoo + [*train_args, "--out", str(out), *common]
        print("+", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)
        reached = _last_step(out)
        snap = out / "snapshots" / f"step{reached}"
        if snap.exists():
            shutil.rmtree(snap)
        shutil.copytree(out / "model", snap)
        print(f"snapshot: {snap}", flush=True)
        if reached < steps:  # stopped at the deadline
            break
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
