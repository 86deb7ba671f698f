"""Export through ``torch.export`` to a ``.pt2`` program and to ONNX, and an ``nn.Module`` that
runs the ONNX file with onnxruntime, so the test loop and the latency probe treat it as any net."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from src.core.errors import ConfigError, describe


def export(net: nn.Module, inputs: Sequence[torch.Tensor], out_dir: Path, opset: int = 18) -> tuple[Path, Path]:
    """``net.pt2`` (``torch.export``, every input dimension dynamic) and ``net.onnx`` from it."""
    net = net.eval()
    dims = tuple({d: torch.export.Dim.AUTO for d in range(t.dim())} for t in inputs)
    try:
        program = torch.export.export(net, tuple(inputs), dynamic_shapes=dims)
    except Exception as e:  # torch.export reports untraceable code with many exception types
        raise ConfigError(f"torch.export cannot trace {type(net).__name__} ({describe(e, 160)})") from e
    pt2, onnx_path = out_dir / "net.pt2", out_dir / "net.onnx"
    torch.export.save(program, pt2)
    torch.onnx.export(program, f=str(onnx_path), opset_version=opset, external_data=False, verbose=False)
    return pt2, onnx_path


class OnnxNet(nn.Module):
    """An ONNX file run by onnxruntime on CPU, called like the net it was exported from."""

    def __init__(self, path: Path, threads: int = 0) -> None:
        super().__init__()
        self.path = Path(path)
        self.set_threads(threads)

    def set_threads(self, threads: int) -> None:
        """Threads of onnxruntime's intra-op pool (0: all cores)."""
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime's errors have no common base class
            raise ConfigError(f"onnxruntime cannot load {self.path} ({describe(e, 160)})") from e
        self.input_names = [i.name for i in self.session.get_inputs()]

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        feeds: dict[str, Any] = {n: t.detach().cpu().numpy() for n, t in zip(self.input_names, inputs)}
        return torch.from_numpy(self.session.run(None, feeds)[0])

    def nonzero_params(self) -> int:
        import onnx
        from onnx import numpy_helper

        model = onnx.load(str(self.path))
        return sum(int(np.count_nonzero(numpy_helper.to_array(t))) for t in model.graph.initializer
                   if t.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16))
