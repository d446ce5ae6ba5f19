"""The documentation stays true: README.md and docs/*.md.

* the README's example block is exactly the shipped examples, and its test command is CI's;
* every `lrq` block parses (or, when its first line is `# error: TEXT`, fails with TEXT);
* every `lrqc VERB ...` shown names a verb of the command line and only options that verb takes;
* every relative link, repository path and `lrqc.module.name` mentioned exists;
* a few cheap README commands (check, explain) run and exit 0.
"""

from __future__ import annotations

import argparse
import ast
import glob
import re
import shlex
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

import lrqc

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```([A-Za-z0-9_-]*)[^\n]*\n(.*?)^```", re.DOTALL | re.MULTILINE)
ERROR_MARK = "# error:"  # first line of an lrq block that shows an error on purpose
# Directories whose files the documentation names by path
PATH_DIRS = ("examples", "bench", "docs", "grammar", "schedules", "lrqc", ".ci", "tests")
# a path starts lowercase after its directory: `lrqc/TVM/LLVM versions` is prose, not a path
_DIRS = "|".join(re.escape(d) for d in PATH_DIRS)
PATH = re.compile(rf"(?<![\w./-])((?:{_DIRS})/(?:[a-z0-9_][\w./-]*[\w/])?)")


def _fenced(text: str) -> list[tuple[str, str]]:
    """(info string, body) of every fenced block."""
    return FENCE.findall(text)


def _blocks(text: str) -> list[str]:
    return [body for _, body in _fenced(text)]


def _doc_id(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _prose(text: str) -> str:
    """The text outside fenced blocks."""
    return FENCE.sub("", text)


@cache
def cli_parser() -> argparse.ArgumentParser:
    """The `lrqc` argument parser (the one place that knows where the CLI lives)."""
    from lrqc.cli import build_parser

    return build_parser()


def cli_command() -> list[str]:
    """How to run `lrqc` in a subprocess: the installed script next to this Python, else the
    module's entry point."""
    script = Path(sys.executable).with_name("lrqc")
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from lrqc.cli import main; sys.exit(main())"]


def _verbs() -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in cli_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def _shell_lines(body: str) -> list[str]:
    """Lines of a shell block, with backslash continuations joined and comments dropped."""
    out = []
    for line in body.replace("\\\n", " ").splitlines():
        line = re.sub(r"(^|\s)#.*", "", line).strip()
        if line:
            out.append(line)
    return out


def _commands(text: str) -> list[str]:
    """Every `lrqc VERB ...` shown: in fenced blocks other than lrq and python, and in inline
    code spans of the prose. Each is the text from `lrqc` to the end of its command."""
    pieces = []
    for info, body in _fenced(text):
        if info not in ("lrq", "python"):
            pieces += _shell_lines(body)
    pieces += [" ".join(span.split()) for span in re.findall(r"`([^`]+)`", _prose(text))]
    out = []
    for piece in pieces:
        for m in re.finditer(r"(?:^|(?<=[\s;&|(]))lrqc\s+(?=\[?-|[a-z])", piece):
            rest = re.split(r"\s(?:&&|;|\|\|)\s", piece[m.start():])[0]
            out.append(rest)
    return out


def _verb_and_flags(command: str) -> tuple[str | None, list[str]]:
    """('build', ['--dims', '-o', ...]) of `lrqc [--debug] build FILE --dims ... -o DIR`;
    brackets and alternatives of synopsis lines are ignored. Verb None: a placeholder (CMD)."""
    words = [w.strip("[]()|,") for w in shlex.split(command, posix=False)[1:]]
    words = [w for w in words if w and w != "..."]
    while words and words[0] in ("--debug", "-h", "--help", "--version"):
        words.pop(0)
    if not words or not re.fullmatch(r"[a-z][a-z_-]*", words[0]):
        return None, []
    flags = [w.split("=")[0] for w in words[1:] if re.fullmatch(r"--?[a-z][\w-]*(=.*)?", w)]
    return words[0], flags


# ---- the README's own contract ------------------------------------------------------------------

def test_readme_schemes_are_the_examples(all_examples):
    readme = (ROOT / "README.md").read_text()
    block = next(b for b in _blocks(readme) if b.lstrip().startswith("# LRQMM"))
    assert lrqc.parse_schemes(block, "README.md") == all_examples
    for path in ROOT.glob("examples/*.lrq"):  # each example's schemes appear verbatim
        body = "".join(ln for ln in path.read_text().splitlines(True) if not ln.startswith("#"))
        assert body in block, path


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    commands = [b.strip() for b in _blocks(readme)[:2]]
    assert "lrqc bench examples/" in commands[0] and "pip install ." in commands[0]
    assert "pytest" in commands[1] and "[test]" in commands[1]
    ci = (ROOT / ".ci" / "run").read_text()
    assert commands[1] in ci.splitlines()


# ---- every document -----------------------------------------------------------------------------

@pytest.mark.parametrize("doc", DOCS, ids=_doc_id)
def test_lrq_blocks_parse(doc):
    """Scheme snippets (```lrq) parse; those marked `# error: TEXT` fail with TEXT."""
    for i, (info, body) in enumerate(_fenced(_read(doc))):
        if info != "lrq":
            continue
        where = f"{_doc_id(doc)}, block {i + 1}"
        first = body.lstrip().splitlines()[0] if body.strip() else ""
        if first.startswith(ERROR_MARK):
            want = first[len(ERROR_MARK):].strip()
            with pytest.raises(lrqc.LrqcError) as err:
                lrqc.parse_schemes(body, where)
            assert want in str(err.value), (where, str(err.value))
        else:
            assert lrqc.parse_schemes(body, where), f"{where}: no scheme in the block"


def test_the_docs_have_lrq_blocks():
    """The parse test above has something to check: the README's examples and the language
    reference are fenced as lrq."""
    for doc in (ROOT / "README.md", ROOT / "docs" / "language.md"):
        assert any(info == "lrq" for info, _ in _fenced(_read(doc))), doc


@pytest.mark.parametrize("doc", DOCS, ids=_doc_id)
def test_commands_use_real_verbs_and_options(doc):
    verbs = _verbs()
    assert set(verbs) == {"check", "explain", "eval", "build", "run", "bench", "tune", "cache"}
    bad = []
    commands = _commands(_read(doc))
    for command in commands:
        verb, flags = _verb_and_flags(command)
        if verb is None:
            continue
        if verb not in verbs:
            bad.append(f"{command!r}: no verb {verb!r}")
            continue
        accepted = set(verbs[verb]._option_string_actions) | {"--debug"}
        bad += [f"{command!r}: {verb} has no option {f}" for f in flags
                if f not in accepted]
    assert not bad, "\n".join(bad)


def test_command_extraction_finds_commands():
    """_commands sees commands in shell blocks, after && and in inline code, and nothing else."""
    text = ("```sh\npip install . && lrqc bench x.lrq --dims M=1,N=1,K=1\nlrqc build f \\\n"
            "    --target aarch64 -o d   # comment --not-a-flag\n```\n"
            "Run `lrqc check FILE` or `lrqc --debug CMD ...`; see `lrqc.compile`.\n"
            "```python\nlrqc.compile(s)\n```\n")
    found = [_verb_and_flags(c) for c in _commands(text)]
    assert found == [("bench", ["--dims"]), ("build", ["--target", "-o"]), ("check", []),
                     (None, [])]


@pytest.mark.parametrize("doc", DOCS, ids=_doc_id)
def test_relative_links_exist(doc):
    text = _read(doc)
    bad = []
    for target in re.findall(r"\]\(([^)\s]+)\)", _prose(text)):
        if re.match(r"[a-z][a-z+.-]*:", target) or target.startswith("#"):
            continue  # a URL or an anchor in the same page
        path = (doc.parent / target.split("#")[0]).resolve()
        if not path.exists():
            bad.append(target)
    assert not bad, f"{_doc_id(doc)}: broken links {bad}"


@pytest.mark.parametrize("doc", DOCS, ids=_doc_id)
def test_paths_mentioned_exist(doc):
    """examples/x.lrq, bench/x.py, docs/x.md, lrqc/..., schedules/... named anywhere in the
    text (globs must match something; <placeholders> are skipped)."""
    text = _read(doc)
    bad = []
    for path in PATH.findall(text):
        path = path.rstrip(".")
        if "<" in path or ">" in path:
            continue
        if not glob.glob(str(ROOT / path)):
            bad.append(path)
    assert not bad, f"{_doc_id(doc)}: no such file {sorted(set(bad))}"


def _top_level_names(path: Path) -> set[str]:
    """Names a module file defines or imports at top level (read, not imported: no TVM)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return names


def _python_name_exists(dotted: str) -> bool:
    """Whether `lrqc.a.b.name` is a module of the repository's lrqc package, or a top-level name
    of one (found in the files: nothing is imported)."""
    parts = dotted.split(".")
    folder, module = ROOT, None
    for i, part in enumerate(parts):
        if module is None and (folder / part / "__init__.py").is_file():
            folder = folder / part
            continue
        if module is None and (folder / f"{part}.py").is_file():
            module = folder / f"{part}.py"
            continue
        rest = parts[i:]
        source = module or folder / "__init__.py"
        return len(rest) == 1 and source.is_file() and rest[0] in _top_level_names(source)
    return True


@pytest.mark.parametrize("doc", DOCS, ids=_doc_id)
def test_python_names_exist(doc):
    """`lrqc.module.name` in inline code names a module of lrqc or a name defined in one."""
    spans = re.findall(r"`([^`]+)`", _prose(_read(doc)))
    names = {m for span in spans for m in re.findall(r"(?<![\w./])lrqc(?:\.[A-Za-z_]\w*)+", span)}
    bad = sorted(n for n in names if not _python_name_exists(n))
    assert not bad, f"{_doc_id(doc)}: no such module or name {bad}"


# What a reader of the repository cannot follow: issue numbers, notes and probes kept elsewhere,
# how the work was organised.
OUTSIDE = re.compile(r"\bissues? ?#?\d+|(?<![\w&])#\d+\b|\b(?:methods|shared|TVM) notes?\b"
                     r"|\bprobes?\b|\bsessions?\b|\btickets?\b", re.IGNORECASE)


def test_no_references_outside_the_repository():
    for text in ("see issue 12", "fixed in #15", "the methods note", "TVM notes", "probe 01"):
        assert OUTSIDE.search(text), text
    for text in ("`lrqc.runtime`", "packed.notes", "probed for writing", "# 1. Quantizer"):
        assert not OUTSIDE.search(text), text
    bad = [f"{_doc_id(doc)}: {m.group(0)!r}" for doc in DOCS
           for m in OUTSIDE.finditer(_read(doc))]
    assert not bad, "\n".join(bad)


# ---- a few README commands, for real ------------------------------------------------------------

def _cheap_readme_commands() -> list[str]:
    """The README's complete `lrqc check` and `lrqc explain` commands (no placeholders; no TVM:
    well under a second each)."""
    found = _commands(_read(ROOT / "README.md"))
    return list(dict.fromkeys(c for c in found
                              if re.fullmatch(r"lrqc (check|explain)( [a-z0-9_./*=,-]+)+", c)))


def test_cheap_readme_commands_run():
    commands = _cheap_readme_commands()
    assert len(commands) >= 3, commands
    for command in commands:
        args = []
        for word in shlex.split(command)[1:]:  # the shell's globbing, in the repository
            matches = sorted(glob.glob(word, root_dir=ROOT)) if "*" in word else []
            args += matches or [word]
        done = subprocess.run([*cli_command(), *args], cwd=ROOT, capture_output=True, text=True,
                              timeout=60, check=False)
        assert done.returncode == 0, (command, done.stderr)
        assert done.stdout.strip(), command


def test_the_artifacts_doc_states_the_manifest_format_written():
    """docs/artifacts.md names the manifest format lrqc writes and reads (and no other)."""
    fmt = re.search(r"^FORMAT = (\d+)", (ROOT / "lrqc" / "runtime" / "manifest.py").read_text(),
                    re.MULTILINE).group(1)
    text = (ROOT / "docs" / "artifacts.md").read_text()
    assert f"The manifest (format {fmt};" in text
    assert f"older than {fmt} (an older lrqc" in text
