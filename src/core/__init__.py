"""The bottom layer: checkpoints, weights, module prefixes and errors. Imports nothing else of archlab."""
