"""Regenerate README.md's generated tables (parameters, CLI) from the code, or check they are current.

Run `.venv/bin/python scripts/readme_tables.py` to rewrite the marked sections; with `--check` it exits 1
when README.md is stale (the test suite runs that).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from spatial_mllm_ros.cli import build_parser
from spatial_mllm_ros.config import markdown_table
from spatial_mllm_ros.nodecore import NodeConfig
from spatial_mllm_ros.sim.node_config import SimNodeConfig

README = Path(__file__).resolve().parents[1] / "README.md"


def cli_table() -> str:
    """One row per `spatial-mllm` subcommand (and sub-subcommand) with its help text."""
    rows = ["| Command | What it does |", "|---|---|"]
    sub = next(a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction")
    helps = {c.dest: c.help for c in sub._choices_actions}
    for name, parser in sub.choices.items():
        nested = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
        if nested:
            inner = {c.dest: c.help for c in nested[0]._choices_actions}
            rows += [f"| `spatial-mllm {name} {n}` | {inner.get(n) or ''} |" for n in nested[0].choices]
        else:
            rows.append(f"| `spatial-mllm {name}` | {helps.get(name) or ''} |")
    return "\n".join(rows)


SECTIONS = {
    "node-parameters": lambda: markdown_table(NodeConfig),
    "sim-parameters": lambda: markdown_table(SimNodeConfig),
    "cli": cli_table,
}


def render(text: str) -> str:
    """Replace the body of every `<!-- gen:NAME -->...<!-- /gen:NAME -->` block."""
    for name, make in SECTIONS.items():
        pattern = re.compile(rf"(<!-- gen:{name} -->\n).*?(\n<!-- /gen:{name} -->)", re.S)
        if not pattern.search(text):
            raise SystemExit(f"README.md has no <!-- gen:{name} --> block")
        body = make()
        text = pattern.sub(lambda m, body=body: m.group(1) + body + m.group(2), text)
    return text


def main() -> int:
    """Rewrite or check README.md."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    old = README.read_text()
    new = render(old)
    if args.check:
        if new != old:
            print("README.md tables are stale: run scripts/readme_tables.py", file=sys.stderr)
            return 1
        return 0
    README.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
