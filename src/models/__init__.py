"""One LightningModule per task. Each receives its network injected by Hydra (``net:`` in the
model config) and its optimizer/scheduler as ``_partial_`` factories."""
