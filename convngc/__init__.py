"""convngc: everything shared by both backends (data, metrics, training loop, checkpoints, CLI)."""
__version__ = "0.1.0"
