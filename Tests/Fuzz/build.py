#!/usr/bin/env python3
"""Builds keyline's libFuzzer targets (`make fuzz`), not part of `make test`.

keyline's own modules are recompiled with `-sanitize=fuzzer` (coverage for libFuzzer), each with
exactly the flags SwiftPM used for the debug build (read from .build/debug.yaml); third-party
packages are linked from that debug build uninstrumented. Each harness in this folder
(`fuzz-<name>.swift`, defining LLVMFuzzerTestOneInput) becomes .build/fuzz/fuzz-<name>.
Usage: build.py [BUILD_DIR]   (run after `swift build`)"""
import glob, json, os, re, subprocess, sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIRST_PARTY = ["FailurePolicy", "HexEncoding", "LocalFiles", "DeviceKeys", "ParticlePlatform", "DeviceBus", "DFU", "USB", "ParticleDevice",
               "Age", "Escrow", "EscrowS3", "Registry", "Provisioning", "RMABench", "Audit", "CommandReporting"]
OUT = os.path.join(ROOT, ".build", "fuzz")
DROP_WITH_VALUE = {"-output-file-map", "-index-store-path", "-emit-module-path", "-module-cache-path", "-emit-objc-header-path"}
DROP = {"-emit-dependencies", "-incremental", "-c", "-serialize-diagnostics", "-enable-batch-mode", "-Onone", "-g",
        "-DDEBUG", "-j2", "-enable-testing", "-emit-module", "-parse-as-library", "-parseable-output", "-emit-objc-header"}

def commands():
    debug_yaml = os.path.join(ROOT, ".build", "debug.yaml")
    entries, name = {}, None
    for line in open(debug_yaml):
        m = re.match(r'\s+"(C\.[^"]+)":', line)
        if m: name = m.group(1)
        elif name and line.strip().startswith("args: "):
            entries[name] = json.loads(line.strip()[len("args: "):])
    return entries

def run(cmd):
    print("  " + " ".join(os.path.basename(c) if c.endswith(".swift") else c for c in cmd[:6]) + " …", flush=True)
    subprocess.run(cmd, check=True)

def main():
    entries = commands()
    os.makedirs(os.path.join(OUT, "modules"), exist_ok=True)
    triple = next(m.group(1) for k in entries for m in [re.fullmatch(r"C\.FailurePolicy-(.+)-debug\.module", k)] if m)
    modules_dir = next(a for a in entries[f"C.FailurePolicy-{triple}-debug.module"] if a.endswith("/Modules"))
    clang_flags, newest = [], 0.0
    for module in FIRST_PARTY:
        args = entries[f"C.{module}-{triple}-debug.module"]
        flags, skip, keep = [], False, False
        for a in args[1:]:
            if keep: keep = False; flags.append(a); continue  # a clang flag, whatever it is
            if a == "-Xcc": keep = True; flags.append(a); continue
            if skip: skip = False; continue
            if a in DROP_WITH_VALUE: skip = True; continue
            if a in DROP: continue
            if a == modules_dir: a = os.path.join(OUT, "modules")  # instrumented modules first …
            flags.append(a)
        flags += ["-I", modules_dir]  # … then the debug build's third-party modules
        lib = os.path.join(OUT, f"lib{module}.a")
        stamp = os.path.join(OUT, f"lib{module}.stamp")
        sources = [l.strip() for l in open(next(a[1:] for a in args if a.startswith("@")))]
        newest = max([newest] + [os.path.getmtime(s) for s in sources])  # this module's and those below it
        if not (os.path.exists(stamp) and os.path.getmtime(stamp) > newest):
            run([args[0], "-parse-as-library", "-O", "-enable-testing", "-sanitize=fuzzer", "-emit-library", "-static",
                 "-o", lib, "-emit-module", "-emit-module-path", os.path.join(OUT, "modules", module + ".swiftmodule")] + flags)
            open(stamp, "w").close()
        clang_flags = [f for f in flags if f != "-module-name" and f != module and not f.startswith("@")]
    link = entries[f"C.keyline-{triple}-debug.exe"]
    objects_list = next(a[1:] for a in link if a.startswith("@"))
    first_party_dirs = tuple(f"/{m}.build/" for m in FIRST_PARTY + ["keyline", "keyline_sim", "Simulator"])
    objects = [o.strip() for o in open(objects_list) if not any(d in o for d in first_party_dirs)]
    third_party = os.path.join(OUT, "third-party.LinkFileList")
    with open(third_party, "w") as f: f.write("\n".join(objects) + "\n")
    libraries = [a for a in link if a.startswith("-l") or a.startswith("-L/")]
    wanted = sys.argv[1:]
    for harness in sorted(glob.glob(os.path.join(ROOT, "Tests", "Fuzz", "fuzz-*.swift"))):
        name = os.path.basename(harness)[:-len(".swift")]
        if wanted and name not in wanted: continue
        binary = os.path.join(OUT, name)
        if os.path.exists(binary) and os.path.getmtime(binary) > max(newest, os.path.getmtime(harness)): continue
        run([link[0], "-parse-as-library", "-O", "-sanitize=fuzzer", "-module-name", name.replace("-", "_"), harness,
             "-o", os.path.join(OUT, name)] + clang_flags +
            [os.path.join(OUT, f"lib{m}.a") for m in reversed(FIRST_PARTY)] + ["@" + third_party] + libraries + ["-lm", "-lz"])

main()
