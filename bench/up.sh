# Sourced by the harnesses: starts `ims up` the same way for each of them. The server picks its
# own free ports (`--port 0`, kept across a restart while they stay free), so that no harness
# guesses a port whose neighbours (the instances' ports) may be taken; the harness then waits on
# the up.json this very process wrote and on readiness, and stops loudly when either does not
# come, with the end of the server's log. Needs `$ims`.

# up_start DIR LOG [VAR=value ...]: `ims up --plain-http` on core ${SERVER_CORE:-0}, the
# variables in its environment; sets up_pid once it is ready.
up_start() {
  local dir=$1 log=$2
  shift 2
  env "$@" IMS_LOG=warn taskset -c "${SERVER_CORE:-0}" "$ims" up --data-dir "$dir" --port 0 --plain-http >>"$log" 2>&1 &
  up_pid=$!
  local deadline=$((SECONDS + ${UP_TIMEOUT:-120}))
  while :; do
    if [ -f "$dir/up.json" ] && [ "$(up_field "$dir" pid 2>/dev/null)" = "$up_pid" ] &&
      curl -sf "$(up_field "$dir" ims_url)/health/ready" >/dev/null; then
      return 0
    fi
    if ! kill -0 "$up_pid" 2>/dev/null; then
      echo "ims up exited before it was ready; its log ends with:" >&2
      tail -20 "$log" >&2
      exit 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "ims up was not ready within ${UP_TIMEOUT:-120} s; its log ends with:" >&2
      tail -20 "$log" >&2
      exit 1
    fi
    sleep 0.1
  done
}

# up_field DIR PATH: a value of DIR/up.json, PATH like `ims_url` or `instances.0.url`.
up_field() {
  python3 - "$1/up.json" "$2" <<'PY'
import json, sys
value = json.load(open(sys.argv[1]))
for part in sys.argv[2].split("."):
    value = value[int(part)] if isinstance(value, list) else value[part]
print(value)
PY
}

# up_port URL: the port of an address.
up_port() { python3 -c 'import sys, urllib.parse; print(urllib.parse.urlsplit(sys.argv[1]).port)' "$1"; }
