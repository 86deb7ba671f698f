"""Training and generation throughput of model=transformer against Hugging Face BART of the same
dimensions and dropout (random init, same batch, same device; CPU by default):

- training tokens/s (source + target tokens per optimizer step: forward, loss, backward, AdamW),
  ours / ``BartForConditionalGeneration``; target >= 1.2;
- generation tokens/s of beam search (summary tokens per second, every hypothesis forced to
  ``--tgt-len`` tokens so both decode the same number of steps), ours / BART's ``generate``.

Each figure is the median of ``--repeats`` rounds that time ours then BART in turn; a spread of the
per-round ratios above 15 % of their median is flagged.

    python benchmarks/summarization_throughput.py [--dim 256 --layers 3 --batch 8 ...]

The last output line is JSON with ``train_tokens_per_s_ratio`` and ``generate_tokens_per_s_ratio``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from common import emit, print_table, spread


def seconds(fn: Callable[[], None], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t


def interleaved(ours: Callable[[], None], bart: Callable[[], None], repeats: int,
                device: torch.device) -> tuple[dict[str, float], list[float]]:
    """Median seconds of each side after one warm-up call of each, the two timed in turns (a slow
    spell of the machine hits both), and BART's time over ours in each round."""
    ours(), bart()
    rounds = [(seconds(ours, device), seconds(bart, device)) for _ in range(repeats)]
    return ({"ours": statistics.median(o for o, _ in rounds), "bart": statistics.median(b for _, b in rounds)},
            [b / o for o, b in rounds])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vocab", type=int, default=8000)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--layers", type=int, default=3, help="encoder and decoder layers each")
    parser.add_argument("--ff", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--src-len", type=int, default=400)
    parser.add_argument("--tgt-len", type=int, default=100)
    parser.add_argument("--gen-batch", type=int, default=4)
    parser.add_argument("--gen-len", type=int, default=30)
    parser.add_argument("--beams", type=int, default=4)
    parser.add_argument("--attention-dropout", type=float, default=0.1,
                        help="both models' dropout of attention weights (0: SDPA's fused kernel on CPU too)")
    parser.add_argument("--repeats", type=int, default=5, help="rounds, each timing ours then BART; figures are medians")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()

    from transformers import BartConfig, BartForConditionalGeneration

    from src.models.nets.decoding import beam_search
    from src.models.nets.transformer import TransformerSeq2Seq

    device = torch.device(args.device)
    pad, bos, eos = 0, 1, 2
    torch.manual_seed(0)
    ours = TransformerSeq2Seq(args.vocab, pad, bos, eos, dim=args.dim, num_heads=args.heads, encoder_layers=args.layers,
                              decoder_layers=args.layers, ff_hidden=args.ff, dropout=0.1,
                              attention_dropout=args.attention_dropout).to(device)
    bart = BartForConditionalGeneration(BartConfig(
        vocab_size=args.vocab, d_model=args.dim, encoder_layers=args.layers, decoder_layers=args.layers,
        encoder_attention_heads=args.heads, decoder_attention_heads=args.heads, encoder_ffn_dim=args.ff,
        decoder_ffn_dim=args.ff, max_position_embeddings=max(args.src_len, args.tgt_len) + 2, dropout=0.1,
        attention_dropout=args.attention_dropout, activation_dropout=0.1, activation_function="gelu", scale_embedding=True,
        pad_token_id=pad, bos_token_id=bos, eos_token_id=eos, decoder_start_token_id=eos, forced_eos_token_id=None,
        forced_bos_token_id=None)).to(device)
    params = {"ours": sum(p.numel() for p in ours.parameters()), "bart": sum(p.numel() for p in bart.parameters())}

    g = torch.Generator().manual_seed(1)
    source = torch.randint(3, args.vocab, (args.batch, args.src_len), generator=g).to(device)
    target = torch.randint(3, args.vocab, (args.batch, args.tgt_len), generator=g).to(device)
    source[: args.batch // 2, args.src_len * 3 // 4:] = pad  # some padding, as in real batches
    target[: args.batch // 2, args.tgt_len * 3 // 4:] = pad
    opt_ours = torch.optim.AdamW(ours.parameters(), lr=1e-4)
    opt_bart = torch.optim.AdamW(bart.parameters(), lr=1e-4)

    def step_ours() -> None:
        out = ours(source, target)
        loss = F.cross_entropy(out.logits.flatten(0, 1), target.flatten(), ignore_index=pad, label_smoothing=0.1)
        opt_ours.zero_grad(set_to_none=True)
        loss.backward()
        opt_ours.step()

    # BART's own shift right (decoder_start_token_id first); no labels, so it computes no loss of its own
    decoder_input = F.pad(target[:, :-1], (1, 0), value=eos)

    def step_bart() -> None:
        out = bart(input_ids=source, attention_mask=source != pad, decoder_input_ids=decoder_input)
        loss = F.cross_entropy(out.logits.flatten(0, 1), target.flatten(), ignore_index=pad, label_smoothing=0.1)
        opt_bart.zero_grad(set_to_none=True)
        loss.backward()
        opt_bart.step()

    ours.train(), bart.train()
    tokens = int((source != pad).sum() + (target != pad).sum())
    train_s, train_ratios = interleaved(step_ours, step_bart, args.repeats, device)

    ours.eval(), bart.eval()
    gen_source = source[: args.gen_batch]
    n = args.gen_len

    def gen_ours() -> None:
        beam_search(ours, gen_source, beam_size=args.beams, max_len=n, min_len=n, length_penalty=1.0)

    @torch.no_grad()
    def gen_bart() -> None:
        bart.generate(input_ids=gen_source, attention_mask=gen_source != pad, num_beams=args.beams, max_new_tokens=n,
                      min_new_tokens=n, length_penalty=1.0, do_sample=False, early_stopping=False)

    gen_s, gen_ratios = interleaved(gen_ours, gen_bart, args.repeats, device)

    rows = [{"model": name, "params": params[name], "train_step_s": round(train_s[name], 4),
             "train_tokens_per_s": round(tokens / train_s[name], 1), "generate_s": round(gen_s[name], 4),
             "generate_tokens_per_s": round(args.gen_batch * n / gen_s[name], 1)} for name in ("ours", "bart")]
    print_table(rows)
    train_ratio, gen_ratio = statistics.median(train_ratios), statistics.median(gen_ratios)
    spreads = {"train": spread("training", train_ratios), "generate": spread("beam-search", gen_ratios)}
    print(f"\ntraining tokens/s ours / BART: median {train_ratio:.3f} of {', '.join(f'{r:.3f}' for r in train_ratios)} "
          f"(target >= 1.2); beam-search tokens/s ours / BART generate: median {gen_ratio:.3f} of "
          f"{', '.join(f'{r:.3f}' for r in gen_ratios)}")
    emit({"train_tokens_per_s_ratio": round(train_ratio, 4), "generate_tokens_per_s_ratio": round(gen_ratio, 4),
          "train_ratios": [round(r, 4) for r in train_ratios], "generate_ratios": [round(r, 4) for r in gen_ratios],
          "spreads": {k: round(v, 4) for k, v in spreads.items()}, "settings": vars(args), "table": rows})


if __name__ == "__main__":
    main()
