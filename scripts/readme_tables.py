"""Regenerate the docs' generated tables (parameters, CLI, sim profiles, typed interfaces), or check them.

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
INTERFACES = ROOT / "spatial_mllm_interfaces"
# the parts of an interface file, separated by `---` lines
INTERFACE_PARTS = {"msg": ("",), "srv": ("request", "response"), "action": ("goal", "result", "feedback")}


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


def interface_files() -> list[Path]:
    """List the .msg, .srv and .action files of spatial_mllm_interfaces, in that order."""
    return [p for kind in INTERFACE_PARTS for p in sorted((INTERFACES / kind).glob(f"*.{kind}"))]


def interface_parts(path: Path) -> list[list[tuple[str, str, str]]]:
    """(type, name, comment) of every field and constant of an interface file, per part."""
    parts: list[list[tuple[str, str, str]]] = [[]]
    for line in path.read_text().splitlines():
        code, _, comment = line.partition("#")
        words = code.split()
        if words == ["---"]:
            parts.append([])
        elif words:  # blank and comment-only lines describe the file, not a field
            parts[-1].append((words[0], words[1].replace("=", " = "), comment.strip().replace("|", "\\|")))
    return parts


def interface_tables() -> str:
    """One table per interface file: every field and constant with its type, comment and part."""
    blocks = []
    for path in interface_files():
        kind = path.parent.name
        parted = len(INTERFACE_PARTS[kind]) > 1
        lines = [f"`{INTERFACES.name}/{kind}/{path.stem}`", "",
                 "| Part | Field | Type | What |" if parted else "| Field | Type | What |",
                 "|---|---|---|---|" if parted else "|---|---|---|"]
        for label, part in zip(INTERFACE_PARTS[kind], interface_parts(path)):
            lines += [f"| {label + ' | ' if parted else ''}`{name}` | {type_} | {what} |"
                      for type_, name, what in part]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def interfaces_summary() -> str:
    """One row per interface file with its field names, part by part (README)."""
    rows = ["| Interface | Fields |", "|---|---|"]
    for path in interface_files():
        kind = path.parent.name
        cells = []
        for label, part in zip(INTERFACE_PARTS[kind], interface_parts(path)):
            names = " ".join(f"`{name}`" for _, name, _ in part if "=" not in name)
            cells.append(f"{label}: {names}" if label else names)
        rows.append(f"| `{kind}/{path.stem}` | {'; '.join(cells)} |")
    return "\n".join(rows)


# page (relative to the repository root) -> the generated tables it holds
PAGES: dict[str, dict[str, Callable[[], str]]] = {
    "README.md": {"interfaces": interfaces_summary},
    "docs/node.md": {
        "node-parameters": lambda: markdown_table(NodeConfig),
        "node-interfaces": interface_tables,
    },
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
