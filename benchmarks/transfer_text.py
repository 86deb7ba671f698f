"""Summarization from scratch vs from denoising pre-training, through the entry points as users
run them: `train.py experiment=pretrain_transformer_small` (data=cnndm_wikitext_denoising: the
CNN/DailyMail training articles and WikiText-2) for ``--text-pretrain-steps``, then
`train.py experiment=cnndm_transformer_small` for ``--text-finetune-steps`` twice, side by side: from
scratch, and with ``init=checkpoint init.path=<pre-training checkpoint>``. Same recipe, steps, data order and
tokenizer (the pre-training BPE, which the fine-tuning run adopts from the checkpoint and the scratch
run loads from a folder), so the starting weights are the only difference. ROUGE F1 on the first
``--text-test-examples`` pairs of pg_tokenized/test, decoded greedily (min 30 / max
``--text-target-len`` tokens, no repeated trigram). Published anchors for the size of the gain:
T5 (Raffel et al. 2020, Table 1) CNN/DM ROUGE-2 17.60 from scratch -> 19.24 pre-trained (18.33 with
~8M pre-training tokens, Table 9); Rothe et al. 2020, 14.00 -> 17.8.

    DATA_DIR=/path/to/data python benchmarks/transfer_text.py [--text-pretrain-steps 600 ...]

benchmarks/transfer.py imports :func:`add_text_args` and :func:`text_rows`. The last output line is
JSON: the table, ``rouge2_gain`` (points) and ``text_pretrain_seconds``.
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch
from common import ROOT, data_dir, emit, last_values, print_table, train_run

from src.data.tokenizers import CHECKPOINT_KEY, tokenizer_from_dict

KEYS = ("rouge1", "rouge2", "rougeL", "rougeLsum")


def add_text_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("text (summarization) transfer")
    group.add_argument("--text-pretrain-steps", type=int, default=600, help="denoising pre-training steps")
    group.add_argument("--text-finetune-steps", type=int, default=300, help="summarization steps, scratch and pre-trained")
    group.add_argument("--text-objective", choices=["span_corruption", "text_infilling"], default="text_infilling")
    group.add_argument("--text-pretrain-len", type=int, default=64, help="pre-training text length in tokens")
    group.add_argument("--text-source-len", type=int, default=128, help="fine-tuning article length in tokens")
    group.add_argument("--text-target-len", type=int, default=64, help="summary length in tokens (training and decoding)")
    group.add_argument("--text-test-examples", type=int, default=300)
    group.add_argument("--text-pretrained", default=None,
                       help="the last.ckpt of a finished pre-training run (of this script) to fine-tune instead of pre-training")
    group.add_argument("--text-trainer", default="cpu", help="trainer config: cpu or gpu")


def _run(overrides: list[str], name: str, folder: Path) -> tuple[float, dict[str, float], Path]:
    """train.py with ``overrides`` in ``folder``: wall seconds, last logged metrics, run folder."""
    seconds, rows = train_run(overrides, name, log_dir=folder)
    (run,) = {p.parent for p in folder.rglob("summary.json")}
    return seconds, {k: float(v) for k, v in last_values(rows).items()}, run


def text_rows(args: argparse.Namespace) -> tuple[list[dict[str, Any]], dict[str, float]]:
    for required in ("cnn_dailymail/pg_tokenized/train.jsonl.gz", "wikitext-2-raw/train.txt"):
        data_dir(required)  # the experiments read them through paths.data_dir (DATA_DIR)
    out = ROOT / "logs" / "benchmarks" / f"transfer_text_{int(time.time())}"
    common = [f"trainer={args.text_trainer}", "trainer.max_epochs=1", "trainer.limit_val_batches=2",
              f"data.tokenizer.cache_dir={ROOT / 'data' / 'tokenizers'}"]  # DATA_DIR may be read-only
    pre_ckpt = Path(args.text_pretrained) if args.text_pretrained else None
    if pre_ckpt is None:
        target = args.text_pretrain_len + 1 if args.text_objective == "text_infilling" else args.text_target_len
        _run(["experiment=pretrain_transformer_small", *common, f"trainer.limit_train_batches={args.text_pretrain_steps}",
              "trainer.limit_test_batches=2", f"data.objective={args.text_objective}",
              f"data.max_source_len={args.text_pretrain_len}", f"data.max_target_len={target}",
              f"model.val_generation.max_len={target}"], "pretrain", out / "pretrain")
        pre_ckpt = next((out / "pretrain").rglob("last.ckpt"))
    pre_run, pre_state = pre_ckpt.parents[1], torch.load(pre_ckpt, weights_only=True)
    pre_summary = json.loads((pre_run / "summary.json").read_text())
    tokenizer = out / "tokenizer"  # the pre-training BPE, for the scratch run
    tokenizer_from_dict(pre_state[CHECKPOINT_KEY]).save_pretrained(tokenizer)

    finetune = ["experiment=cnndm_transformer_small", *common, f"trainer.limit_train_batches={args.text_finetune_steps}",
                f"data.max_examples.test={args.text_test_examples}", f"data.max_source_len={args.text_source_len}",
                f"data.max_target_len={args.text_target_len}", "model.generation.beam_size=1",
                f"model.generation.max_len={args.text_target_len}", f"model.val_generation.max_len={args.text_target_len}"]
    runs = {"scratch": [f"data.tokenizer.name={tokenizer}"], "denoising": ["init=checkpoint", f"init.path={pre_ckpt}"]}
    # the two runs side by side: on a shared machine both see the same load
    with ThreadPoolExecutor(len(runs)) as pool:
        results = dict(zip(runs, pool.map(lambda init: _run([*finetune, *runs[init]], f"finetune_{init}", out / init), runs)))
    rows, fingerprints = [], set()
    for init, (seconds, m, run) in results.items():
        fingerprints.add(torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["tokenizer_fingerprint"])
        rows.append({"task": "cnndm", "init": init, **{k: round(100 * m[f"test/{k}"], 2) for k in KEYS},
                     "steps": int(m["step"]), "seconds": round(seconds, 1)})
    if len(fingerprints) != 1:
        raise SystemExit(f"the two fine-tuning runs used different tokenizers ({fingerprints}): not a comparison")
    objective = pre_state["archlab"]["config"]["data"]["objective"]
    rows.insert(0, {"task": "denoising", "init": f"pretrain ({objective})", "steps": pre_state["global_step"],
                    "seconds": round(pre_summary["time/wall_s"], 1), "val_loss": round(pre_summary["best/val/loss"], 3)})
    figures = {"rouge2_gain": round(rows[2]["rouge2"] - rows[1]["rouge2"], 2),
               "rouge1_gain": round(rows[2]["rouge1"] - rows[1]["rouge1"], 2),
               "rougeLsum_gain": round(rows[2]["rougeLsum"] - rows[1]["rougeLsum"], 2),
               "text_pretrain_seconds": round(pre_summary["time/wall_s"], 1), "text_pretrain_steps": pre_state["global_step"],
               "text_finetune_steps": args.text_finetune_steps, "text_test_examples": args.text_test_examples}
    return rows, figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_text_args(parser)
    args = parser.parse_args()
    rows, figures = text_rows(args)
    print_table(rows)
    print(f"\nROUGE F1 x 100 on the first {args.text_test_examples} pairs of pg_tokenized/test (greedy, min 30 / max "
          f"{args.text_target_len} tokens, no repeated trigram); ROUGE-2 gain {figures['rouge2_gain']:+.2f} points after "
          f"{args.text_finetune_steps} fine-tuning steps; pre-training {figures['text_pretrain_seconds']:.0f} s "
          f"(seconds: pre-training, its run's time/wall_s; fine-tuning, each train.py process start to exit, the two "
          f"side by side; trainer={args.text_trainer})")
    # a reused pre-training (--text-pretrained) was run with its own settings, in its run folder
    reused = ("text_pretrain_steps", "text_objective", "text_pretrain_len") if args.text_pretrained else ()
    emit({"table": rows, **figures, "settings": {k: v for k, v in vars(args).items() if k not in reused}})


if __name__ == "__main__":
    main()
