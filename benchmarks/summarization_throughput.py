"""Training and generation throughput of model=transformer against Hugging Face BART of the same
dimensions and dropout (random init, same batch, same device; CPU by default):

- training tokens/s (source + target tokens per optimizer step: forward, loss, backward, AdamW),
  ours / ``BartForConditionalGeneration``; target >= 1.2;
- generation tokens/s of beam search (summary tokens per second, every hypothesis forced to
  ``--tgt-len`` tokens so both decode the same number of steps), ours / BART's ``generate``.

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
from common import emit, print_table


def timed(fn: Callable[[], None], repeats: int, device: torch.device) -> float:
    """Median seconds of ``fn`` after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


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
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()

    from transformers import BartConfig, BartForConditionalGeneration

    from src.models.nets.decoding import beam_search
    from src.models.nets.transformer import TransformerSeq2Seq

    device = torch.device(args.device)
    pad, bos, eos = 0, 1, 2
    torch.manual_seed(0)
    ours = TransformerSeq2Seq(args.vocab, pad, bos, eos, dim=args.dim, num_heads=args.heads, encoder_layers=args.layers,
                              decoder_layers=args.layers, ff_hidden=args.ff, dropout=0.1).to(device)
    bart = BartForConditionalGeneration(BartConfig(
        vocab_size=args.vocab, d_model=args.dim, encoder_layers=args.layers, decoder_layers=args.layers,
        encoder_attention_heads=args.heads, decoder_attention_heads=args.heads, encoder_ffn_dim=args.ff,
        decoder_ffn_dim=args.ff, max_position_embeddings=max(args.src_len, args.tgt_len) + 2, dropout=0.1,
        attention_dropout=0.1, activation_dropout=0.1, activation_function="gelu", scale_embedding=True,
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

    def step_bart() -> None:
        out = bart(input_ids=source, attention_mask=source != pad, labels=target.masked_fill(target == pad, -100))
        loss = F.cross_entropy(out.logits.flatten(0, 1), target.flatten(), ignore_index=pad, label_smoothing=0.1)
        opt_bart.zero_grad(set_to_none=True)
        loss.backward()
        opt_bart.step()

    ours.train(), bart.train()
    tokens = int((source != pad).sum() + (target != pad).sum())
    train_s = {"ours": timed(step_ours, args.repeats, device), "bart": timed(step_bart, args.repeats, device)}

    ours.eval(), bart.eval()
    gen_source = source[: args.gen_batch]
    n = args.gen_len

    def gen_ours() -> None:
        beam_search(ours, gen_source, beam_size=args.beams, max_len=n, min_len=n, length_penalty=1.0)

    @torch.no_grad()
    def gen_bart() -> None:
        bart.generate(input_ids=gen_source, attention_mask=gen_source != pad, num_beams=args.beams, max_new_tokens=n,
                      min_new_tokens=n, length_penalty=1.0, do_sample=False, early_stopping=False)

    gen_s = {"ours": timed(gen_ours, args.repeats, device), "bart": timed(gen_bart, args.repeats, device)}

    rows = [{"model": name, "params": params[name], "train_step_s": round(train_s[name], 4),
             "train_tokens_per_s": round(tokens / train_s[name], 1), "generate_s": round(gen_s[name], 4),
             "generate_tokens_per_s": round(args.gen_batch * n / gen_s[name], 1)} for name in ("ours", "bart")]
    print_table(rows)
    train_ratio = train_s["bart"] / train_s["ours"]
    gen_ratio = gen_s["bart"] / gen_s["ours"]
    print(f"\ntraining tokens/s ours / BART: {train_ratio:.3f} (target >= 1.2); beam-search tokens/s ours / BART "
          f"generate: {gen_ratio:.3f}")
    emit({"train_tokens_per_s_ratio": round(train_ratio, 4), "generate_tokens_per_s_ratio": round(gen_ratio, 4),
          "settings": vars(args), "table": rows})


if __name__ == "__main__":
    main()
