"""README, docs/ and the model card stay true.

- README.md is short (<= 15 KB) and its quick start is the two commands CI runs;
- every command in README is run by a named test or checked here against the code (the CLI parser, the
  Makefile, the launch files, the node's topics, setup.py's executables); the commands in docs/ and the
  model card parse too;
- the question and answer JSON in README are what the node reads and writes;
- every docs/ page is linked from README, and every relative link (anchors included) resolves;
- the generated tables in docs/ match the code; the model card has the Hugging Face shape and its
  "How to use" code runs.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from spatial_mllm_ros.cli import build_parser
from spatial_mllm_ros.frames import FrameBuffer
from spatial_mllm_ros.nodecore import NodeConfig, QuestionService, parse_question

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = REPO / "docs"
MODEL_CARD = REPO / "spatial_mllm_ros" / "assets" / "spatialmllm-tiny" / "MODEL_CARD.md"
PAGES = [README, MODEL_CARD, *sorted(DOCS.glob("*.md"))]
MAX_README_BYTES = 15_000

# README's `spatial-mllm` commands, by subcommand: the test file that runs it, and how that file calls it.
RUN_BY = {
    ("demo",): ("test/test_e2e_sim.py", r'"spatial_mllm_ros", "demo"'),
    ("bringup",): ("test/test_node_sim.py", r'"spatial_mllm_ros", "bringup"'),
    ("annotate",): ("test/test_reward_annotate.py", r'"spatial_mllm_ros", "annotate"'),
    ("reward-eval",): ("test/test_reward_annotate.py", r'"spatial_mllm_ros", "reward-eval"'),
    ("data", "generate"): ("test/test_multispa_sim.py", r'"data", "generate"'),
    ("data", "benchmark"): ("test/test_multispa_engine.py", r'"data", "benchmark"'),
    ("train",): ("test/test_train.py", r'"train",\s*"--config"'),  # and --recipe tiny: test_train_tiny.py
    ("evaluate",): ("test/test_evaluate.py", r'"evaluate"'),
    ("ask",): ("test/test_model_runtime.py", r'\["ask"'),
    ("sim", "record"): ("test/test_sim_recorder.py", r'"sim",\s*"record"'),
}
COMMAND_STARTS = ("spatial-mllm ", "make ", "ros2 ", "scripts/")
INTERFACES = REPO / "spatial_mllm_interfaces"
CHECKOUT_IN_WORKSPACE = "src/spatial_mllm_ros"  # where the docs' colcon commands expect this repository


# ---- reading the pages -------------------------------------------------------------------------------
def fenced_blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", text, re.S | re.M)


def shell_commands(block: str) -> list[str]:
    """The commands of a bash block: continuation lines joined, comments and blank lines dropped."""
    joined = re.sub(r"\\\n\s*", " ", block)
    commands = []
    for line in joined.splitlines():
        words = shlex.split(line, comments=True)
        if words:
            commands.append(shlex.join(words))
    return commands


def readme_commands() -> list[str]:
    """Every command README shows: its bash blocks, and inline code that starts like a command."""
    text = README.read_text()
    commands = [c for block in fenced_blocks(text, "bash") for c in shell_commands(block)]
    prose = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    commands += [span for span in re.findall(r"`([^`\n]+)`", prose) if span.startswith(COMMAND_STARTS)]
    return commands


def page_commands(page: Path) -> list[str]:
    return [c for block in fenced_blocks(page.read_text(), "bash") for c in shell_commands(block)]


# ---- checking one command against the code ----------------------------------------------------------
def cli_path(words: list[str]) -> tuple[str, ...]:
    """The subcommand words at the start of a `spatial-mllm` argument list (e.g. ("data", "generate"))."""
    parser, path = build_parser(), []
    for word in words:
        subs = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
        if not subs or word not in subs[0].choices:
            break
        parser = subs[0].choices[word]
        path.append(word)
    return tuple(path)


def check_cli(words: list[str]) -> None:
    path = cli_path(words)
    assert path, f"spatial-mllm {shlex.join(words)}: no such command"
    if len(path) == len(words):  # a command's name in prose: it exists
        return
    try:
        build_parser().parse_args(words)
    except SystemExit as exc:
        assert exc.code == 0, f"spatial-mllm {shlex.join(words)}: the CLI parser refuses it"


def node_endpoints() -> dict[str, str]:
    """The spatial node's topics, services and action as created in ros/: name -> message type."""
    ros = REPO / "spatial_mllm_ros" / "ros"
    source = (ros / "spatial_node.py").read_text()
    made = re.findall(r'create_(?:publisher|subscription|service)\(\s*(\w+),\s*"([^"]+)"', source)
    made += re.findall(r'ActionServer\(\s*\w+,\s*(\w+),\s*"([^"]+)"', (ros / "ask_action.py").read_text())
    return {name: kind for kind, name in made}


def node_name() -> str:
    source = (REPO / "spatial_mllm_ros" / "ros" / "spatial_node.py").read_text()
    return re.search(r'^NODE_NAME = "(\w+)"', source, re.M).group(1)


def endpoint(full_name: str) -> str:
    """/spatial_mllm_node/question -> ~/question; /diagnostics stays."""
    prefix = f"/{node_name()}/"
    return "~/" + full_name[len(prefix):] if full_name.startswith(prefix) else full_name


def check_ros2(words: list[str]) -> None:
    verb = words[:2]
    endpoints = node_endpoints()
    if len(words) == 1 and words[0] in ("launch", "run", "topic", "service", "action"):  # a verb in prose
        return
    if verb == ["launch", "spatial_mllm_ros"]:
        launch = (REPO / "launch" / words[2]).read_text()
        for arg in words[3:]:
            name = arg.split(":=", 1)[0]
            assert f'DeclareLaunchArgument("{name}"' in launch, f"{words[2]} declares no argument {name}"
    elif verb == ["run", "spatial_mllm_ros"]:
        assert f'"{words[2]} = ' in (REPO / "setup.py").read_text(), f"setup.py installs no {words[2]}"
    elif verb == ["topic", "pub"]:
        args = [w for w in words[2:] if not w.startswith("--")]
        topic, msg_type, payload = args
        assert endpoints.get(endpoint(topic)) == msg_type.rsplit("/", 1)[-1], f"the node has no {topic}"
        parse_question(yaml.safe_load(payload)["data"], NodeConfig(), "q")
    elif verb == ["topic", "echo"]:
        assert endpoint(words[2]) in endpoints, f"the node has no {words[2]}"
    elif verb == ["service", "call"]:
        assert endpoints.get(endpoint(words[2])) == words[3].rsplit("/", 1)[-1], f"no service {words[2]}"
    elif verb == ["action", "send_goal"]:
        name, action_type, _ = [w for w in words[2:] if not w.startswith("--")]
        assert endpoints.get(endpoint(name)) == action_type.rsplit("/", 1)[-1], f"no action {name}"
    elif verb == ["bag", "record"]:  # a robot's own topics: what `data generate --source rosbag` needs
        assert {"/tf", "/tf_static"} <= set(words) and any(w.endswith("camera_info") for w in words), words
    elif verb == ["interface", "show"]:
        package, kind, name = words[2].split("/")
        assert package == INTERFACES.name and (INTERFACES / kind / f"{name}.{kind}").is_file(), words[2]
    else:
        pytest.fail(f"ros2 {shlex.join(words)}: test_readme.py does not know how to check this command")


def check_command(command: str) -> None:
    """Check one command against the code; a command of a kind not known here fails the test."""
    words = shlex.split(command)
    tool, rest = words[0], words[1:]
    if tool == "spatial-mllm":
        check_cli(rest)
    elif tool == "make":
        makefile = (REPO / "Makefile").read_text()
        for target in rest:
            assert re.search(rf"^{re.escape(target)}:", makefile, re.M), f"Makefile has no target {target}"
    elif tool == "ros2":
        check_ros2(rest)
    elif tool.startswith("scripts/"):
        assert os.access(REPO / tool, os.X_OK), f"{tool} is not an executable script"
    elif tool in ("python", "torchrun", "accelerate") and "-m" in words:
        module = words[words.index("-m") + 1]
        if module.startswith("spatial_mllm_ros"):
            assert (REPO / module.replace(".", "/") / "__main__.py").is_file(), f"{module} cannot run as -m"
            check_cli(words[words.index("-m") + 2:])
    elif tool == "git":
        pass  # reproducing a recorded run
    elif tool == "colcon":  # in a workspace holding this repository as CHECKOUT_IN_WORKSPACE
        for path in words[words.index("--base-paths") + 1:]:
            if path != "src":  # the workspace's sources; the others are packages of this repository
                package = REPO / Path(path).relative_to(CHECKOUT_IN_WORKSPACE)
                assert (package / "package.xml").is_file(), f"colcon: no package at {path}"
    else:
        pytest.fail(f"{command!r}: test_readme.py does not know how to check this command")


# ---- README -----------------------------------------------------------------------------------------
def test_readme_is_short() -> None:
    size = README.stat().st_size
    assert size <= MAX_README_BYTES, f"README.md is {size} bytes; move reference material to docs/"


def test_quick_start_is_two_commands_and_ci_runs_the_second() -> None:
    quick = README.read_text().split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = [re.sub(r"\s+", " ", c) for c in shell_commands(fenced_blocks(quick, "bash")[0])]
    assert commands == ["make demo", "make test"]
    assert re.search(r"^make test$", (REPO / ".ci" / "run").read_text(), re.M)
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^demo: setup\n\t@\$\(VENV\)/bin/spatial-mllm demo$", makefile, re.M)
    assert re.search(r"^test: setup\n\t@scripts/run-tests.sh$", makefile, re.M)


def test_every_readme_command_is_run_by_a_test_or_checked() -> None:
    commands = readme_commands()
    assert len(commands) >= 10, commands
    for command in commands:
        check_command(command)
        words = shlex.split(command)
        if words[0] == "spatial-mllm":
            path = cli_path(words[1:])
            assert path in RUN_BY, f"{command!r}: name the test that runs `spatial-mllm {' '.join(path)}`"
            test_file, call = RUN_BY[path]
            assert re.search(call, (REPO / test_file).read_text()), f"{test_file} no longer runs {path}"


@pytest.mark.parametrize("page", [p for p in PAGES if p != README], ids=lambda p: p.name)
def test_commands_in_docs_and_the_model_card_parse(page: Path) -> None:
    for command in page_commands(page):
        check_command(command)


def test_readme_question_and_answer_json_are_the_nodes() -> None:
    question, answer = (json.loads(block) for block in fenced_blocks(README.read_text(), "json"))
    request = parse_question(json.dumps(question), NodeConfig(), "q0")
    assert (request.id, request.frames, request.span_s, request.camera) == (
        question["id"], question["frames"], question["span_s"], question["camera"])
    service = QuestionService(NodeConfig(), FrameBuffer(), lambda a, frames: None, lambda: 0)
    written = service.answer(parse_question(answer["question"], NodeConfig(), answer["id"]))
    assert list(answer) == list(written), "README's answer JSON is not the node's field list"


def test_every_endpoint_of_the_node_is_in_the_readme_and_node_page() -> None:
    readme, node_page = README.read_text(), (DOCS / "node.md").read_text()
    for name in node_endpoints():
        assert f"`{name}`" in readme, f"README's contract table lacks {name}"
        assert f"`{name}`" in node_page, f"docs/node.md lacks {name}"
    simulation = (DOCS / "simulation.md").read_text()
    for name in ("`/episode`", "`/gripper/cmd_vel`", "`/clock` (live node)"):
        assert name in simulation, name


# ---- docs/ and links --------------------------------------------------------------------------------
def slugs(page: Path) -> set[str]:
    """GitHub's anchors for a page's headings."""
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.S | re.M)
    seen: dict[str, int] = {}
    out = set()
    for heading in re.findall(r"^#{1,6} (.+)$", text, re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def relative_links(page: Path) -> list[str]:
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.S | re.M)
    text = re.sub(r"`[^`\n]*`", "", text)
    return [t for t in re.findall(r"\]\(([^)\s]+)\)", text) if not re.match(r"[a-z]+:", t)]


def test_every_docs_page_is_linked_from_readme_and_exists() -> None:
    linked = {t.split("#")[0] for t in relative_links(README) if t.startswith("docs/")}
    assert linked, "README links no docs/ page"
    for target in linked:
        assert (REPO / target).is_file(), f"README links {target}, which does not exist"
    pages = {f"docs/{p.name}" for p in DOCS.glob("*.md")}
    assert pages <= linked, f"docs/ pages README does not link: {sorted(pages - linked)}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_resolves(page: Path) -> None:
    for link in relative_links(page):
        path, _, anchor = link.partition("#")
        target = (page.parent / path).resolve() if path else page
        assert target.exists(), f"{page.name}: {link} does not exist"
        if anchor and target.suffix == ".md":
            assert anchor in slugs(target), f"{page.name}: {link}: no heading #{anchor} in {target.name}"


def test_generated_tables_are_current() -> None:
    res = subprocess.run([sys.executable, "scripts/readme_tables.py", "--check"], cwd=REPO,
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


# ---- the model card ---------------------------------------------------------------------------------
def test_model_card_has_the_hugging_face_shape() -> None:
    text = MODEL_CARD.read_text()
    front = yaml.safe_load(text.split("---\n", 2)[1])
    assert front["license"] == "apache-2.0" and front["library_name"] == "transformers"
    assert front["pipeline_tag"] and front["tags"]
    headings = re.findall(r"^## (.+)$", text, re.M)
    assert headings == ["Model details", "Intended use", "Out-of-scope use", "Architecture", "Training data",
                        "Training procedure", "Evaluation", "Limitations and risks", "How to use"]
    evaluation = text.split("## Evaluation", 1)[1].split("\n## ", 1)[0]
    assert len(re.findall(r"^\|(?:---\|)+$", evaluation, re.M)) == 1, "the card's evaluation has one table"
    assert "shift suite" in evaluation and "evaluation.md#the-shipped-model-on-the-shift-suite" in evaluation


def test_model_card_usage_code_runs(tmp_path: Path) -> None:
    from PIL import Image

    code = fenced_blocks(MODEL_CARD.read_text(), "python")[0]
    rng = np.random.default_rng(0)
    for name in ("before.png", "after.png"):
        Image.fromarray(rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)).save(tmp_path / name)
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                         timeout=300, env={**os.environ, "OMP_NUM_THREADS": "2"})
    assert res.returncode == 0, res.stderr[-2000:]
    value, confidence = res.stdout.split()[-2:]
    assert value in ("yes", "no") and 0.5 <= float(confidence) <= 1.0
