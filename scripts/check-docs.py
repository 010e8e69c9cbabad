#!/usr/bin/env python3
"""Checks the README and docs/ against the tree and the binary (CI runs it):

1. every relative link of README.md and docs/*.md resolves: the file exists, and an `#anchor`
   names a heading of it (GitHub's slugs);
2. every `sessionsync …` command the README names exists, with its flags
   (`sessionsync [SUB] --help`);
3. every config key the README names (`section.key` in code spans, and every key of its TOML
   blocks) is a key of config/sessionsync.example.toml in that section;
4. no config or doc we ship points an API at a SuperOffice Online environment host
   (`base_url = "https://sod|stage|online.superoffice.com…"`): those answer API calls with 421.

Usage: scripts/check-docs.py [path/to/sessionsync]   (default target/debug/sessionsync, built
with `cargo build` when missing). Exits 1 naming each problem.
"""
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
BIN = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "target/debug/sessionsync"
SECTIONS = {"warehouse", "server", "engine", "webhooks", "privacy", "takecontrol", "superoffice", "mluvii"}
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
    if not BIN.exists():
        subprocess.run(["cargo", "build", "-q", "--bin", "sessionsync"], cwd=ROOT, check=True)
    docs = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    for d in docs:
        check_links(d)
    readme = (ROOT / "README.md").read_text()
    check_commands(readme)
    check_keys(readme)
    check_no_environment_host_as_api()
    for p in problems:
        print(p, file=sys.stderr)
    if problems:
        return 1
    print(f"docs: links of {len(docs)} files resolve; the README's commands and config keys exist")
    return 0


if __name__ == "__main__":
    sys.exit(main())
