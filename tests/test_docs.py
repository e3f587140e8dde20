"""The documentation runs: every ```python block of README.md and docs/*.md is executed, and
every `learnscope COMMAND` in a ```bash block names a command that exists.

How the Python blocks run:

- The blocks of one file run **in the order they appear, in one shared namespace and one
  temporary working directory** (a fresh one per file). A block may use what an earlier block of
  the same file defined or wrote (docs/store.md makes a store first and reads it afterwards),
  never anything from another file, so each file reads as one session a user could type in.
- Each block is its own test, with an id naming the file, the block's number in it and its line
  (`README.md-2-line52`). Selecting one block (`-k`) runs the earlier blocks of its file first.
  When a block fails, the later blocks of its file fail too, naming the block they build on.
- A block right after `<!-- docs-test: skip (REASON) -->` is not run and is reported skipped
  with REASON. Only for what cannot exist here (downloaded data sets, a GPU, torchrun, a Ray
  cluster); a later block needing what a skipped block defines must be marked as well.
- torch runs with one thread (`torch.set_num_threads(1)`, `OMP_NUM_THREADS=1` for any
  subprocess), and torch, NumPy and Python's RNGs are seeded with 0 at the start of each file.
  Tracebacks point at the markdown file and line of the failing statement.

Bash blocks are not run (the CLI has its own tests), but every command they give to
`learnscope` (or `python -m learnscope.cli`, e.g. under torchrun) must exist, as must a
`plot` figure and the preset of `run` / `sweep`; and every relative link in the docs must point
at a file of the repository.
"""

from __future__ import annotations

import linecache
import math
import os
import random
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import typer

import learnscope as ls
from learnscope import cli
from learnscope.experiments import presets

ROOT = Path(__file__).resolve().parents[1]
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

_FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>[\w+-]*)\s*$")
_DIRECTIVE = re.compile(r"^\s*<!--\s*docs-test:(?P<body>.*?)-->\s*$")
_SKIP = re.compile(r"^\s*skip\s*\((?P<reason>.+)\)\s*$")


@dataclass(frozen=True)
class Block:
    """One fenced code block of a markdown file."""

    path: Path
    index: int  # among the file's blocks of this language, from 0
    line: int  # line of the first code line (1-based)
    lang: str
    code: str  # dedented to the fence's indentation
    skip: str | None  # reason, from a `docs-test: skip (...)` comment right before the fence

    @property
    def name(self) -> str:
        return _shown(self.path)

    @property
    def id(self) -> str:
        return f"{self.name}-{self.index}-line{self.line}"


def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if ROOT in path.parents else path.name


def _directive_before(lines: list[str], fence: int, where: str) -> str | None:
    """The skip reason of a `docs-test` comment on the last non-blank line before the fence."""
    before = fence - 1
    while before >= 0 and not lines[before].strip():
        before -= 1
    match = _DIRECTIVE.match(lines[before]) if before >= 0 else None
    if match is None:
        return None
    skip = _SKIP.match(match["body"])
    if skip is None:
        raise ValueError(f"{where}: unknown docs-test directive {lines[before].strip()!r}; "
                         "the one known is <!-- docs-test: skip (REASON) -->")
    return skip["reason"].strip()


def fenced_blocks(path: Path) -> list[Block]:
    """Every fenced block of a markdown file (fences may be indented, e.g. inside a list)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    counts: dict[str, int] = {}
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        indent, lang = opening["indent"], opening["lang"]
        end = i + 1
        while end < len(lines) and lines[end].strip() != "```":
            end += 1
        if end == len(lines):
            raise ValueError(f"{_shown(path)}:{i + 1}: a ``` fence that is never closed")
        body = [line[len(indent):] if line.startswith(indent) else line.lstrip()
                for line in lines[i + 1:end]]
        where = f"{_shown(path)}:{i + 1}"
        skip = _directive_before(lines, i, where)
        index = counts.get(lang, 0)
        counts[lang] = index + 1
        blocks.append(Block(path, index, i + 2, lang, "\n".join(body) + "\n", skip))
        i = end + 1
    return blocks


ALL_BLOCKS = [block for path in DOC_FILES for block in fenced_blocks(path)]
PYTHON_BLOCKS = [block for block in ALL_BLOCKS if block.lang == "python"]
BASH_BLOCKS = [block for block in ALL_BLOCKS if block.lang == "bash"]


# ---------------------------------------------------------------------------------------------
# Python blocks


class FileSession:
    """The blocks of one markdown file, run in order in one namespace and working folder."""

    def __init__(self, path: Path, workdir: Path) -> None:
        self.path, self.workdir = path, workdir
        self.blocks = [b for b in PYTHON_BLOCKS if b.path == path]
        self.namespace: dict = {"__name__": "__docs__"}
        self.done = 0  # blocks [0, done) have been run (or skipped)
        self.failed: Block | None = None
        random.seed(0)
        np.random.seed(0)
        torch.manual_seed(0)

    def run_through(self, block: Block) -> None:
        """Run the blocks before `block` that have not run yet, then `block` itself."""
        for earlier in self.blocks[self.done:block.index]:
            if self.failed is None and earlier.skip is None:
                self._run(earlier)
            self.done = earlier.index + 1
        if self.failed is not None:
            pytest.fail(f"{block.id} builds on {self.failed.id}, which failed", pytrace=False)
        self.done = block.index + 1
        self._run(block)

    def _run(self, block: Block) -> None:
        # padded so that line numbers in tracebacks are the markdown file's
        source = "\n" * (block.line - 1) + block.code
        filename = str(block.path)
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        cwd, threads = Path.cwd(), torch.get_num_threads()
        os.chdir(self.workdir)
        torch.set_num_threads(1)
        try:
            exec(compile(source, filename, "exec"), self.namespace)  # noqa: S102 - the docs' code
        except BaseException:
            self.failed = block
            raise
        finally:
            torch.set_num_threads(threads)
            os.chdir(cwd)
            linecache.cache.pop(filename, None)


@pytest.fixture(scope="module")
def sessions(tmp_path_factory):
    """One FileSession per markdown file, made when its first block runs; one thread for torch."""
    made: dict[Path, FileSession] = {}

    def session(path: Path) -> FileSession:
        if path not in made:
            folder = tmp_path_factory.mktemp(re.sub(r"\W", "_", path.stem))
            made[path] = FileSession(path, folder)
        return made[path]

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OMP_NUM_THREADS", "1")
        patch.setenv("MKL_NUM_THREADS", "1")
        patch.setenv("LEARNSCOPE_PROGRESS", "off")
        patch.setenv("MPLBACKEND", "Agg")
        yield session
    for s in made.values():  # drop what the blocks made (open stores, models)
        s.namespace.clear()


@pytest.mark.parametrize("block", PYTHON_BLOCKS, ids=[b.id for b in PYTHON_BLOCKS])
def test_python_block_runs(block: Block, sessions) -> None:
    if block.skip is not None:
        pytest.skip(block.skip)
    sessions(block.path).run_through(block)


def test_the_readme_loop_measures_the_initial_and_the_trained_network(sessions) -> None:
    # the README's Scope loop, as it ran above: step 0 (before any update) and the last step
    # (after the last update) are measured, and the run ends at 100%
    readme = sessions(ROOT / "README.md")
    loop = next(b for b in readme.blocks if 'name="mlp-digits"' in b.code)
    if readme.done <= loop.index:
        readme.run_through(loop)
    updates = 3 * math.ceil(1437 / 64)  # 3 epochs of the 1,437 digits, batches of 64
    expected = {0, 1, 2, 4, 8, *range(0, updates + 1, 10), updates}
    with ls.store.open(readme.workdir / "runs/learnscope.db", read_only=True) as store:
        run = store.run("mlp-digits")
        assert store.measured_steps(run["id"], "patterns") == sorted(expected)
        assert (run["status"], run["total_steps"], run["progress"]) == ("finished", updates, 1.0)


def test_the_docs_have_python_blocks_and_few_are_skipped() -> None:
    # guards the extraction itself: a broken fence pattern would leave nothing to run
    assert {b.name for b in PYTHON_BLOCKS} >= {"README.md", "docs/store.md", "docs/separation.md"}
    skipped = [b.id for b in PYTHON_BLOCKS if b.skip is not None]
    assert len(skipped) <= len(PYTHON_BLOCKS) // 5, skipped


def test_fenced_blocks_reads_indented_fences_and_skip_comments(tmp_path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text("text\n\n```python\nx = 1\n```\n\n- item:\n\n  ```python\n  y = x + 1\n"
                   "  ```\n\n<!-- docs-test: skip (needs CIFAR-10 files) -->\n```python\nz = 3\n"
                   "```\n```bash\nlearnscope runs\n```\n", encoding="utf-8")
    blocks = fenced_blocks(doc)
    assert [(b.lang, b.index, b.line, b.code, b.skip) for b in blocks] == [
        ("python", 0, 4, "x = 1\n", None),
        ("python", 1, 10, "y = x + 1\n", None),
        ("python", 2, 15, "z = 3\n", "needs CIFAR-10 files"),
        ("bash", 0, 18, "learnscope runs\n", None),
    ]
    doc.write_text("<!-- docs-test: skipp (typo) -->\n```python\nx = 1\n```\n", encoding="utf-8")
    with pytest.raises(ValueError, match="unknown docs-test directive"):
        fenced_blocks(doc)


# ---------------------------------------------------------------------------------------------
# bash blocks: the commands they name exist


def _cli_commands() -> dict[str, set[str]]:
    """Command -> its subcommands (for groups such as `plot`), from the Typer app itself."""
    group = typer.main.get_command(cli.app)
    return {name: set(getattr(command, "commands", {}) or ()) for name, command in
            group.commands.items()}


COMMANDS = _cli_commands()
# what `run` / `sweep` accept as their first argument
PRESET_ARGUMENTS = {"run": set(cli.PRESETS), "sweep": set(presets.PRESETS)}


def _shell_commands(code: str) -> list[str]:
    """The simple commands of a bash block: continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", code)
    commands = []
    for line in text.splitlines():
        line = re.sub(r"(^|\s)#.*", "", line)  # a comment, never inside the commands used here
        commands.extend(part.strip() for part in re.split(r"&&|\|\||[;|&]", line))
    return [c for c in commands if c]


def learnscope_invocations(code: str) -> list[list[str]]:
    """The argument lists given to learnscope in a bash block: `learnscope ...`,
    `.venv/bin/learnscope ...`, `python -m learnscope.cli ...`, `torchrun ... -m learnscope.cli`."""
    found = []
    for command in _shell_commands(code):
        try:
            words = shlex.split(command)
        except ValueError:
            words = command.split()
        for i, word in enumerate(words):
            if word.rsplit("/", 1)[-1] == "learnscope" or (
                    word == "learnscope.cli" and i > 0 and words[i - 1] == "-m"):
                found.append(words[i + 1:])
                break
    return found


def command_problems(arguments: list[str]) -> list[str]:
    """What is wrong with one learnscope invocation ([] when its command exists)."""
    while arguments[:1] == ["--log-level"]:  # an option of every command, before its name
        arguments = arguments[2:]
    if not arguments or arguments[0].startswith("-"):
        return []  # `learnscope --help`
    command = arguments[0]
    if command not in COMMANDS:
        return [f"unknown command {command!r} (commands: {', '.join(sorted(COMMANDS))})"]
    rest = [a for a in arguments[1:] if not a.startswith("-")]
    if COMMANDS[command] and rest and rest[0] not in COMMANDS[command]:
        return [f"unknown `{command}` subcommand {rest[0]!r} "
                f"(known: {', '.join(sorted(COMMANDS[command]))})"]
    if command in PRESET_ARGUMENTS and rest:
        target = arguments[1]
        # upper-case words are placeholders (PRESET)
        if not target.isupper() and target not in PRESET_ARGUMENTS[command]:
            return [f"`{command}` does not take {target!r} "
                    f"(known: {', '.join(sorted(PRESET_ARGUMENTS[command]))})"]
    return []


@pytest.mark.parametrize("block", BASH_BLOCKS, ids=[b.id for b in BASH_BLOCKS])
def test_bash_block_names_existing_commands(block: Block) -> None:
    problems = [f"line `learnscope {' '.join(arguments)}`: {problem}"
                for arguments in learnscope_invocations(block.code)
                for problem in command_problems(arguments)]
    assert not problems, "\n".join(problems)


def test_the_commands_checked_are_those_learnscope_help_lists() -> None:
    from typer.testing import CliRunner

    for group, names in [([], COMMANDS), (["plot"], COMMANDS["plot"])]:
        result = CliRunner().invoke(cli.app, [*group, "--help"], terminal_width=200)
        assert result.exit_code == 0
        listed = {word for word in re.findall(r"^│ (\S+) ", result.output, re.MULTILINE)
                  if not word.startswith("-")}  # options: --help, --log-level
        assert listed == set(names), group


def test_the_bash_blocks_use_most_commands() -> None:
    # guards the extraction: the docs show nearly every command
    used = {arguments[0] for block in BASH_BLOCKS
            for arguments in learnscope_invocations(block.code) if arguments}
    assert len(used & set(COMMANDS)) >= len(COMMANDS) - 1, sorted(set(COMMANDS) - used)


def test_the_command_check_finds_stale_commands() -> None:
    code = ("learnscope runz --store x.db    # typo\n"
            "torchrun --nproc-per-node 2 -m learnscope.cli run erly\n"
            "learnscope plot figure9 -e early && .venv/bin/learnscope show RUN\n"
            "learnscope sweep quickstart; learnscope plot heatmap RUN\n"
            "learnscope run PRESET --dry-run\n"
            "learnscope --log-level debug swep early\n")
    problems = [command_problems(a) for a in learnscope_invocations(code)]
    assert [len(p) for p in problems] == [1, 1, 1, 0, 1, 0, 0, 1]
    assert "unknown command 'runz'" in problems[0][0]
    assert "unknown command 'swep'" in problems[7][0]
    assert "'erly'" in problems[1][0] and "'figure9'" in problems[2][0]
    assert "'quickstart'" in problems[4][0]


# ---------------------------------------------------------------------------------------------
# links

_LINK = re.compile(r"\]\((?P<target>[^)\s]+)\)")


@pytest.mark.parametrize("path", DOC_FILES, ids=[str(p.relative_to(ROOT)) for p in DOC_FILES])
def test_relative_links_point_into_the_repository(path: Path) -> None:
    broken = []
    for target in _LINK.findall(path.read_text(encoding="utf-8")):
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            continue  # a web address or an anchor on the same page
        file = (path.parent / target.split("#", 1)[0]).resolve()
        if not file.exists() or ROOT not in file.parents:
            broken.append(target)
    assert not broken, f"{path.name}: links to files outside the repository or missing: {broken}"
