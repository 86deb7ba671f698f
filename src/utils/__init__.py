"""Glue shared by the entry points (``train.py``, ``eval.py``): nothing here is task-specific."""
