"""Serving the MNIST CNN over HTTP: serve.py with and without dynamic batching, beside the net called
in-process, under the same bounded load on localhost.

Each server gets ``--requests`` POST /predict at each concurrency (an asyncio client, keep-alive
connections; every request a real MNIST test image, base64 PNG). The in-process row calls the
predictor's forward pass on batches of ``concurrency`` encoded images: the ceiling without HTTP.
Target: batching >= 3x the requests/s of batch-size-1 serving at concurrency 32.

    DATA_DIR=/path/to/data python benchmarks/serving.py [--ckpt <MNIST CNN .ckpt>] [--requests 2000]

Without ``--ckpt`` it trains the CNN briefly first (``model=cnn data=mnist``, 200 batches): serving
speed does not depend on how well the net is trained.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import torch
from common import ROOT, data_dir, emit, print_table, train_run

CONCURRENCY = (1, 8, 32)


async def _client(host: str, port: int, bodies: list[bytes], latencies: list[float], errors: list[str]) -> None:
    """One keep-alive connection sending ``bodies`` one after another."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        for body in bodies:
            head = (f"POST /predict HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n").encode()
            start = time.perf_counter()
            writer.write(head + body)
            await writer.drain()
            status = int((await reader.readline()).split()[1])
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            answer = await reader.readexactly(length)
            latencies.append(time.perf_counter() - start)
            if status != 200:
                errors.append(f"{status} {answer[:100]!r}")
    finally:
        writer.close()


def load(port: int, bodies: list[bytes], concurrency: int) -> dict[str, Any]:
    """``bodies`` sent by ``concurrency`` connections at once: requests/s, p50/p99 ms, errors."""
    latencies: list[float] = []
    errors: list[str] = []
    shares = [bodies[i::concurrency] for i in range(concurrency)]

    async def run() -> None:
        await asyncio.gather(*(_client("127.0.0.1", port, share, latencies, errors) for share in shares))

    start = time.perf_counter()
    asyncio.run(run())
    seconds = time.perf_counter() - start
    return summary(len(bodies) / seconds, latencies, len(errors), errors[:1])


def summary(per_s: float, latencies: list[float], errors: int, first_error: list[str]) -> dict[str, Any]:
    ms = sorted(1000 * t for t in latencies)
    row = {"req_per_s": round(per_s, 1), "p50_ms": round(statistics.median(ms), 2),
           "p99_ms": round(ms[min(len(ms) - 1, int(0.99 * len(ms)))], 2), "errors": errors}
    if first_error:
        row["first_error"] = first_error[0]
    return row


def start_server(ckpt: Path, port: int, log: Path, overrides: list[str]) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, str(ROOT / "serve.py"), f"ckpt_path={ckpt}", f"port={port}",
                             f"paths.log_dir={log.parent}", "extras.print_config=false", *overrides], cwd=ROOT,
                            stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5):
                return proc
        except OSError:
            if proc.poll() is not None:
                sys.exit(f"serve.py exited:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
    stop_server(proc)
    sys.exit("serve.py did not answer /health within 300 s")


def stop_server(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


def in_process(ckpt: Path, pngs: list[bytes], requests: int) -> list[dict[str, Any]]:
    """The predictor's forward pass on batches of ``concurrency`` images, no HTTP."""
    from src.predictor import Predictor
    from src.session import build
    from src.utils.config import compose

    cfg = compose("predict", [f"ckpt_path={ckpt}", "extras.print_config=false"], ROOT / "logs" / "benchmarks" / "serving")
    predictor = Predictor(build(cfg, "predict"))
    items = [predictor.encode({"image": png}) for png in pngs]
    rows = []
    for c in CONCURRENCY:
        latencies = []
        start = time.perf_counter()
        for i in range(0, requests, c):
            t = time.perf_counter()
            predictor.forward([items[(i + k) % len(items)] for k in range(c)])
            latencies += [time.perf_counter() - t] * c
        rows.append({"server": "in-process", "concurrency": c,
                     **summary(requests / (time.perf_counter() - start), latencies, 0, [])})
    return rows


def test_images(n: int) -> list[bytes]:
    """The first ``n`` MNIST test images as PNG files."""
    from PIL import Image
    from torchvision.datasets import MNIST

    dataset = MNIST(data_dir(), train=False, download=True)
    out = []
    for i in range(n):
        buffer = io.BytesIO()
        Image.fromarray(dataset.data[i].numpy()).save(buffer, format="PNG")
        out.append(buffer.getvalue())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", type=Path, help="an MNIST CNN checkpoint (default: train one briefly)")
    parser.add_argument("--requests", type=int, default=2000, help="requests per server and concurrency")
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--batch-timeout", type=float, default=0.01)
    parser.add_argument("--threads", type=int, default=1, help="the inference worker's CPU threads (serve.py threads=)")
    parser.add_argument("--port", type=int, default=8711)
    args = parser.parse_args()
    log_dir = ROOT / "logs" / "benchmarks" / f"serving_{int(time.time())}"
    log_dir.mkdir(parents=True, exist_ok=True)
    ckpt = args.ckpt
    if ckpt is None:
        train_run(["model=cnn", "data=mnist", f"paths.data_dir={data_dir()}", "trainer.max_epochs=1",
                   "trainer.limit_train_batches=200", "trainer.limit_val_batches=10", "test=false"], "serving_cnn",
                  log_dir / "train")
        (ckpt,) = (log_dir / "train").rglob("last.ckpt")
    pngs = test_images(256)
    bodies = [json.dumps({"image": base64.b64encode(pngs[i % len(pngs)]).decode()}).encode()
              for i in range(args.requests)]

    torch.set_num_threads(args.threads)  # the in-process row runs with the worker's threads
    rows = in_process(ckpt, pngs, args.requests)
    servers = {"batch 1": ["max_batch_size=1", f"threads={args.threads}"],
               f"batch {args.max_batch_size}": [f"max_batch_size={args.max_batch_size}",
                                                f"batch_timeout={args.batch_timeout}", f"threads={args.threads}"]}
    for name, overrides in servers.items():
        proc = start_server(ckpt, args.port, log_dir / f"{name.replace(' ', '_')}.log", overrides)
        try:
            load(args.port, bodies[:100], 8)  # warm-up: connections, the worker's first batches
            rows += [{"server": name, "concurrency": c, **load(args.port, bodies, c)} for c in CONCURRENCY]
        finally:
            stop_server(proc)
    print_table(rows)
    by = {(r["server"], r["concurrency"]): r for r in rows}
    batched, single = by[(f"batch {args.max_batch_size}", 32)], by[("batch 1", 32)]
    emit({"benchmark": "serving", "requests": args.requests, "threads": args.threads,
          "max_batch_size": args.max_batch_size, "batch_timeout": args.batch_timeout, "rows": rows,
          "batching_speedup_c32": round(batched["req_per_s"] / single["req_per_s"], 3),
          "errors": sum(r["errors"] for r in rows), "target_batching_speedup_c32": 3.0})


if __name__ == "__main__":
    main()
