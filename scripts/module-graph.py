#!/usr/bin/env python3
"""The crate's module graph, from `use crate::…`, `crate::…` paths and `super::…` paths in src/:
prints every cycle between top-level modules and between the files of one folder, and exits 1 if
there is any. Usage: scripts/module-graph.py [--edges]"""
import os, re, sys

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")

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
    return out

def is_folder(mod):
    return any(k[:len(mod)] == mod and len(k) > len(mod) for k in files)

edges = set()
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
        print(a, "->", ", ".join(sorted(top[a])))
for where, c in all_cycles:
    print(f"cycle in {where}: {' -> '.join(c)}")
print(f"{len(files)} modules, {len(edges)} edges, {len(all_cycles)} cycles")
sys.exit(1 if all_cycles else 0)
