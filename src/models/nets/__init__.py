"""Plain ``nn.Module`` architectures. Nothing here imports Lightning, so any net can be reused
in a bare PyTorch loop (see ``benchmarks/overhead.py``)."""
