"""serve.py on a free localhost port, queried over HTTP: the answers predict.py gives, a malformed
request a 422 with one message while the server keeps serving, and a clean shutdown."""

import base64
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from predict import predict
from src.utils.config import compose
from tests.conftest import QUIET, ROOT, free_port
from tests.test_predict import save_png

STARTUP_S = 180  # the inference worker imports torch and unpickles the model


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def post(url: str, body: Any, timeout: float = 60) -> tuple[int, dict[str, Any]]:
    """POST ``body`` as JSON (bytes as they are); the status and the decoded answer."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@contextmanager
def serving(ckpt: Path, log_dir: Path, *overrides: str) -> Iterator[str]:
    """serve.py for ``ckpt`` on a free port of 127.0.0.1 until the block ends; then SIGTERM (what a
    process manager sends), and every process it started must be gone within 30 s."""
    port = free_port()
    log = open(log_dir / "serve.log", "w")
    proc = subprocess.Popen([sys.executable, "serve.py", f"ckpt_path={ckpt}", f"port={port}", f"paths.log_dir={log_dir}",
                             *QUIET[:2], *overrides], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "PROJECT_ROOT": str(ROOT)}, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_S
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=5) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError):
                pass
            assert proc.poll() is None, (log_dir / "serve.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "serve.py did not answer /health in time"
            time.sleep(0.5)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
            deadline = time.monotonic() + 30
            while group_alive(proc.pid):  # no worker left behind
                assert time.monotonic() < deadline, "serve.py left processes running"
                time.sleep(0.5)
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            log.close()


def predicted(ckpt: Path, inputs: Path, out: Path, *overrides: str) -> list[dict[str, Any]]:
    rows, _ = predict(compose("predict", [*QUIET[:2], f"ckpt_path={ckpt}", f"inputs={inputs}", *overrides], out))
    return [{k: v for k, v in row.items() if k != "input"} for row in rows]


def same(answer: Any, expected: Any) -> bool:
    """Equal, probabilities up to float noise (a batch of another size sums in another order)."""
    if isinstance(expected, dict):
        return isinstance(answer, dict) and answer.keys() == expected.keys() and all(same(answer[k], v) for k, v in expected.items())
    return answer == pytest.approx(expected, abs=1e-4) if isinstance(expected, float) else answer == expected


def check_server(url: str, requests: list[dict[str, Any]], expected: list[dict[str, Any]], bad: list[Any]) -> None:
    """Answers equal ``expected``, one by one and 8 at a time (batched); each malformed request
    is a 422 with one message, and the next request is still answered."""
    for request, answer in zip(requests[:2], expected):
        status, got = post(f"{url}/predict", request)
        assert status == 200 and same(got, answer), (got, answer)
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda r: post(f"{url}/predict", r), requests))
    assert all(status == 200 and same(got, e) for (status, got), e in zip(answers, expected)), answers
    for body in bad:
        status, answer = post(f"{url}/predict", body)
        assert status == 422 and isinstance(answer["detail"], str) and "\n" not in answer["detail"], answer
        status, got = post(f"{url}/predict", requests[0])
        assert status == 200 and same(got, expected[0])
    with urllib.request.urlopen(f"{url}/openapi.json", timeout=10) as response:
        assert "/predict" in json.loads(response.read())["paths"]


@pytest.mark.slow  # a server start (the worker imports torch and unpickles the model) and ~40 requests
def test_classifier_server(trained, tmp_path: Path) -> None:
    ckpt, objects = trained("classification")
    folder = tmp_path / "photos"
    folder.mkdir()
    files = [save_png(objects["datamodule"].data_test.images[i], folder / f"{i}.png") for i in range(8)]
    expected = predicted(ckpt, folder, tmp_path / "predict")
    requests = [{"image": base64.b64encode(f.read_bytes()).decode()} for f in files]
    bad = [b"{not json", {"picture": requests[0]["image"]}, {"image": "bm90IGFuIGltYWdl"}, {"image": "%%%"}]
    with serving(ckpt, tmp_path, "max_batch_size=4") as url:
        check_server(url, requests, expected, bad)


@pytest.mark.slow  # a server start on top of the summarizer's training
def test_summarizer_server(trained, tmp_path: Path) -> None:
    ckpt, objects = trained("summarization")
    articles = objects["datamodule"].data["test"].articles
    (tmp_path / "articles.txt").write_text("\n".join(articles) + "\n")
    # one article per forward pass on both sides: beam search on a padded batch may break ties otherwise
    expected = predicted(ckpt, tmp_path / "articles.txt", tmp_path / "predict", "batch_size=1")
    with serving(ckpt, tmp_path, "max_batch_size=1") as url:
        check_server(url, [{"article": a} for a in articles], expected, [{"article": "   "}, {"text": "x"}])


@pytest.mark.parametrize(("task", "overrides", "message"), [
    ("generation", [], "serve.py serves classification, summarization and vqa checkpoints"),
    ("classification", ["threads=0"], "threads=0 must be a positive whole number of CPU threads"),
    ("classification", ["max_batch_size=0"], "max_batch_size=0 must be >= 1"),
])
def test_bad_server_settings_are_one_line(task: str, overrides: list[str], message: str, trained, tmp_path: Path) -> None:
    """Checked in serve.py's own process, before any worker or port."""
    from serve import make_server
    from src.core.errors import ConfigError

    ckpt, _ = trained(task)
    with pytest.raises(ConfigError, match=re.escape(message)):
        make_server(compose("serve", [*QUIET[:2], f"ckpt_path={ckpt}", *overrides], tmp_path / "serve"))
