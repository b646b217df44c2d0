#!/usr/bin/env bash
# Window soak (hardening issue): starts kvscope under Xvfb and sends SECONDS of
# random keys (space, Right, Left, c, p, r, s, F1, ctrl+plus, ctrl+minus), clicks
# at random points and window resizes with xdotool. Passes when kvscope is still
# running at the end and its output holds no assertion or sanitizer failure.
#   tests/soak_window.sh [KVSCOPE_BINARY] [SECONDS]     (defaults: build-ui/app/kvscope, 60)
# KVSCOPE_SOAK_ARGS: extra arguments for kvscope (default: none, the bundled model).
# KVSCOPE_SOAK_SEED: seed of the random actions (default: the time).
# Not part of scripts/test (it takes a minute); see docs/bad-inputs.md.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

if [ "${1:-}" != "--inner" ]; then
  bin="$(realpath "${1:-$root/build-ui/app/kvscope}")"
  secs="${2:-60}"
  [ -x "$bin" ] || { echo "soak_window: no kvscope at $bin (build with -DKVSCOPE_UI=ON)" >&2; exit 2; }
  for t in xvfb-run xdotool; do
    command -v "$t" >/dev/null || { echo "soak_window: $t is not installed (scripts/deps.sh installs it)" >&2; exit 2; }
  done
  exec xvfb-run -a -s "-screen 0 1600x1000x24" bash "${BASH_SOURCE[0]}" --inner "$bin" "$secs"
fi

bin="$2"
secs="$3"
log="$(mktemp /tmp/kvscope-soak.XXXXXX.log)"
seed="${KVSCOPE_SOAK_SEED:-$(date +%s)}"
RANDOM="$seed"
echo "soak_window: $bin for ${secs}s on $DISPLAY, seed $seed, log $log" >&2
# shellcheck disable=SC2086
"$bin" ${KVSCOPE_SOAK_ARGS:-} >"$log" 2>&1 &
pid=$!

wid=""
for _ in $(seq 1 300); do
  wid="$(xdotool search --onlyvisible --pid "$pid" 2>/dev/null | head -n 1 || true)"
  [ -n "$wid" ] && break
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.2
done
if [ -z "$wid" ]; then
  echo "soak_window: FAIL: no kvscope window appeared" >&2
  cat "$log" >&2
  kill "$pid" 2>/dev/null || true
  exit 1
fi

keys=(space Right Left c p r s F1 ctrl+plus ctrl+minus)
n_keys=0 n_clicks=0 n_resizes=0
end=$((SECONDS + secs))
while [ "$SECONDS" -lt "$end" ]; do
  kill -0 "$pid" 2>/dev/null || break
  xdotool windowfocus "$wid" 2>/dev/null || true
  w=1600 h=1000
  if geo="$(xdotool getwindowgeometry "$wid" 2>/dev/null)"; then
    size="$(sed -n 's/.*Geometry: \([0-9]*\)x\([0-9]*\).*/\1 \2/p' <<<"$geo")"
    [ -n "$size" ] && read -r w h <<<"$size"
  fi
  r=$((RANDOM % 10))
  if [ "$r" -lt 6 ]; then
    xdotool key --clearmodifiers "${keys[RANDOM % ${#keys[@]}]}" 2>/dev/null || true
    n_keys=$((n_keys + 1))
  elif [ "$r" -lt 9 ]; then
    xdotool mousemove --window "$wid" $((RANDOM % (w > 1 ? w : 1))) $((RANDOM % (h > 1 ? h : 1))) click 1 2>/dev/null || true
    n_clicks=$((n_clicks + 1))
  else
    xdotool windowsize "$wid" $((400 + RANDOM % 1200)) $((300 + RANDOM % 700)) 2>/dev/null || true
    n_resizes=$((n_resizes + 1))
  fi
  sleep "0.0$((RANDOM % 10))"
done

status=0
if kill -0 "$pid" 2>/dev/null; then
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
else
  wait "$pid" && rc=0 || rc=$?
  echo "soak_window: FAIL: kvscope exited early (exit $rc)" >&2
  status=1
fi
if grep -E -q 'Assertion|assertion|AddressSanitizer|LeakSanitizer|runtime error:|terminate called|Segmentation' "$log"; then
  echo "soak_window: FAIL: kvscope reported:" >&2
  grep -E 'Assertion|assertion|AddressSanitizer|LeakSanitizer|runtime error:|terminate called|Segmentation' "$log" | head -n 10 >&2
  status=1
fi
echo "soak_window: $n_keys keys, $n_clicks clicks, $n_resizes resizes in ${secs}s: $([ $status -eq 0 ] && echo PASS || echo FAIL)" >&2
[ $status -eq 0 ] && rm -f "$log"
exit $status
