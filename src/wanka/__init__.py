"""wanka: the open operating layer for ten-thousand-card AI clusters."""

__version__ = "0.1.0"
