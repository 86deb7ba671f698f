"""Serve a trained model over HTTP: ``python serve.py ckpt_path=<run>/checkpoints/<file>.ckpt``.

set-up (src/session.py and src/predictor.py, as predict.py) -> a LitServe server whose request
schema is the checkpoint's task's: ``POST /predict`` with ``{"image": <base64 file>}``
(classification), ``{"article": text}`` (summarization) or ``{"image": ..., "question": text}``
(vqa); ``GET /health``; the OpenAPI page at ``/docs``. Requests that arrive together share one
forward pass (``max_batch_size``, ``batch_timeout``). A malformed request is a 422 naming its
problem, checked before it reaches the model, so it never fails the requests batched beside it.
"""

import os
import signal
import sys
from pathlib import Path

os.environ.setdefault("PROJECT_ROOT", str(Path(__file__).resolve().parent))

import hydra
import litserve as ls
from fastapi.exceptions import RequestValidationError
from omegaconf import DictConfig, OmegaConf

from src.core.errors import ConfigError
from src.predictor import Predictor
from src.serving import APIS, one_line_error
from src.session import build
from src.utils.config import refuse_removed_options, register_resolvers
from src.utils.pylogger import RankedLogger
from src.utils.run import task_wrapper

register_resolvers()
log = RankedLogger(__name__)


def make_server(cfg: DictConfig) -> ls.LitServer:
    """The LitServe server for ``cfg.ckpt_path``; every bad option fails here, in this process."""
    session = build(cfg, "predict")
    predictor = Predictor(session, 1, cfg.top_k, OmegaConf.to_container(cfg.decoding))
    if predictor.kind not in APIS:
        raise ConfigError(f"serve.py serves classification, summarization and vqa checkpoints; this one is a "
                          f"{cfg.task.name} checkpoint: sample it with predict.py num_samples=N")
    if not (isinstance(cfg.max_batch_size, int) and cfg.max_batch_size >= 1 and cfg.batch_timeout >= 0):
        raise ConfigError(f"max_batch_size={cfg.max_batch_size} must be >= 1 and batch_timeout={cfg.batch_timeout} >= 0")
    if cfg.threads is not None and not (isinstance(cfg.threads, int) and cfg.threads >= 1):
        raise ConfigError(f"threads={cfg.threads} must be a positive whole number of CPU threads, or null")
    api = APIS[predictor.kind](predictor, cfg.max_batch_size, float(cfg.batch_timeout), cfg.threads)
    accelerator = "cuda" if predictor.device.type == "cuda" else "cpu"
    # fast_queue: answers travel back over ZeroMQ rather than through a multiprocessing manager
    server = ls.LitServer(api, accelerator=accelerator, devices=1, workers_per_device=1, timeout=cfg.timeout,
                          fast_queue=True, model_metadata={"ckpt_path": str(cfg.ckpt_path), "task": cfg.task.name})
    server.app.add_exception_handler(RequestValidationError, one_line_error)
    return server


@task_wrapper
def serve(cfg: DictConfig) -> None:
    """Build the server and run it until Ctrl-C or SIGTERM, which both stop it gracefully (its
    workers too)."""
    server = make_server(cfg)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    log.info(f"Serving {cfg.ckpt_path or cfg.model._target_} on http://{cfg.host}:{cfg.port}/predict "
             f"(OpenAPI: http://{cfg.host}:{cfg.port}/docs)")
    server.run(host=cfg.host, port=cfg.port, num_api_servers=1, generate_client_file=False)


@hydra.main(version_base="1.3", config_path="configs", config_name="serve.yaml")
def main(cfg: DictConfig) -> None:
    serve(cfg)


if __name__ == "__main__":
    refuse_removed_options(sys.argv[1:])
    main()
