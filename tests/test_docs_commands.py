"""The user documents say what the code does: every documented command parses with its script's
own parser (nothing runs), every relative link and image resolves, every module named exists.

A command is a line of a fenced block (backslash continuations joined) or an inline code span
that starts with a Python executable (``python``, ``.venv/bin/python``, ...; ``torchrun``
too), optionally after environment assignments or ``nice``; ``python SCRIPT.py ARGS`` and
``python -m bench.NAME ARGS`` are parsed by that script's ``get_args_parser()``.
"""
import contextlib
import importlib
import importlib.util
import io
import re
import shlex
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# What a user reads for how to run things (CHANGELOG.md names former flags and modules on purpose).
DOCS = [ROOT / "README.md", ROOT / "BENCHMARKS.md", *sorted((ROOT / "docs").glob("*.md"))]
SCRIPTS = sorted(p.name for p in ROOT.glob("*.py"))  # every top-level file is a script with get_args_parser()
PACKAGES = ("utils", "tubes", "engine", "models", "layers", "data", "bench", "tools", "tests")
PYTHON = re.compile(r"^(?:\S*/)?python3?(?:\.\d+)?$")
SEPARATORS = {"&&", "||", ";", "|", "&"}
FILE_TYPES = (".json", ".jsonl", ".npz", ".pkl", ".mat", ".png", ".jpg", ".mp4", ".txt", ".md", ".onnx", ".pth",
              ".log", ".py")


def fenced_blocks(text):
    """(first line number, lines) of each fenced block that is not Python source; and the prose."""
    blocks, prose, current, lang, start = [], [], None, "", 0
    for number, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("```"):
            if current is None:
                current, lang, start = [], line.strip()[3:].strip().lower(), number + 1
            else:
                if lang not in ("python", "py"):
                    blocks.append((start, current))
                current = None
            continue
        if current is None:
            prose.append((number, line))
        else:
            current.append(line)
    return blocks, prose


def logical_lines(start, lines):
    """Backslash-continued lines joined: (line number of the first, text)."""
    out, pending, first = [], "", start
    for offset, line in enumerate(lines):
        if not pending:
            first = start + offset
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
        else:
            out.append((first, pending + line))
            pending = ""
    if pending:
        out.append((first, pending))
    return out


def split_commands(text):
    """shell-like tokens of ``text`` (comments dropped), split at ``&&``, ``;``, ``|``."""
    lexer = shlex.shlex(text.strip().removeprefix("$ "), posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    try:
        tokens = list(lexer)
    except ValueError:  # an unclosed quote: not a shell line (prose in a text block)
        tokens = text.split()
    commands, current = [], []
    for token in tokens:
        if token in SEPARATORS:
            commands.append(current)
            current = []
        else:
            current.append(token)
    return [c for c in commands + [current] if c]


def script_call(tokens):
    """(script, argv) when ``tokens`` run a Python script or module, else None.

    script: a path relative to the repository (``train.py``, ``tools/act/make_fixtures.py``)
    or ``-m`` and a module name."""
    tokens = list(tokens)
    while tokens and (re.match(r"^\w+=", tokens[0]) or tokens[0] in ("nice", "time", "env")):
        tokens.pop(0)
    if not tokens:
        return None
    if PYTHON.match(tokens[0]):
        rest = tokens[1:]
        while rest and rest[0].startswith("-") and rest[0] != "-m":  # python's own options (-X importtime)
            rest = rest[2:] if rest[0] in ("-X", "-W") else rest[1:]
        if len(rest) >= 2 and rest[0] == "-m":
            return ("-m", rest[1]), rest[2:]
        if rest and rest[0].endswith(".py"):
            return rest[0], rest[1:]
        return None
    if Path(tokens[0]).name == "torchrun":
        for i, token in enumerate(tokens):
            if token.endswith(".py"):
                return token, tokens[i + 1:]
    return None


def extract_commands(text):
    """(line number, script, argv) of every Python command in a Markdown text."""
    blocks, prose = fenced_blocks(text)
    found = []
    for start, lines in blocks:
        for number, line in logical_lines(start, lines):
            for tokens in split_commands(line):
                call = script_call(tokens)
                if call:
                    found.append((number, *call))
    # inline code spans may wrap across the lines of a paragraph
    joined = " ".join(line for _, line in prose)
    offsets, position = [], 0
    for number, line in prose:
        offsets.append((position, number))
        position += len(line) + 1
    for match in re.finditer(r"`([^`]+)`", joined):
        words = match.group(1).split()
        for tokens in split_commands(match.group(1)) if words and PYTHON.match(words[0]) else []:
            call = script_call(tokens)
            if call:
                number = max(n for pos, n in offsets if pos <= match.start())
                found.append((number, *call))
    return found


def load_script(script):
    """The module of a documented script (a repository path or ``("-m", name)``), or None when
    it is not this project's (``python -m pytest``)."""
    if isinstance(script, tuple):
        name = script[1]
        if name.split(".")[0] not in PACKAGES:
            return None
        if not ROOT.joinpath(*name.split(".")).with_suffix(".py").is_file():
            raise FileNotFoundError(f"no module {name} in the repository")
        return importlib.import_module(name)
    path = (ROOT / script).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"no script {script} in the repository")
    if path.parent == ROOT:
        return importlib.import_module(path.stem)
    if (path.parent / "__init__.py").is_file():
        return importlib.import_module(".".join(path.relative_to(ROOT).with_suffix("").parts))
    sys.path.insert(0, str(path.parent))  # a tool beside its helper modules
    try:
        spec = importlib.util.spec_from_file_location(f"_doc_{'_'.join(path.relative_to(ROOT).parts)[:-3]}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(path.parent))
    return module


def check_command(script, argv):
    """None when ``argv`` parses with the script's own parser, else the parser's complaint."""
    try:
        module = load_script(script)
    except FileNotFoundError as e:
        return str(e)
    if module is None:
        return None
    if not hasattr(module, "get_args_parser"):
        return f"{script} has no get_args_parser()"
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            module.get_args_parser().parse_args(argv)
    except SystemExit as e:
        if e.code:
            return stderr.getvalue().strip().splitlines()[-1] if stderr.getvalue().strip() else f"exit {e.code}"
    return None


def github_slug(heading):
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path):
    blocks, prose = fenced_blocks(path.read_text())
    return {github_slug(m.group(1)) for _, line in prose if (m := re.match(r"^#{1,6}\s+(.*)$", line))}


def broken_links(path):
    """Relative links and images of a Markdown file whose target (or #anchor) is missing."""
    _, prose = fenced_blocks(path.read_text())
    text = "\n".join(re.sub(r"`[^`]*`", "", line) for _, line in prose)
    broken = []
    for match in re.finditer(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", text):
        target = match.group(1)
        if re.match(r"^[a-z]+:", target):  # http:, https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        resolved = (path.parent / file_part).resolve() if file_part else path
        if not resolved.exists():
            broken.append(target)
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(target)
    return broken


def module_exists(dotted):
    """Whether ``pkg.module[.attr...]`` names a module of this project (and its first attribute
    occurs in that module)."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        base = ROOT.joinpath(*parts[:i])
        for file in (base.with_suffix(".py"), base / "__init__.py"):
            if file.is_file():
                rest = parts[i:]
                return not rest or re.search(rf"\b{re.escape(rest[0])}\b", file.read_text()) is not None
    return False


def stale_names(path):
    """Backticked module paths (``tubes/linking.py``, ``engine/``) and dotted names
    (``utils.io.atomic_path``) of this project's packages that do not exist."""
    stale = []
    for span in re.findall(r"`([^`\n]+)`", path.read_text()):
        for token in re.findall(r"[\w./]+", span):
            if re.split(r"[./]", token)[0] not in PACKAGES or token in PACKAGES:
                continue
            if "/" in token:
                if token.endswith((".py", "/")) and not (ROOT / token).exists():
                    stale.append(token)
            elif not token.endswith(FILE_TYPES) and not module_exists(token.rstrip(".")):
                stale.append(token)
    return stale


def doc_id(path):
    return str(path.relative_to(ROOT))


@pytest.mark.parametrize("doc", DOCS, ids=doc_id)
def test_documented_commands_parse(doc):
    commands = extract_commands(doc.read_text())
    failures = [f"{doc_id(doc)}:{n}: {script if isinstance(script, str) else ' '.join(script)} "
                f"{shlex.join(argv)}\n    {error}"
                for n, script, argv in commands if (error := check_command(script, argv))]
    assert not failures, "documented commands that their scripts refuse:\n" + "\n".join(failures)


def test_the_documents_hold_commands_of_every_script():
    scripts = {s for doc in DOCS for _, s, _ in extract_commands(doc.read_text()) if isinstance(s, str)}
    assert set(SCRIPTS) - scripts == set()


@pytest.mark.parametrize("doc", [ROOT / "CHANGELOG.md", *DOCS], ids=doc_id)
def test_relative_links_and_images_resolve(doc):
    assert broken_links(doc) == []


@pytest.mark.parametrize("doc", DOCS, ids=doc_id)
def test_named_modules_exist(doc):
    assert stale_names(doc) == []




@pytest.mark.parametrize("script", SCRIPTS)
def test_every_script_prints_the_declared_version(script):
    from utils.version import __version__
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exit_:
        load_script(script).get_args_parser().parse_args(["--version"])
    assert exit_.value.code == 0 and out.getvalue().split()[1:] == ["(AMTNet)", __version__]  # after the program name


def test_the_changelog_starts_at_the_declared_version():
    from utils.version import __version__
    versions = re.findall(r"^## \[([^\]]+)\]", (ROOT / "CHANGELOG.md").read_text(), re.M)
    assert versions[0] == "Unreleased" and versions[1] == __version__


# The checks themselves, on texts made for them.

SAMPLE = r"""
Train:
```
.venv/bin/python train.py --data_root runs/toy_data \
    --max_iter 10   # a comment
OMP_NUM_THREADS=1 nice python -m bench.bench_tubes --videos 3 && python test.py --weights W.pth
pip install -r requirements-onnx.txt
torchrun --nproc_per_node 2 train.py --ngpu 2
```
```python
python = "not a command"
```
Prose with an inline command `python build_tubes.py --det_dir D
--annot ucf24 --out_dir T` that wraps, and `build_tubes.py --link_iou` which is only a flag.
"""


def test_extract_commands_finds_each_form():
    found = extract_commands(SAMPLE)
    assert [(n, s, a) for n, s, a in found] == [
        (4, "train.py", ["--data_root", "runs/toy_data", "--max_iter", "10"]),
        (6, ("-m", "bench.bench_tubes"), ["--videos", "3"]),
        (6, "test.py", ["--weights", "W.pth"]),
        (8, "train.py", ["--ngpu", "2"]),
        (13, "build_tubes.py", ["--det_dir", "D", "--annot", "ucf24", "--out_dir", "T"]),
    ]


def test_check_command_refuses_an_unknown_flag_and_a_missing_script():
    (_, script, argv), = extract_commands("```\npython build_tubes.py --det_dir D --annot ucf24 --out_dir T "
                                          "--link_iouu 0.2\n```\n")
    assert "--link_iouu" in check_command(script, argv)
    assert check_command(script, argv[:-2]) is None
    assert "invalid choice" in check_command("build_tubes.py", ["--det_dir", "D", "--annot", "a", "--out_dir", "T",
                                                                "--link", "sideways"])
    assert "no script" in check_command("no_such_script.py", [])
    assert check_command(("-m", "pytest"), ["-q"]) is None  # not this project's
    assert "unrecognized" in check_command(("-m", "bench.bench_tubes"), ["--videoz", "3"])
    assert "no module" in check_command(("-m", "bench.bench_nothing"), [])


def test_broken_links_and_stale_names_are_found(tmp_path, monkeypatch):
    (tmp_path / "img.png").write_bytes(b"")
    (tmp_path / "page.md").write_text("# A page\n## Two words\n")
    doc = tmp_path / "doc.md"
    doc.write_text("![ok](img.png) ![gone](missing.png) [ok](page.md#two-words) [bad](page.md#three)\n"
                   "[web](https://example.org/x) `[not a link](nowhere.md)`\n"
                   "```\n[in a block](nowhere.md)\n```\n")
    assert broken_links(doc) == ["missing.png", "page.md#three"]
    doc.write_text("`tubes/linking.py`, `utils/linking.py`, `utils.io.atomic_path`, `utils.evaluation`, "
                   "`tubes.linking.NoSuchThing`, `layers/`, `DataConfig.two_stream`\n")
    assert stale_names(doc) == ["utils/linking.py", "utils.evaluation", "tubes.linking.NoSuchThing"]
