#!/usr/bin/env bash
# Stop the daemons jobs/slurm-up.sh started, by the PIDs it recorded; nothing else is touched.
set -uo pipefail

STATE_DIR="${PIPELINE_SLURM_DIR:-/tmp/pipeline-slurm}"
for name in slurmd slurmctld slurmdbd mariadb munged; do
  pidfile="$STATE_DIR/run/$name.pid"
  [ -f "$pidfile" ] || continue
  pid="$(cat "$pidfile")"
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    echo "slurm-down: stopped $name (pid $pid)" >&2
  fi
  rm -f "$pidfile"
done
