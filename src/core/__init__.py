"""The bottom layer: checkpoints, weights, module prefixes, the output-layer rule and errors. Imports nothing else of archlab."""
