"""Batch processing across machines (Ray). Imported only for ``superres batch --engine ray``."""
