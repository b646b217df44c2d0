#!/bin/bash
# The window's speculative-mode, --weights, --mla and --serve options (docs/bad-inputs.md, "The window"): each bad
# input gives its exit code and one line on stderr naming the option. All of them fail
# before a window opens, so no display is needed.
# usage: window_bad_inputs.sh path/to/kvscope
set -u
app="$1"
fail=0
check() {  # expected_code needle args...
    local want="$1" needle="$2"
    shift 2
    local err code lines
    err=$("$app" "$@" 2>&1 >/dev/null)
    code=$?
    lines=$(printf '%s\n' "$err" | wc -l)
    if [ "$code" != "$want" ] || [ "$lines" != 1 ] || [[ "$err" != kvscope:* ]] || [[ "$err" != *"$needle"* ]]; then
        echo "FAIL: kvscope $*: exit $code (want $want), stderr ($lines lines): $err (want one line with: $needle)"
        fail=1
    else
        echo "ok: kvscope $* -> $code: $err"
    fi
}
check 2 "--draft-k" --draft-k 0
check 2 "--draft-k" --draft-k 17
check 2 "--window is not supported with it (drop --window)" --draft-k 2 --window 4
check 2 "--kv-dtype is not supported with it (drop --kv-dtype)" --draft random:tiny --kv-dtype int8
check 2 "--no-cache is not supported with it (drop --no-cache)" --draft-k 2 --no-cache
check 2 "--compare is not supported with it (drop --compare)" --draft-k 2 --compare
check 1 "kvscope: --draft: model '/nonexistent/draft': no such folder" --draft /nonexistent/draft
check 1 "kvscope: --draft: vocabularies differ: draft random:tiny:0 and target" --draft random:tiny
check 2 "kvscope: --weights: 'f8' is not a weight type (use f32, f16 or bf16)" --weights f8
check 2 "kvscope: --mla: 'squash' is not an MLA mode (use expand or absorbed)" --mla squash
check 2 "kvscope: --mla: model 'random:tiny:0' caches K and V, not a latent" --model random:tiny --mla absorbed
check 2 "--mla is not supported with it (drop --mla)" --draft-k 2 --mla absorbed
check 2 "--weights is not supported with it (drop --weights)" --draft-k 2 --weights f16
check 2 "kvscope: --scaling-weights: needs --scaling" --scaling-weights
check 2 "kvscope: --preset: needs --serve" --preset class
check 2 "kvscope: --requests: needs --serve" --requests /nonexistent.jsonl
check 2 "kvscope: --preset: 'nope' is not a preset (class, forks, small-pool)" --serve --preset nope
check 2 "kvscope: --preset: give a preset or --requests FILE, not both" --serve --preset class --requests x.jsonl
check 2 "kvscope: --serve: the lesson has its own serving chapters" --serve --lesson
check 1 "/nonexistent.jsonl" --serve --requests /nonexistent.jsonl
check 1 "kvscope: --serve: the requests are text, and this model has no tokenizer" --serve --model random:tiny
exit $fail
