"""ROUGE on CNN/DailyMail after a fixed training budget, through the entry points as users run them:
Lead-3 (`eval.py model=lead3`, no training), then `train.py` with experiment=cnndm_transformer and
experiment=cnndm_lstm for ``--minutes`` each on the local training pairs (data=cnn_dailymail_pg),
scaled down for the budget (``--size small``; at most ``--max-epochs``, which also sizes the
LSTM's one-cycle schedule), tested with beam search on the first
``--test-examples`` pairs of the tokenized test split. Lead-3 is scored on that split too.
Published anchors (See et al. 2017, full test set): Lead-3 40.34 / 17.70 / 36.57 (R-1/2/L),
pointer-generator + coverage 39.53 / 17.28 / 36.38.

    DATA_DIR=/path/to/data python benchmarks/summarization_quality.py --minutes 30 [--trainer gpu]

The last output line is JSON with the table.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from common import ROOT, data_dir, emit, last_values, print_table, train_run

KEYS = ("rouge1", "rouge2", "rougeL", "rougeLsum")
# CPU-sized versions of the experiments (``--size small``); ``--size full`` keeps them as pinned
SMALL = {
    "cnndm_transformer": ["model.net.dim=256", "model.net.num_heads=4", "model.net.encoder_layers=3",
                          "model.net.decoder_layers=3", "model.net.ff_hidden=1024", "model.optimizer.lr=0.001",
                          "model.scheduler.num_warmup_steps=200",
                          "data.batch_size=16"],
    "cnndm_lstm": ["model.net.embed_dim=128", "model.net.hidden=256", "data.batch_size=16"],
}


def cnndm_dir() -> Path:
    return Path(data_dir("cnn_dailymail/pg_tokenized/train.jsonl.gz")) / "cnn_dailymail"


def run(script: str, overrides: list[str], name: str) -> tuple[float, dict[str, float]]:
    """``python <script> <overrides>``; wall seconds and the last value of each metric it logged."""
    seconds, rows = train_run(overrides, name, script=script)
    return seconds, {k: float(v) for k, v in last_values(rows).items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30.0, help="training budget per model")
    parser.add_argument("--test-examples", type=int, default=500)
    parser.add_argument("--train-examples", type=int, default=None, help="first N training pairs (default: all)")
    parser.add_argument("--max-epochs", type=int, default=1, help="also the span of the LSTM's one-cycle schedule")
    parser.add_argument("--size", choices=["small", "full"], default="small")
    parser.add_argument("--trainer", default="cpu", help="trainer config: cpu or gpu")
    parser.add_argument("--models", nargs="+", default=["cnndm_transformer", "cnndm_lstm"])
    args = parser.parse_args()
    folder = cnndm_dir()
    # the BPE (~2 min to train on all pairs) is cached in the repo's data/ folder: DATA_DIR may be read-only
    data = ["data=cnn_dailymail_pg", f"data.data_dir={folder / 'pg_tokenized'}", f"data.max_examples.test={args.test_examples}",
            f"data.tokenizer.cache_dir={ROOT / 'data' / 'tokenizers'}"]

    rows = []
    seconds, m = run("eval.py", ["model=lead3", *data], "quality_lead3")
    rows.append({"model": "lead3", "train_minutes": 0.0, "steps": 0, **{k: round(100 * m[f"test/{k}"], 2) for k in KEYS},
                 "seconds": round(seconds, 1)})
    for experiment in args.models:
        overrides = [f"experiment={experiment}", *data, f"trainer={args.trainer}", f"+trainer.max_time={{minutes:{args.minutes}}}", "trainer.min_epochs=null",
                     f"trainer.max_epochs={args.max_epochs}", "trainer.limit_val_batches=2",
                     *(SMALL[experiment] if args.size == "small" else [])]
        if args.train_examples:
            overrides.append(f"data.max_examples.train={args.train_examples}")
        seconds, m = run("train.py", overrides, f"quality_{experiment}")
        rows.append({"model": experiment, "train_minutes": args.minutes, "steps": int(m.get("step", 0)),
                     **{k: round(100 * m[f"test/{k}"], 2) for k in KEYS}, "seconds": round(seconds, 1)})
    print_table(rows)
    print(f"\nROUGE F1 x 100 on the first {args.test_examples} pairs of pg_tokenized/test; "
          f"{args.minutes:g} training minutes per model ({args.size}, trainer={args.trainer})")
    emit({"table": rows, "minutes": args.minutes, "test_examples": args.test_examples, "size": args.size,
          "trainer": args.trainer})


if __name__ == "__main__":
    main()
