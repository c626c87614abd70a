"""``pixelzoo convert pclucas14 CHECKPOINT --out FOLDER``: a pixelzoo model folder from another port's checkpoint.

Examples:
    pixelzoo convert pclucas14 pcnn_lr:0.00020_nr-resnet5_nr-filters160_889.pth --out models/c10
    pixelzoo convert pclucas14 mnist.pth --out models/mnist --eval-data mnist_test.npz
    pixelzoo convert pclucas14 mine.pth --out models/mine --image-shape 3 64 64

The folder (config.json, model.safetensors, README.md with the provenance and, with --eval-data, the exact
bits/dim over every image of that data) loads with pixelzoo.from_pretrained and samples, evaluates and pushes
like any other. It is written to a temporary folder beside --out and renamed into place: a failure leaves
nothing behind.
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

SOURCES = ("pclucas14",)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("convert", help="import a checkpoint of another PixelCNN++ port (pclucas14/pixel-cnn-pp)",
                       description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog=__doc__.split("\n", 2)[2])
    p.add_argument("source", choices=SOURCES, help="which implementation saved the checkpoint")
    p.add_argument("checkpoint", help="the .pth file")
    p.add_argument("--out", required=True, help="the model folder to write (new, or an empty folder)")
    p.add_argument("--image-shape", type=int, nargs=3, metavar=("C", "H", "W"), default=None,
                   help="image size (a checkpoint holds none; default: 3 32 32 for RGB, 1 28 28 for 1 channel)")
    p.add_argument("--eval-data", default=None, help="measure the exact bits/dim on every image of this data and "
                   "record it in the model card")
    p.add_argument("--eval-split", default="test", choices=["train", "test"], help="split of --eval-data")
    p.add_argument("--dataset-name", default=None, help="dataset name for the card (default: from --eval-data)")
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.set_defaults(func=run)


def check_new_folder(out: Path) -> None:
    """``out`` may become a model folder: new, or an empty folder; no file in its way."""
    from ..hub import check_destination_folder

    check_destination_folder(out)  # a file at --out or above it
    if out.is_dir() and any(out.iterdir()):
        raise ValueError(f"--out {out} exists and is not empty; choose a new folder or empty it first")


def run(args: argparse.Namespace) -> int:
    from ..hub import save_pretrained
    from ..importers.pclucas14 import from_pclucas14, sha256_of
    from .common import apply_threads

    apply_threads(args)
    out = Path(args.out)
    check_new_folder(out)
    path = Path(args.checkpoint)
    model = from_pclucas14(path, image_shape=args.image_shape).eval()
    digest = sha256_of(path)
    arch = ", ".join(f"{k}={model.backbone_args[k]}" for k in ("nr_resnet", "nr_filters"))
    card = {
        "provenance": (f"Converted from a pclucas14/pixel-cnn-pp checkpoint by `pixelzoo convert pclucas14`: "
                       f"source file `{path.name}`, sha256 `{digest}`. Architecture read from its tensors: {arch}, "
                       f"{model.head_args['num_mixtures']} logistic mixtures, {model.image_shape[0]} channel(s). "
                       f"The weights are the port's exactly (transposed convolutions re-normalised per output "
                       f"channel through their effective weight)."),
        "description": ("A PixelCNN++ (pixelzoo `pixelcnnpp` + `dlogistic`) with weights imported from the "
                        "pclucas14/pixel-cnn-pp PyTorch port."),
    }
    if args.eval_data is not None:
        from ..data import load_dataset
        from ..evaluation import evaluate

        data = load_dataset(args.eval_data, args.eval_split)
        if tuple(data.image_shape) != tuple(model.image_shape):
            raise ValueError(f"--eval-data holds {tuple(data.image_shape)} images but the model takes "
                             f"{tuple(model.image_shape)}; pass --image-shape {' '.join(map(str, data.image_shape))}")
        result = evaluate(model, data, batch_size=args.batch_size)
        card.update(dataset=args.dataset_name or data.name, split=args.eval_split,
                    num_images=result["num_images"], bits_per_dim=result["bits_per_dim"],
                    nats_per_image=result["nats_per_image"])
        print(f"bits/dim = {result['bits_per_dim']:.4f} on {result['num_images']} images of {data.name}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        save_pretrained(model, tmp, card=card)
        if out.is_dir():
            out.rmdir()  # empty, checked above
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    print(f"wrote {out} (config.json, model.safetensors, README.md); load it with pixelzoo.from_pretrained({str(out)!r})")
    return 0
