"""archlab: a Lightning + Hydra research template for neural network architectures."""
