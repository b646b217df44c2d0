#!/usr/bin/env bash
# Regenerates tests/data/tokenizer_json/expected.json with node and npm:
# fetches the two tokenizer.json files (tests/fetch_tokenizer_json.sh) and
# @huggingface/tokenizers@0.2.0, and runs make_expected.mjs.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
bash "$here/../../fetch_tokenizer_json.sh" "$tmp/files"
(cd "$tmp" && npm pack @huggingface/tokenizers@0.2.0 --silent >/dev/null && tar -xzf huggingface-tokenizers-0.2.0.tgz)
node "$here/make_expected.mjs" "$tmp/package/dist/tokenizers.mjs" "$tmp/files" >"$here/expected.json.new"
mv "$here/expected.json.new" "$here/expected.json"
echo "wrote $here/expected.json" >&2
