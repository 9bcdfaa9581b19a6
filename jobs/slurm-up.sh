#!/usr/bin/env bash
# Install, configure and start a one-node SLURM cluster on localhost (run as root). Idempotent:
# a second call with the cluster up only checks it. State, logs and PIDs live in $PIPELINE_SLURM_DIR.
set -euo pipefail

STATE_DIR="${PIPELINE_SLURM_DIR:-/tmp/pipeline-slurm}"
CONF=/etc/slurm/slurm.conf
MARK="# written by pipeline jobs/slurm-up.sh"
NODE="$(hostname -s)"

log() { echo "slurm-up: $*" >&2; }

[ "$(id -u)" = 0 ] || { log "must run as root (it installs packages and starts slurmctld, slurmd, munged)"; exit 1; }

PACKAGES="slurmctld slurmd slurm-client munge slurmdbd mariadb-server"
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v sbatch >/dev/null \
   || ! command -v munged >/dev/null || ! command -v slurmdbd >/dev/null || ! command -v mariadbd >/dev/null; then
  log "installing $PACKAGES"
  export DEBIAN_FRONTEND=noninteractive
  # shellcheck disable=SC2086
  apt-get install -y -q $PACKAGES >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null && apt-get install -y -q $PACKAGES >/dev/null; }
fi

if [ -f "$CONF" ] && ! grep -q "^$MARK" "$CONF"; then
  log "$CONF exists and was not written by this script: refusing to overwrite a real cluster's configuration"
  exit 1
fi

mkdir -p "$STATE_DIR"/{state,spool,log,run}
CPUS="$(nproc)"
MEM_MB="$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))"
NEW_CONF="$(cat <<CONFEOF
$MARK
ClusterName=pipeline
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=cred_expire=10
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2
ReturnToService=2
SlurmdParameters=config_overrides
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStorageEnforce=associations,limits,qos
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MinJobAge=300
MaxArraySize=4
KillWait=5
InactiveLimit=0
StateSaveLocation=$STATE_DIR/state
SlurmdSpoolDir=$STATE_DIR/spool
SlurmctldPidFile=$STATE_DIR/run/slurmctld.pid
SlurmdPidFile=$STATE_DIR/run/slurmd.pid
SlurmctldLogFile=$STATE_DIR/log/slurmctld.log
SlurmdLogFile=$STATE_DIR/log/slurmd.log
GresTypes=gpu
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MB Gres=gpu:2 State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
CONFEOF
)"
alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# Two GPUs that SLURM counts and hands out (CUDA_VISIBLE_DEVICES per job) but that are not there: two
# character devices stand in for theirs (slurmd drops a GPU without one); torch in the jobs sees no GPU.
GRES_CONF=/etc/slurm/gres.conf
if [ -f "$GRES_CONF" ] && ! grep -q "^$MARK" "$GRES_CONF"; then
  log "$GRES_CONF exists and was not written by this script: refusing to overwrite it"
  exit 1
fi
NEW_GRES="$(printf '%s\nNodeName=%s Name=gpu File=/dev/null\nNodeName=%s Name=gpu File=/dev/zero' "$MARK" "$NODE" "$NODE")"
if [ ! -f "$GRES_CONF" ] || [ "$(cat "$GRES_CONF")" != "$NEW_GRES" ]; then
  printf '%s\n' "$NEW_GRES" > "$GRES_CONF"
  if alive "$STATE_DIR/run/slurmd.pid"; then kill "$(cat "$STATE_DIR/run/slurmd.pid")"; sleep 1; fi
fi

# Accounting, so that sacct, accounts and QOS limits are real: MariaDB (its data in $STATE_DIR) and slurmdbd.
DBD_CONF=/etc/slurm/slurmdbd.conf
NEW_DBD_CONF="$(cat <<DBDEOF
$MARK
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=root
StorageLoc=slurm_acct_db
PidFile=$STATE_DIR/run/slurmdbd.pid
LogFile=$STATE_DIR/log/slurmdbd.log
DBDEOF
)"
if [ -f "$DBD_CONF" ] && ! grep -q "^$MARK" "$DBD_CONF"; then
  log "$DBD_CONF exists and was not written by this script: refusing to overwrite it"
  exit 1
fi
if [ ! -f "$DBD_CONF" ] || [ "$(cat "$DBD_CONF")" != "$NEW_DBD_CONF" ]; then
  printf '%s\n' "$NEW_DBD_CONF" > "$DBD_CONF"
  chmod 600 "$DBD_CONF"
  if alive "$STATE_DIR/run/slurmdbd.pid"; then kill "$(cat "$STATE_DIR/run/slurmdbd.pid")"; sleep 1; fi
fi

if [ ! -f "$CONF" ] || [ "$(cat "$CONF")" != "$NEW_CONF" ]; then
  printf '%s\n' "$NEW_CONF" > "$CONF"
  for daemon in slurmd slurmctld; do  # ours (the marked configuration): restarted below on the new one
    if alive "$STATE_DIR/run/$daemon.pid"; then
      kill "$(cat "$STATE_DIR/run/$daemon.pid")"
      for _ in $(seq 100); do alive "$STATE_DIR/run/$daemon.pid" || break; sleep 0.1; done
      log "$daemon stopped: its configuration changed"
    fi
  done
fi

if ! alive "$STATE_DIR/run/munged.pid"; then
  mkdir -p /run/munge /var/lib/munge /var/log/munge
  chown munge:munge /run/munge /var/lib/munge /var/log/munge /etc/munge
  [ -s /etc/munge/munge.key ] || { dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null; }
  chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
  runuser -u munge -- munged --pid-file=/run/munge/munged.pid
  for _ in $(seq 50); do [ -s /run/munge/munged.pid ] && break; sleep 0.1; done
  cp /run/munge/munged.pid "$STATE_DIR/run/munged.pid"
  log "munged started (pid $(cat "$STATE_DIR/run/munged.pid"))"
fi
if ! alive "$STATE_DIR/run/mariadb.pid"; then
  mkdir -p "$STATE_DIR/mysql" /run/mysqld
  if [ ! -d "$STATE_DIR/mysql/mysql" ]; then
    mariadb-install-db --user=root --datadir="$STATE_DIR/mysql" >/dev/null 2>&1
  fi
  nohup mariadbd --user=root --datadir="$STATE_DIR/mysql" --socket=/run/mysqld/mysqld.sock \
    --pid-file="$STATE_DIR/run/mariadb.pid" --skip-networking --log-error="$STATE_DIR/log/mariadb.log" \
    >/dev/null 2>&1 &
  for _ in $(seq 100); do [ -S /run/mysqld/mysqld.sock ] && alive "$STATE_DIR/run/mariadb.pid" && break; sleep 0.1; done
  log "mariadb started (pid $(cat "$STATE_DIR/run/mariadb.pid"))"
fi
if ! alive "$STATE_DIR/run/slurmdbd.pid"; then
  slurmdbd
  for _ in $(seq 100); do alive "$STATE_DIR/run/slurmdbd.pid" && break; sleep 0.1; done
  for _ in $(seq 100); do sacctmgr -n list cluster >/dev/null 2>&1 && break; sleep 0.2; done
  log "slurmdbd started (pid $(cat "$STATE_DIR/run/slurmdbd.pid"))"
fi
# the cluster, an account for root, and a QOS that allows two queued jobs (the tests' QOS refusal)
sacctmgr -i -Q add cluster pipeline >/dev/null 2>&1 || true
sacctmgr -i -Q add account lab cluster=pipeline >/dev/null 2>&1 || true
sacctmgr -i -Q add qos two MaxSubmitJobsPerUser=2 >/dev/null 2>&1 || true
sacctmgr -i -Q add user root account=lab cluster=pipeline >/dev/null 2>&1 || true
sacctmgr -i -Q modify user root set qos=normal,two >/dev/null 2>&1 || true

if ! alive "$STATE_DIR/run/slurmctld.pid"; then
  slurmctld
  for _ in $(seq 100); do alive "$STATE_DIR/run/slurmctld.pid" && break; sleep 0.1; done
  log "slurmctld started (pid $(cat "$STATE_DIR/run/slurmctld.pid"))"
fi
if ! alive "$STATE_DIR/run/slurmd.pid"; then
  slurmd
  for _ in $(seq 100); do alive "$STATE_DIR/run/slurmd.pid" && break; sleep 0.1; done
  log "slurmd started (pid $(cat "$STATE_DIR/run/slurmd.pid"))"
fi

for _ in $(seq 120); do
  state="$(sinfo -h -n "$NODE" -o '%t' 2>/dev/null || true)"
  case "$state" in
    idle|mix|alloc) log "node $NODE is $state: cluster up (logs in $STATE_DIR/log)"; exit 0 ;;
    down*|drain*) scontrol update nodename="$NODE" state=resume >/dev/null 2>&1 || true ;;
  esac
  sleep 0.5
done
log "node $NODE did not become idle in 60 s (state: ${state:-unknown}); see $STATE_DIR/log"
exit 1
