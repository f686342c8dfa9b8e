#!/usr/bin/env bash
# A shared MLflow tracking server for cluster runs: jobs on other nodes log to it over HTTP.
#
#   bash scripts/mlflow_server.sh start    # prints: export MLFLOW_TRACKING_URI=http://<host>:<port>
#   bash scripts/mlflow_server.sh status
#   bash scripts/mlflow_server.sh stop
#
# The server has no authentication: whoever reaches its port can read, create and delete experiments and runs.
# It therefore listens on 127.0.0.1 unless told an address. For compute nodes to reach it, listen on a private
# network only (ADABENCH_MLFLOW_HOST=<that interface's address>), or keep 127.0.0.1 and put a reverse proxy with
# authentication and TLS in front (nginx `auth_basic`; or MLflow's own `mlflow server --app-name basic-auth`),
# then give jobs MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD. See docs/reliability.md, "Security notes".
#
# Settings (environment):
#   ADABENCH_MLFLOW_BACKEND    store URI; default sqlite:///<repo>/results/mlflow-server/server.db
#                              (PostgreSQL works too: postgresql://user:password@dbhost:5432/mlflow; the password
#                              is never printed)
#   ADABENCH_MLFLOW_ARTIFACTS  where the server keeps artifacts; default <repo>/results/mlflow-server/artifacts
#   ADABENCH_MLFLOW_HOST       interface to listen on; default 127.0.0.1 (this machine only)
#   ADABENCH_MLFLOW_PORT       default 5000
#   ADABENCH_MLFLOW_PUBLIC     the host name jobs use to reach it; default the listening address, or
#                              $(hostname -f) when it listens on all interfaces
#   ADABENCH_MLFLOW_ALLOWED_HOSTS  Host headers the server accepts (MLflow 3 rejects others with 403);
#                              default the public name, $(hostname), localhost and 127.0.0.1, with and without :port
#   ADABENCH_MLFLOW_WAIT       seconds to wait for the server to answer; default 90
#   ADABENCH_MLFLOW_WORKERS    server processes (mlflow server --workers); default 4, MLflow's own. Each imports
#                              MLflow on start (about 2 s of a core): 1 suits a laptop or a test
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
mlflow_bin=${ADABENCH_MLFLOW_BIN:-$repo/.venv/bin/mlflow}
[ -x "$mlflow_bin" ] || mlflow_bin=$(command -v mlflow)
state_dir=$repo/results/mlflow-server
backend=${ADABENCH_MLFLOW_BACKEND:-sqlite:///$state_dir/server.db}
artifacts=${ADABENCH_MLFLOW_ARTIFACTS:-$state_dir/artifacts}
host=${ADABENCH_MLFLOW_HOST:-127.0.0.1}
port=${ADABENCH_MLFLOW_PORT:-5000}
if [ "$host" = 0.0.0.0 ] || [ "$host" = "::" ]; then
  public=${ADABENCH_MLFLOW_PUBLIC:-$(hostname -f 2>/dev/null || hostname)}
else
  public=${ADABENCH_MLFLOW_PUBLIC:-$host}
fi
# the store URI as it may be shown: without the user and password of a database URI
shown_backend=$(printf '%s' "$backend" | sed -E 's#://[^/@]*@#://***@#')
wait_s=${ADABENCH_MLFLOW_WAIT:-90}
workers=${ADABENCH_MLFLOW_WORKERS:-4}
pidfile=$state_dir/server-$port.pid
logfile=$state_dir/server-$port.log

default_allowed_hosts() {
  local names=("$public" "$(hostname)" localhost 127.0.0.1) list=""
  for name in "${names[@]}"; do list+="$name,$name:$port,"; done
  echo "${list%,}"
}
allowed=${ADABENCH_MLFLOW_ALLOWED_HOSTS:-$(default_allowed_hosts)}

running() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

answers() {
  "$repo/.venv/bin/python" - "$1" <<'PY' 2>/dev/null
import sys, urllib.request
urllib.request.urlopen(sys.argv[1] + "/health", timeout=2).read()
PY
}

start() {
  mkdir -p "$state_dir" "$artifacts"
  local url="http://$public:$port"
  if running; then
    echo "already running (pid $(cat "$pidfile")); export MLFLOW_TRACKING_URI=$url"
    return
  fi
  # a new session, so the server outlives this shell and `stop` can end its whole process group
  setsid "$mlflow_bin" server --backend-store-uri "$backend" --artifacts-destination "$artifacts" \
    --host "$host" --port "$port" --workers "$workers" --allowed-hosts "$allowed" >"$logfile" 2>&1 < /dev/null &
  echo $! >"$pidfile"
  local local_url="http://127.0.0.1:$port" waited=0
  until answers "$local_url"; do
    if ! running; then
      echo "mlflow server exited; its log ($logfile):" >&2
      tail -n 30 "$logfile" >&2
      rm -f "$pidfile"
      exit 1
    fi
    if [ "$waited" -ge "$wait_s" ]; then
      echo "mlflow server did not answer within ${wait_s}s; log: $logfile" >&2
      stop
      exit 1
    fi
    sleep 1
    waited=$((waited + 1))
  done
  echo "mlflow server up after ${waited}s (pid $(cat "$pidfile"), listening on $host:$port, store $shown_backend, log $logfile)"
  echo "export MLFLOW_TRACKING_URI=$url"
}

stop() {
  if running; then
    local pid
    pid=$(cat "$pidfile")
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid"
    for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -KILL -- "-$pid" 2>/dev/null || true
    echo "mlflow server stopped"
  else
    echo "mlflow server not running"
  fi
  rm -f "$pidfile"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) if running; then echo "running (pid $(cat "$pidfile")) on port $port"; else echo "not running"; exit 3; fi ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
