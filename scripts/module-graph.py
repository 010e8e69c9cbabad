#!/usr/bin/env python3
"""The module graph of each crate of the workspace (the binary's src/, crates/core, crates/sources),
from `use crate::…`, `crate::…` paths and `super::…` paths: prints every cycle between top-level
modules of a crate and between the files of one folder, and every file in the core's engine/ or in
a source's folder that uses its own folder's mod.rs, and exits 1 if there is any.

What it no longer checks, because the crates now do: that the engine and the core know no source
and that nothing below the binary reaches up into it (sessionsync-core depends on no other crate
of ours, sessionsync-sources only on the core; an arrow back up does not compile).
Usage: scripts/module-graph.py [--edges]"""
import os, re, sys

here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
# (crate, its src/, the top-level folders whose files must not use their own mod.rs)
CRATES = [
    ("sessionsync", os.path.join(here, "src"), lambda top: False),
    ("sessionsync-core", os.path.join(here, "crates", "core", "src"), lambda top: top == "engine"),
    ("sessionsync-sources", os.path.join(here, "crates", "sources", "src"), lambda top: True),
]

def analyze(crate, root, guarded):

    def module_of(path):
        rel = os.path.relpath(path, root)[:-3].split(os.sep)
        if rel[-1] == "mod":
            rel = rel[:-1]
        return [p for p in rel if p not in ("lib", "main")]

    files = {}
    for d, _, names in os.walk(root):
        for n in names:
            if n.endswith(".rs"):
                p = os.path.join(d, n)
                files[tuple(module_of(p))] = open(p).read()

    def strip(text):
        text = re.sub(r"//[^\n]*", "", text)
        # `pub(in crate::a)` names where an item is visible, not what the file uses
        text = re.sub(r"pub\(in [\w:]+\)", "pub", text)
        # leave out #[cfg(test)] modules: tests may reach anywhere
        i = text.find("#[cfg(test)]")
        return text[:i] if i >= 0 else text

    def targets(mod, text):
        out = set()
        for m in re.finditer(r"\b(crate|super)((?:::\w+)+)", text):
            parts = m.group(2).strip(":").split("::")
            if m.group(1) == "crate":
                base = []
            else:
                base = list(mod[:-1]) if not is_folder(mod) else list(mod[:-1])
                # `super` of a file module a/b is a; of a folder module a/b (mod.rs) is a too
            path = base + parts
            # longest prefix that is a module
            for k in range(len(path), 0, -1):
                if tuple(path[:k]) in files:
                    out.add(tuple(path[:k]))
                    break
        # `use crate::{a, b::c}` groups
        for m in re.finditer(r"use crate::\{([^;]*)\};", text, re.S):
            for item in re.split(r",\s*", m.group(1)):
                name = item.strip().split("::")[0].strip("{} \n")
                if (name,) in files:
                    out.add((name,))
        # `use super::{a, b}` groups: items of the parent (or its submodules)
        for m in re.finditer(r"use super::\{([^;]*)\};", text, re.S):
            parent = list(mod[:-1])
            for item in re.split(r",\s*", m.group(1)):
                name = item.strip().split("::")[0].strip("{} \n")
                if not name:
                    continue
                out.add(tuple(parent + [name]) if tuple(parent + [name]) in files else tuple(parent))
        return out

    def is_folder(mod):
        return any(k[:len(mod)] == mod and len(k) > len(mod) for k in files)

    edges = set()
    # Inside engine/ and sources/, a file takes what it shares with its siblings from a sibling,
    # never from its folder's mod.rs (which only names the parts): such an arrow runs back up.
    upward = set()
    for mod, text in files.items():
        for t in targets(mod, strip(text)):
            if mod and guarded(mod[0]) and t != mod and is_folder(t) and t == tuple(mod[:len(t)]):
                upward.add((mod, t))
    for mod, text in files.items():
        for t in targets(mod, strip(text)):
            if t != mod and not (t == tuple(mod[:len(t)])):  # a module using its own ancestors' items is fine
                edges.add((mod, t))

    def level(edges, key):
        g = {}
        for a, b in edges:
            ka, kb = key(a), key(b)
            if ka is not None and kb is not None and ka != kb:
                g.setdefault(ka, set()).add(kb)
        return g

    def cycles(g):
        found, seen = [], set()
        def dfs(n, stack, on):
            for m in sorted(g.get(n, ())):
                if m in on:
                    c = stack[stack.index(m):]
                    k = frozenset(c)
                    if k not in seen:
                        seen.add(k); found.append(c + [m])
                elif len(stack) < 12:
                    dfs(m, stack + [m], on | {m})
        for n in sorted(g):
            dfs(n, [n], {n})
        return found

    top = level(edges, lambda m: m[0] if m else None)
    all_cycles = [("top-level", c) for c in cycles(top)]
    folders = {m[:-1] for m in files if len(m) >= 2}
    for f in sorted(folders):
        inner = level(edges, lambda m, f=f: m[len(f)] if len(m) > len(f) and m[:len(f)] == f else None)
        all_cycles += [("/".join(f), c) for c in cycles(inner)]
    if "--edges" in sys.argv:
        for a in sorted(top):
            print(crate, a, "->", ", ".join(sorted(top[a])))
    for where, c in all_cycles:
        print(f"{crate}: cycle in {where}: {' -> '.join(c)}")
    for a, b in sorted(upward):
        print(f"{crate}: runs back up: {'/'.join(a)} uses its folder's {'/'.join(b)}/mod.rs")
    print(f"{crate}: {len(files)} modules, {len(edges)} edges, {len(all_cycles)} cycles, {len(upward)} arrows back up")
    return bool(all_cycles or upward)

failed = [analyze(*c) for c in CRATES]
sys.exit(1 if any(failed) else 0)
