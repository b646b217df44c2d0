#!/usr/bin/env python3
"""The include rules of docs/design.md ("Modules"), checked on every source file of
core/, ui/ and app/: each module may include only the modules listed for it, core/
and ui/runtime/ never include ImGui, GLFW or OpenGL, and a folder missing from the table fails (add
it here and to docs/design.md). usage: check_layers.py SOURCE_DIR"""
import os
import re
import sys

# module -> the modules its files may include ("core" is core/'s top level: error.h,
# tensor.h, rng.h). A module may always include itself.
CORE_NOT_TRAIN = {"core", "core/text", "core/model", "core/engine", "core/session", "core/serve"}
MAY_INCLUDE = {
    "core": set(),
    "core/text": {"core"},
    "core/model": {"core", "core/text"},
    "core/engine": {"core", "core/model"},
    "core/engine/cuda": {"core", "core/model", "core/engine"},
    "core/session": {"core", "core/text", "core/model", "core/engine"},
    "core/train": {"core", "core/text", "core/model"},
    # The block pool and scheduler are bookkeeping; only the baseline's bytes need the engine.
    "core/serve": {"core", "core/model", "core/engine", "core/session"},
    # ui/: state (plain views and pure rules) < look (theme, fonts, colours) < panels <
    # lesson < the frame (ui/app.cpp). The runtime (the worker threads, the loader, the
    # controller) reaches only the state it publishes; nothing that draws includes it.
    "ui/state": CORE_NOT_TRAIN,
    "ui/runtime": CORE_NOT_TRAIN | {"ui/state"},
    "ui/look": CORE_NOT_TRAIN | {"ui/state"},
    "ui/panels": CORE_NOT_TRAIN | {"ui/state", "ui/look"},
    "ui/lesson": CORE_NOT_TRAIN | {"ui/state", "ui/look", "ui/panels"},
    "ui": CORE_NOT_TRAIN | {"ui/state", "ui/look", "ui/panels", "ui/lesson"},
    "app": CORE_NOT_TRAIN | {"core/train", "ui", "ui/state", "ui/look", "ui/panels", "ui/lesson", "ui/runtime"},
}
# Folders whose files never draw: no ImGui, GLFW or GL (core/ and the UI's threads).
NO_UI_LIBS = ("core", "ui/runtime")
UI_LIBS = re.compile(r"#\s*include\s*[<\"](imgui|backends/imgui|GLFW/|GL/|stb_)")
LOCAL = re.compile(r'#\s*include\s*"([^"]+)"')
SOURCES = (".h", ".cpp", ".cu", ".cuh")


def main(root):
    errors = []
    for top in ("core", "ui", "app"):
        for d, _, files in os.walk(os.path.join(root, top)):
            module = os.path.relpath(d, root)
            for f in sorted(files):
                if not f.endswith(SOURCES):
                    continue
                path = os.path.join(module, f)
                if module not in MAY_INCLUDE:
                    errors.append(f"{path}: folder {module} is not in the module table "
                                  "(tests/check_layers.py, docs/design.md \"Modules\")")
                    continue
                allowed = MAY_INCLUDE[module] | {module}
                with open(os.path.join(root, path), encoding="utf-8") as src:
                    for n, line in enumerate(src, 1):
                        if module.startswith(NO_UI_LIBS) and UI_LIBS.match(line.strip()):
                            errors.append(f"{path}:{n}: {module} includes a UI library: {line.strip()}")
                        m = LOCAL.match(line.strip())
                        if not m or "/" not in m.group(1):
                            continue  # a file of the same folder, or a generated one
                        target = os.path.dirname(m.group(1))
                        if target not in allowed:
                            errors.append(f"{path}:{n}: {module} may not include {m.group(1)} "
                                          f"(it may include {', '.join(sorted(allowed))})")
    for e in errors:
        print(e)
    print(f"check_layers: {len(errors)} violation(s)")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "."))
