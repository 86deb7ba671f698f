"""One LightningDataModule per task. Each takes a ``provides`` block from its config (task,
shapes, classes...), which models read through interpolation and which ``setup`` checks
against the data actually loaded."""
