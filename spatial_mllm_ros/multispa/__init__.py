"""MultiSPA: the conversation format, answer conventions and the multi-frame spatial data engine."""

__all__ = ["format"]
