"""The on-robot spatial model runtime: load, prompt, encode frames, answer, cache, export."""

__all__ = [
    "config",
    "errors",
    "export",
    "factory",
    "language",
    "loading",
    "preprocess",
    "prompts",
    "runtime",
    "vision",
]
