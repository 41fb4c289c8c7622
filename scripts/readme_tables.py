"""Regenerate the docs' generated tables (parameters, CLI, appearance profiles) from the code, or check them.

Each table sits between `<!-- gen:NAME -->` and `<!-- /gen:NAME -->` marker comments in the page listed in
PAGES. Run `.venv/bin/python scripts/readme_tables.py` to rewrite them; with `--check` it exits 1 when a
page is stale (test/test_readme.py runs that).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from pathlib import Path

from spatial_mllm_ros.cli import build_parser
from spatial_mllm_ros.config import markdown_table
from spatial_mllm_ros.nodecore import NodeConfig
from spatial_mllm_ros.sim.node_config import SimNodeConfig
from spatial_mllm_ros.sim.profiles import PROFILES

ROOT = Path(__file__).resolve().parents[1]


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


def profiles_table() -> str:
    """One row per named appearance profile of the simulation (`--appearance NAME`)."""
    rows = ["| Profile | What it changes |", "|---|---|"]
    rows += [f"| `{p.name}` | {p.description} |" for p in PROFILES.values()]
    return "\n".join(rows)


# page (relative to the repository root) -> the generated tables it holds
PAGES: dict[str, dict[str, Callable[[], str]]] = {
    "docs/node.md": {"node-parameters": lambda: markdown_table(NodeConfig)},
    "docs/simulation.md": {
        "shift-profiles": profiles_table,
        "sim-parameters": lambda: markdown_table(SimNodeConfig),
    },
    "docs/cli.md": {"cli": cli_table},
}


def render(text: str, sections: dict[str, Callable[[], str]], page: str = "page") -> str:
    """Replace the body of every `<!-- gen:NAME -->...<!-- /gen:NAME -->` block named in `sections`."""
    for name, make in sections.items():
        pattern = re.compile(rf"(<!-- gen:{name} -->\n).*?(<!-- /gen:{name} -->)", re.S)
        if len(pattern.findall(text)) != 1:
            raise SystemExit(f"{page} needs exactly one <!-- gen:{name} --> ... <!-- /gen:{name} --> block")
        body = make() + "\n"
        text = pattern.sub(lambda m, body=body: m.group(1) + body + m.group(2), text)
    return text


def stale_pages(root: Path = ROOT) -> list[str]:
    """Return the pages whose generated tables differ from the code (none: all current)."""
    return [page for page, sections in PAGES.items()
            if render((root / page).read_text(), sections, page) != (root / page).read_text()]


def main() -> int:
    """Rewrite or check every page's generated tables."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--check", action="store_true", help="exit 1 if a page is stale, change nothing")
    args = ap.parse_args()
    if args.check:
        stale = stale_pages()
        if stale:
            pages = ", ".join(stale)
            print(f"stale generated tables in {pages}: run scripts/readme_tables.py", file=sys.stderr)
            return 1
        return 0
    for page, sections in PAGES.items():
        path = ROOT / page
        path.write_text(render(path.read_text(), sections, page))
    return 0


if __name__ == "__main__":
    sys.exit(main())
