#!/usr/bin/env python3
"""Checks the README and docs/ against the tree and the binary (CI runs it):

1. every relative link of README.md and docs/*.md resolves: the file exists, and an `#anchor`
   names a heading of it (GitHub's slugs);
2. every `sessionsync …` command the README names exists, with its flags
   (`sessionsync [SUB] --help`);
3. every config key the README names (`section.key` in code spans, and every key of its TOML
   blocks) is a key of config/sessionsync.example.toml in that section;
4. no config or doc we ship points an API at a SuperOffice Online environment host
   (`base_url = "https://sod|stage|online.superoffice.com…"`): those answer API calls with 421;
5. the command tables of the README and docs/operations.md agree with the binary: every command
   and flag exists (`--help`), every flag of a command's `--help` is in its row, each row's exit codes are exactly those its `--help` states under
   "Exit status:" (the one table of truth, src/cli/exits.rs), every "default `X`" a row states
   is a `[default: X]` of that command's `--help`, and every command of `sessionsync --help` has
   a row in both tables.
The config keys' defaults that docs/operations.md states are checked against the config reader
by tests/it/docs.rs (a test, since it needs the reader itself).

Usage: scripts/check-docs.py [path/to/sessionsync]   (default target/debug/sessionsync, built
first with `cargo build`: the default features). Exits 1 naming each problem.
"""
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
BIN = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "target/debug/sessionsync"
SECTIONS = {"warehouse", "server", "engine", "webhooks", "privacy", "audit", "takecontrol", "superoffice", "mluvii"}
problems = []


def slug(heading: str) -> str:
    s = heading.strip().lower()
    s = re.sub(r"[`*_]", "", s)
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")


def anchors(path: pathlib.Path) -> set:
    found, fence = set(), False
    for line in path.read_text().splitlines():
        if line.startswith("```"):
            fence = not fence
        elif not fence and line.startswith("#"):
            found.add(slug(line.lstrip("#")))
    return found


def check_links(doc: pathlib.Path):
    text = re.sub(r"```.*?```", "", doc.read_text(), flags=re.S)
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue
        file, _, anchor = target.partition("#")
        dest = (doc.parent / file).resolve() if file else doc
        where = f"{doc.relative_to(ROOT)}: link `{target}`"
        if not dest.exists():
            problems.append(f"{where}: {file} does not exist")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            problems.append(f"{where}: no heading `#{anchor}` in {dest.relative_to(ROOT)}")


def help_of(args):
    out = subprocess.run([str(BIN), *args, "--help"], capture_output=True, text=True)
    if out.returncode != 0:
        return None
    return out.stdout


def subcommands(help_text: str) -> set:
    part = help_text.split("Commands:", 1)[-1].split("Options:", 1)[0]
    return {m.group(1) for m in re.finditer(r"^\s{2}([a-z][a-z-]*)\s", part, re.M)}


def exit_codes(text: str) -> set:
    """The exit codes a text states: the number that begins each `·`/`;`-separated part (after a
    label such as "as `sync`:"); "as `sync`" alone means sync's."""
    found = set()
    for part in re.split(r"[·;]", text):
        part = part.strip()
        m = re.match(r"(?:[^\d`]*`[^`]*`[^\d]*?:\s*|[^\d(]*?:\s*)?(\d)\b", part)
        if m:
            found.add(int(m.group(1)))
    return found


def command_rows(doc: pathlib.Path):
    """(command words, exit cell, row) of each row of a command table."""
    for line in doc.read_text().splitlines():
        m = re.match(r"^\| `sessionsync ([^`]+)` \|(.*)\|\s*$", line)
        if not m:
            continue
        words = [w for w in m.group(1).split() if re.fullmatch(r"[a-z][a-z-]*", w)]
        cells = [c.strip() for c in m.group(2).split(" | ")]
        yield words, cells[-1], line


# Flags every command takes (the README's "Global options" says them once).
GLOBAL_FLAGS = {"--config", "--log-format", "--help", "--version"}


def check_tables():
    top = help_of([])
    if top is None:
        return
    known = subcommands(top)
    for doc in [ROOT / "README.md", ROOT / "docs/operations.md"]:
        seen = set()
        for words, cell, row in command_rows(doc):
            path = words[:1]
            sub = subcommands(help_of(path) or "")
            if sub and len(words) > 1 and words[1] in sub:
                path = words[:2]
            seen.add(path[0])
            help_text = help_of(path) or ""
            name = f"{doc.relative_to(ROOT)}: `sessionsync {' '.join(path)}`"
            if "Exit status:" not in help_text:
                problems.append(f"{name}: its --help states no exit status")
                continue
            stated = help_text.split("Exit status:", 1)[1]
            want = exit_codes(stated)
            got = exit_codes(cell)
            if not got and "as `sync`" in cell:
                got = exit_codes((help_of(["sync"]) or "").split("Exit status:", 1)[-1])
            if got != want:
                problems.append(f"{name}: the table says exit {sorted(got)} ({cell!r}); --help says {sorted(want)}")
            # Every flag the command takes is in its row (a row that leaves one out hides it).
            flags = set(re.findall(r"^\s+(?:-\w, )?(--[a-z][a-z-]*)", help_text, re.M)) - GLOBAL_FLAGS
            for flag in sorted(flags):
                if not re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", row):
                    problems.append(f"{name}: the row leaves out its flag `{flag}` (in its --help)")
            defaults = set(re.findall(r"\[default: ([^\]]+)\]", help_text))
            for value in re.findall(r"default `([^`]+)`", row):
                if value not in defaults:
                    problems.append(f"{name}: the table says default `{value}`; --help's defaults are {sorted(defaults)}")
        for missing in sorted(known - seen - {"help"}):
            problems.append(f"{doc.relative_to(ROOT)}: no row for `sessionsync {missing}` (in `sessionsync --help`)")


def check_commands(readme: str):
    top = help_of([])
    if top is None:
        problems.append(f"{BIN} --help failed")
        return
    known = subcommands(top)
    for span in re.findall(r"`(sessionsync [^`]+)`", readme):
        words = span.split()[1:]
        if not words or words[0].startswith("-"):
            continue
        path = [words[0]]
        if words[0] not in known:
            problems.append(f"README names `{span}`: `{words[0]}` is not a command of `sessionsync --help`")
            continue
        sub_help = help_of(path)
        subs = subcommands(sub_help or "")
        rest = words[1:]
        if subs and rest and re.fullmatch(r"[a-z-]+", rest[0]):
            if rest[0] not in subs:
                problems.append(f"README names `{span}`: `{rest[0]}` is not a command of `sessionsync {words[0]} --help`")
                continue
            path.append(rest[0])
            sub_help = help_of(path)
        for flag in re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", span):
            if flag not in (sub_help or "") and flag not in top:
                problems.append(f"README names `{span}`: `sessionsync {' '.join(path)}` has no flag `{flag}`")


def example_keys() -> dict:
    keys, section = {}, None
    for line in (ROOT / "config/sessionsync.example.toml").read_text().splitlines():
        m = re.match(r"^\s*#?\s*\[\[?([a-z_]+)\]\]?", line)
        if m:
            section = m.group(1)
            keys.setdefault(section, set())
            continue
        m = re.match(r"^\s*#?\s*([a-z_]+)\s*=", line)
        if m and section:
            keys[section].add(m.group(1))
    return keys


def check_keys(readme: str):
    keys = example_keys()
    for span in re.findall(r"`([a-z_]+)(?:\[\])?\.([a-z_]+)`", readme):
        section, key = span
        if section in SECTIONS and key not in keys.get(section, set()):
            problems.append(f"README names `{section}.{key}`: no such key in [{section}] of config/sessionsync.example.toml")
    for block in re.findall(r"```toml\n(.*?)```", readme, re.S):
        section = None
        for line in block.splitlines():
            m = re.match(r"^\s*\[\[?([a-z_]+)\]\]?", line)
            if m:
                section = m.group(1)
                if section not in keys:
                    problems.append(f"README's TOML names section [{section}], which the example config has not")
                continue
            m = re.match(r"^\s*([a-z_]+)\s*=", line)
            if m and section and m.group(1) not in keys.get(section, set()):
                problems.append(f"README's TOML names `{m.group(1)}` in [{section}]: no such key in the example config")


def check_no_environment_host_as_api():
    shipped = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "config").glob("*.toml")),
               *sorted((ROOT / "docker").glob("*.toml")), *sorted((ROOT / "deploy").rglob("*.toml"))]
    bad = re.compile(r"base_url\s*=\s*\"https?://(sod|stage|online)\.superoffice\.com")
    for f in shipped:
        for n, line in enumerate(f.read_text().splitlines(), 1):
            if bad.search(line):
                problems.append(f"{f.relative_to(ROOT)}:{n}: an API base on a SuperOffice Online environment host (answers 421): use environment + context_identifier")


def main() -> int:
    if len(sys.argv) == 1:
        # Always (a no-op when fresh): target/debug/sessionsync may be the production build
        # scripts/check-production-binary.sh left there, and the docs describe every command.
        subprocess.run(["cargo", "build", "-q", "--bin", "sessionsync"], cwd=ROOT, check=True)
    docs = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    for d in docs:
        check_links(d)
    readme = (ROOT / "README.md").read_text()
    check_commands(readme)
    check_keys(readme)
    check_commands((ROOT / "docs/operations.md").read_text())
    check_tables()
    check_no_environment_host_as_api()
    for p in problems:
        print(p, file=sys.stderr)
    if problems:
        return 1
    print(f"docs: links of {len(docs)} files resolve; the README's commands and config keys exist; "
          "the command tables' flags, defaults and exit codes are the binary's")
    return 0


if __name__ == "__main__":
    sys.exit(main())
