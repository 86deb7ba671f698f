"""Model compression applied to a trained checkpoint (``compress.py``): pruning, structured
pruning, int8 quantization and ONNX export, each a recipe in ``configs/compression/``."""
