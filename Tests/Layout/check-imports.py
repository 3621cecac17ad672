#!/usr/bin/env python3
"""The layout rules of Package.swift, checked against the sources (`make test` runs this first).

1. Every target declares exactly the modules its sources import (a product named only to pin its
   version is listed in PINNED_ONLY), so the target list tells the truth about the code.
2. A library or executable target depends only on what its line in layers.txt allows (lowest
   first, as design.md's "Layout" table), and a line allows only targets listed above it: no
   lower layer imports a higher one, and no new edge (RMABench → Provisioning, Simulator →
   Registry, a library → ArgumentParser…) appears without a reviewed change to layers.txt.
3. The station binary `keyline` never links the simulator, directly or through another target.

Usage: check-imports.py [--self-test]. Exit 0 when the layout holds, 1 with one line per breach.
"""
import json
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LAYERS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "layers.txt")
LAYERS_NAME = "Tests/Layout/layers.txt"

# Modules of the toolchain and the OS: importable by any target without a declaration.
PLATFORM = {"Foundation", "FoundationEssentials", "FoundationNetworking", "FoundationXML", "Dispatch", "Glibc",
            "Darwin", "Musl", "Testing", "XCTest", "Synchronization", "_Concurrency", "os", "SwiftShims"}
# Products declared without an import, only so SwiftPM resolves an exact version.
PINNED_ONLY = {("EscrowS3", "NIOSSL")}
# Targets that must never be reached from a station's binary.
NEVER_IN = {"keyline": {"Simulator"}}

IMPORT = re.compile(r"^\s*(?:@\w+(?:\([^)]*\))?\s+)*(?:(?:public|internal|package|private|fileprivate)\s+)?"
                    r"import\s+(?:(?:struct|class|enum|protocol|func|var|let|typealias)\s+)?(\w+)", re.M)


def package():
    out = subprocess.run(["swift", "package", "dump-package"], cwd=ROOT, check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def declared(target):
    names = set()
    for dep in target.get("dependencies", []):
        for kind in ("byName", "target", "product"):
            if kind in dep:
                names.add(dep[kind][0].replace("-", "_"))  # a module's name: keyline-sim is keyline_sim
    return names


def imports(directory):
    found = {}
    for folder, _, files in os.walk(directory):
        for name in files:
            if name.endswith(".swift"):
                path = os.path.join(folder, name)
                with open(path, encoding="utf-8") as f:
                    for module in IMPORT.findall(f.read()):
                        found.setdefault(module, path)
    return found


def source_dir(target):
    if target.get("path"):
        return os.path.join(ROOT, target["path"])
    base = "Tests" if target["type"] == "test" else "Sources"
    return os.path.join(ROOT, base, target["name"])


def read_layers(lines):
    """`Target: allowed ...` lines, lowest first -> (order, {target: set(allowed)})."""
    order, allowed = [], {}
    for line in lines:
        line = line.split("#")[0].strip()
        if not line:
            continue
        name, _, rest = line.partition(":")
        order.append(name.strip())
        allowed[name.strip()] = set(rest.split())
    return order, allowed


def check(targets, layers, sources):
    """targets: name -> (type, declared deps); layers: (order, allowed); sources: name -> {module:
    file}. Returns the breaches."""
    order, allowed = layers
    position = {name: index for index, name in enumerate(order)}
    problems = []
    own = set(targets)
    for name in order:
        for module in sorted(allowed[name] & set(position)):
            if position[module] >= position[name]:
                problems.append(f"{LAYERS_NAME}: {name} allows {module}, which is not listed above it")
    for name, (kind, deps) in sorted(targets.items()):
        if kind == "system":
            continue
        used = {m for m in sources.get(name, {}) if m not in PLATFORM and m != name}
        for module in sorted(used - deps):
            problems.append(f"{name}: imports {module} ({os.path.relpath(sources[name][module], ROOT)}) but does not declare it")
        for module in sorted(deps - used):
            # A test target names an executable it runs as a child process, so it is built first.
            runs_binary = kind == "test" and targets.get(module, ("",))[0] == "executable"
            if (name, module) not in PINNED_ONLY and not runs_binary:
                problems.append(f"{name}: declares {module} but no source imports it")
        if kind == "test":
            continue
        if name not in allowed:
            problems.append(f"{name}: not listed in {LAYERS_NAME}; add it where it belongs, with what it may import")
            continue
        for module in sorted(deps - allowed[name]):
            problems.append(f"{name}: depends on {module}, which its line in {LAYERS_NAME} does not allow")
    for root, banned in NEVER_IN.items():
        seen, stack = set(), [root]
        while stack:
            current = stack.pop()
            for module in targets.get(current, ("", set()))[1] & own:
                if module not in seen:
                    seen.add(module)
                    stack.append(module)
        for module in sorted(banned & seen):
            problems.append(f"{root}: links {module} (directly or through another target); it must not")
    return problems


def self_test():
    layers = read_layers(["A:", "B: A", "C: B", "Sim: A", "keyline: C"])
    targets = {"A": ("regular", set()), "B": ("regular", {"A"}), "C": ("regular", {"B"}),
               "Sim": ("regular", {"A"}), "keyline": ("executable", {"C"})}
    sources = {"B": {"A": "b.swift"}, "C": {"B": "c.swift"}, "Sim": {"A": "s.swift"}, "keyline": {"C": "k.swift"}}
    assert check(targets, layers, sources) == [], "a clean graph passes"
    upward = dict(targets, A=("regular", {"C"}))
    assert any("A: depends on C" in p for p in check(upward, layers, dict(sources, A={"C": "a.swift"})))
    # An edge to a lower layer that the line does not allow (C → A skips B) is refused too.
    skipping = dict(targets, C=("regular", {"A", "B"}))
    assert any("C: depends on A" in p for p in check(skipping, layers, dict(sources, C={"A": "c", "B": "c"})))
    assert any("imports Sim" in p for p in check(targets, layers, dict(sources, C={"B": "c", "Sim": "c"})))
    assert any("declares B but" in p for p in check(dict(targets, C=("regular", {"A", "B"})), read_layers(
        ["A:", "B: A", "C: A B", "Sim: A", "keyline: C"]), dict(sources, C={"A": "c"})))
    assert any("allows C, which is not listed above" in p for p in check(targets, read_layers(
        ["A: C", "B: A", "C: B", "Sim: A", "keyline: C"]), sources))
    global NEVER_IN
    saved, NEVER_IN = NEVER_IN, {"keyline": {"Sim"}}
    linked = dict(targets, C=("regular", {"B", "Sim"}))
    assert any("keyline: links Sim" in p for p in check(linked, read_layers(["A:", "B: A", "Sim: A", "C: B Sim", "keyline: C"]),
                                                        dict(sources, C={"B": "c", "Sim": "c"})))
    NEVER_IN = saved
    print("check-imports self-test: ok")


def main():
    if "--self-test" in sys.argv:
        self_test()
        return 0
    with open(LAYERS, encoding="utf-8") as f:
        layers = read_layers(f.readlines())
    manifest = package()
    targets, sources = {}, {}
    for target in manifest["targets"]:
        module = target["name"].replace("-", "_")
        targets[module] = (target["type"], declared(target))
        if target["type"] != "system":
            sources[module] = imports(source_dir(target))
    problems = check(targets, layers, sources)
    for problem in problems:
        print("layout: " + problem)
    if problems:
        print(f"layout: {len(problems)} breach(es) of the target layout (Tests/Layout/check-imports.py)")
        return 1
    print(f"layout: {len(targets)} targets, imports match declarations, every dependency allowed by layers.txt, keyline without the simulator")
    return 0


if __name__ == "__main__":
    sys.exit(main())
