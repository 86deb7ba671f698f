"""Data loading of a folder of images: ``data=image_folder`` with ``data.loader=batches``, ``items``
and ``stream`` against a plain ``torchvision.datasets.ImageFolder`` + ``DataLoader`` (Resize,
CenterCrop, ToTensor, Normalize; shuffled), at the same ``num_workers`` and batch size.

Writes a synthetic folder of JPEGs (``--images``, mixed sizes 24..96 px, RGB and grayscale, 10
classes) in a temporary directory. Figures, each the median over ``--repeats`` rounds (every
round runs every loader once, in turn, each in a fresh process):

- ``<loader>_images_per_s``: training images served per second over one epoch of the train
  loader (loading only: no model, so the loaders are compared and nothing else);
- ``<loader>_prepare_s``: the one-time preparation before that epoch: decoding the folder for
  ``batches``/``items`` (config resolution and setup), the statistics pass and writing the chunks
  (``litdata.optimize``) for ``stream``, listing the folder for ImageFolder;
- ``stream_peak_rss_mb``: the peak RSS (``ru_maxrss``, no workers: one process) of a fresh process
  that streams one epoch of the chunks of each folder size of ``--sizes``.

Targets: ``stream`` >= 1.5x ImageFolder's images/s at the same num_workers; stream's peak RSS at
the largest size within +-10 % of the smallest's.

    python benchmarks/data_loading.py [--images 10000] [--sizes 10000,100000] [--num-workers 2]
        [--batch-size 64] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

from common import ROOT, emit, print_table

LOADERS = ("batches", "items", "stream", "imagefolder")
IMAGE_SIZE = 32
TARGET_SPEEDUP, TARGET_RSS = 1.5, 0.10


def write_folder(root: Path, n: int, classes: int = 10) -> Path:
    """``root/class_<k>/<i>.jpg``: ``n`` JPEGs of random sizes (24..96 px a side), a third grayscale."""
    import numpy as np
    from PIL import Image

    if (root / ".complete").exists():
        return root
    rng = np.random.default_rng(0)
    for i in range(n):
        label = i % classes
        h, w = (int(v) for v in rng.integers(24, 97, 2))
        array = (rng.random((h, w, 3)) * 100 + label * 15).astype(np.uint8)
        path = root / f"class_{label}" / f"{i}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(array).convert("L" if i % 3 == 0 else "RGB").save(path, quality=90)
    (root / ".complete").touch()
    return root


#: what the folder's config resolves to, stated: a process that only streams written chunks skips the statistics pass
STATED = ["data.mean=[0.5,0.5,0.5]", "data.std=[0.25,0.25,0.25]", f"data.provides.image_shape=[3,{IMAGE_SIZE},{IMAGE_SIZE}]",
          "data.provides.num_classes=10", "data.provides.class_names=[0,1,2,3,4,5,6,7,8,9]"]


def datamodule(loader: str, root: Path, data_dir: Path, num_workers: int, batch_size: int):
    """The DataModule of ``python train.py data=image_folder data.root=<root> data.loader=<loader>``,
    set up as train.py sets it up (one process, on the CPU); ``stream_stated``: ``stream`` with
    the statistics stated (:data:`STATED`)."""
    import torch

    from src.utils.config import compose
    from src.utils.instantiate import instantiate_component

    stated = STATED if loader == "stream_stated" else []
    cfg = compose("train", ["data=image_folder", f"data.root={root}", f"data.loader={loader.split('_')[0]}",
                            f"data.image_size={IMAGE_SIZE}", f"data.num_workers={num_workers}", f"data.batch_size={batch_size}",
                            f"paths.data_dir={data_dir}", *stated], data_dir / "run")
    dm = instantiate_component(cfg.data)
    dm.trainer = SimpleNamespace(world_size=1, global_rank=0, current_epoch=0,
                                 strategy=SimpleNamespace(root_device=torch.device("cpu")))
    dm.prepare_data()
    dm.setup("fit")
    return dm


def imagefolder_loader(root: Path, num_workers: int, batch_size: int):
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms

    transform = transforms.Compose([transforms.Resize(IMAGE_SIZE), transforms.CenterCrop(IMAGE_SIZE), transforms.ToTensor(),
                                    transforms.Normalize((0.5,) * 3, (0.5,) * 3)])
    return DataLoader(datasets.ImageFolder(str(root), transform=transform), batch_size=batch_size, shuffle=True,
                      num_workers=num_workers)


def child(loader: str, root: Path, data_dir: Path, num_workers: int, batch_size: int) -> None:
    """One loader in this fresh process: prepare, then one epoch. Prints a JSON line."""
    import litdata  # noqa: F401 - imports are not preparation
    import torchvision  # noqa: F401

    import src.data.classification
    import src.utils.instantiate  # noqa: F401

    t = time.perf_counter()
    if loader == "imagefolder":
        train = imagefolder_loader(root, num_workers, batch_size)
    else:
        dm = datamodule(loader, root, data_dir, num_workers, batch_size)
        train = dm.train_dataloader()
    prepare = time.perf_counter() - t
    t, images = time.perf_counter(), 0
    for x, _ in train:
        images += len(x)
    epoch = time.perf_counter() - t
    print(json.dumps({"prepare_s": prepare, "epoch_s": epoch, "images": images,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def run_child(*args: str) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", *args], cwd=ROOT, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"{args[0]} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=10_000, help="images of the folder the loaders are timed on")
    parser.add_argument("--sizes", default="10000,100000", help="folder sizes whose stream peak RSS is compared")
    parser.add_argument("--num-workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3, help="rounds of every loader; the figures are their medians")
    parser.add_argument("--keep", type=Path, default=None, help="write the folders here and keep them (else a temp dir)")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        loader, root, data_dir, workers, batch = args.child
        return child(loader, Path(root), Path(data_dir), int(workers), int(batch))

    work = args.keep or Path(tempfile.mkdtemp(prefix="data_loading_"))
    try:
        t = time.perf_counter()
        root = write_folder(work / f"images_{args.images}", args.images)
        print(f"wrote {args.images} JPEGs in {time.perf_counter() - t:.0f} s", flush=True)
        runs: dict[str, list[dict]] = {loader: [] for loader in LOADERS}
        for repeat in range(args.repeats):
            for loader in LOADERS:  # in turn: a slow spell of the machine hits every loader
                data_dir = work / f"data_{loader}_{repeat}"  # stream writes its chunks afresh every round
                runs[loader].append(run_child(loader, str(root), str(data_dir), str(args.num_workers), str(args.batch_size)))
                shutil.rmtree(data_dir, ignore_errors=True)
            print(f"done: round {repeat + 1}", flush=True)
        rows, figures = [], {}
        for loader, results in runs.items():
            speed = statistics.median(r["images"] / r["epoch_s"] for r in results)
            prepare = statistics.median(r["prepare_s"] for r in results)
            figures[f"{loader}_images_per_s"], figures[f"{loader}_prepare_s"] = round(speed, 1), round(prepare, 2)
            rows.append({"loader": loader, "images/s": round(speed), "epoch_s": round(statistics.median(r["epoch_s"] for r in results), 2),
                         "prepare_s": round(prepare, 2), "peak_rss_mb": round(statistics.median(r["peak_rss_mb"] for r in results))})
        speedup = figures["stream_images_per_s"] / figures["imagefolder_images_per_s"]

        rss = {}
        for n in (int(s) for s in args.sizes.split(",")):
            folder = write_folder(work / f"images_{n}", n)
            data_dir = work / f"rss_{n}"
            run_child("stream", str(folder), str(data_dir), "0", str(args.batch_size))  # writes the chunks
            rss[n] = statistics.median(run_child("stream_stated", str(folder), str(data_dir), "0", str(args.batch_size))["peak_rss_mb"]
                                       for _ in range(args.repeats))
            print(f"done: stream peak RSS at {n} images: {rss[n]:.0f} MB", flush=True)
        sizes = sorted(rss)
        growth = rss[sizes[-1]] / rss[sizes[0]] - 1
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)

    print_table(rows)
    print(f"\nstream / ImageFolder images/s: {speedup:.2f}x (target >= {TARGET_SPEEDUP}x: "
          f"{'met' if speedup >= TARGET_SPEEDUP else 'missed'}) at num_workers={args.num_workers}, "
          f"batch size {args.batch_size}, {args.images} images")
    print_table([{"images": n, "stream_peak_rss_mb": round(rss[n])} for n in sizes])
    print(f"stream peak RSS {sizes[-1]} vs {sizes[0]} images: {growth:+.1%} (target within +-{TARGET_RSS:.0%}: "
          f"{'met' if abs(growth) <= TARGET_RSS else 'missed'})")
    emit({**figures, "stream_vs_imagefolder": round(speedup, 3), "stream_peak_rss_mb": {str(n): round(rss[n], 1) for n in sizes},
          "stream_rss_growth": round(growth, 4), "images": args.images, "num_workers": args.num_workers,
          "batch_size": args.batch_size, "repeats": args.repeats, "target_speedup": TARGET_SPEEDUP,
          "target_rss_growth": TARGET_RSS, "table": rows})


if __name__ == "__main__":
    main()
