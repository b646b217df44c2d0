#!/usr/bin/env bash
# Installs the build into a fresh prefix and checks that the installed kvscope-cli
# finds the installed bundled model (not the source tree) with no --model argument,
# from an unrelated working directory, and continues the lesson's prompt.
# usage: install_check.sh BUILD_DIR
set -euo pipefail
build="$1"
prefix="$(mktemp -d "${TMPDIR:-/tmp}/kvscope-install.XXXXXX")"
trap 'rm -rf "$prefix"' EXIT
cmake --install "$build" --prefix "$prefix" >/dev/null
test -f "$prefix/share/kvscope/models/tiny-gpt/model.safetensors" || { echo "model not installed under $prefix/share/kvscope" >&2; exit 1; }
test -f "$prefix/share/kvscope/models/tiny-draft/model.safetensors" || { echo "draft model not installed under $prefix/share/kvscope" >&2; exit 1; }
spec="$(cd / && env -u KVSCOPE_MODEL_DIR "$prefix/bin/kvscope-cli" generate --prompt "Python is a programming" --new 6 \
        --draft "$prefix/share/kvscope/models/tiny-draft" --draft-k 4 --json 2>/dev/null)"
out="$(cd / && env -u KVSCOPE_MODEL_DIR "$prefix/bin/kvscope-cli" generate --prompt "Python is a programming" --new 6 --json 2>/dev/null)"
python3 - "$prefix" "$out" "$spec" <<'PY'
import json, os, sys
prefix, out, spec = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
assert spec["tokens"] == out["new_ids"], f"speculative {spec['tokens']} != plain {out['new_ids']}"
assert os.path.realpath(spec["draft"]["path"]).startswith(os.path.realpath(prefix))
path = os.path.realpath(out["model"]["path"])
assert path.startswith(os.path.realpath(prefix)), f"installed kvscope-cli used {path}, not the installed model"
first = out["steps"][0]["next_token"]
assert first == "language", f"first new token is {first!r}, expected 'language'"
print("installed kvscope-cli uses", path, "and continues with", " ".join(s["next_token"] for s in out["steps"]))
PY
