#!/usr/bin/env bash
# scripts/slurm_cluster.sh -- a real one-node SLURM cluster on this machine,
# for the test suite and for trying the SLURM workflow profile on a laptop.
#
#   sudo bash scripts/slurm_cluster.sh up      # start munged, slurmctld, slurmd; wait for "idle"
#   sudo bash scripts/slurm_cluster.sh status  # daemons, sinfo, squeue (exit 0 = up, 3 = down)
#   sudo bash scripts/slurm_cluster.sh down    # cancel jobs, stop every daemon it started
#   sudo bash scripts/slurm_cluster.sh down --purge   # ... and delete the state directory
#
# `up` and `down` are idempotent: calling either twice is harmless.
#
# Requirements: Debian/Ubuntu packages `slurm-wlm` (slurmctld, slurmd, client
# commands) and `munge`; root (daemons run as SlurmUser=root, and the config
# is linked to /etc/slurm/slurm.conf). No systemd, cgroups or slurmdbd needed.
#
# Why /etc/slurm/slurm.conf: inside a job, the snakemake slurm plugin's jobstep
# clears every SLURM_* variable (SLURM_CONF included) before calling `srun`, so
# the client commands must find the config at the compiled-in default path.
# `up` links it there (and refuses to replace a file it did not create unless
# ADABENCH_SLURM_FORCE=1, which backs the old one up; `down` restores it).
#
# Settings (environment variables, defaults in brackets):
#   ADABENCH_SLURM_DIR          state/spool/log/config directory [/tmp/adabench-slurm]
#   ADABENCH_SLURM_PARTITION    name of the (default) partition [debug]
#   ADABENCH_SLURM_MEM_PER_CPU  DefMemPerCPU in MB, used by jobs without --mem [1024]
#   ADABENCH_SLURM_GPUS         number of pretend GPUs (gres gpu, File=/dev/null); 0 = none [1]
#   ADABENCH_SLURM_MIN_JOB_AGE  MinJobAge in s: how long squeue still shows a finished job. The
#                               plugin's squeue status query needs it >= 3 x its
#                               slurm-init-seconds-before-status-checks (else it falls back to
#                               sacct, which has no database here) and > its longest poll
#                               interval (180 s), or a finished job is never seen to finish [300]
#   ADABENCH_SLURM_SELECT_PARAMS SelectTypeParameters [CR_Core_Memory]
#   ADABENCH_SLURM_REAL_MEMORY  RealMemory of the node in MB [from `slurmd -C`]
#   ADABENCH_SLURM_CPUS         CPUs the node advertises [from `slurmd -C`]; more than the machine
#                               has lets that many 1-CPU jobs run at once (they share the real
#                               cores; sets SlurmdParameters=config_overrides, one core per CPU)
#   ADABENCH_SLURM_CLUSTER      ClusterName [adabench]
#   ADABENCH_SLURM_CTLD_PORT / ADABENCH_SLURM_SLURMD_PORT  ports [6817 / 6818]
#   ADABENCH_SLURM_TIMEOUT      seconds `up` waits for the node to become idle [60]
#   ADABENCH_SLURM_ETC_CONF     where the client commands look for the config [/etc/slurm/slurm.conf]
#   ADABENCH_SLURM_FORCE        1 = back up and replace a foreign ETC_CONF [0]
#   MUNGE_KEY                   munge key, created if missing [/etc/munge/munge.key]
set -euo pipefail

DIR=${ADABENCH_SLURM_DIR:-/tmp/adabench-slurm}
PARTITION=${ADABENCH_SLURM_PARTITION:-debug}
MEM_PER_CPU=${ADABENCH_SLURM_MEM_PER_CPU:-1024}
GPUS=${ADABENCH_SLURM_GPUS:-1}
MIN_JOB_AGE=${ADABENCH_SLURM_MIN_JOB_AGE:-300}
SELECT_PARAMS=${ADABENCH_SLURM_SELECT_PARAMS:-CR_Core_Memory}
REAL_MEMORY=${ADABENCH_SLURM_REAL_MEMORY:-}
CPUS=${ADABENCH_SLURM_CPUS:-}
CLUSTER=${ADABENCH_SLURM_CLUSTER:-adabench}
CTLD_PORT=${ADABENCH_SLURM_CTLD_PORT:-6817}
SLURMD_PORT=${ADABENCH_SLURM_SLURMD_PORT:-6818}
TIMEOUT=${ADABENCH_SLURM_TIMEOUT:-60}
ETC_CONF=${ADABENCH_SLURM_ETC_CONF:-/etc/slurm/slurm.conf}
FORCE=${ADABENCH_SLURM_FORCE:-0}
MUNGE_KEY=${MUNGE_KEY:-/etc/munge/munge.key}

ETC_DIR=$DIR/etc
CONF=$ETC_DIR/slurm.conf
GRES_CONF=$ETC_DIR/gres.conf
LOG_DIR=$DIR/log
RUN_DIR=$DIR/run
STATE_DIR=$DIR/state
SPOOL_DIR=$DIR/spool
CTLD_PID=$RUN_DIR/slurmctld.pid
SLURMD_PID=$RUN_DIR/slurmd.pid
CTLD_LOG=$LOG_DIR/slurmctld.log
SLURMD_LOG=$LOG_DIR/slurmd.log
# munged uses the system-wide socket: slurm's auth/munge plugin looks there.
MUNGE_RUN=/run/munge
MUNGE_PID=$MUNGE_RUN/munged.pid
MUNGE_LOG=$LOG_DIR/munged.log
# present only when *this script* started munged (then `down` stops it)
MUNGE_OURS=$RUN_DIR/munged.started-by-adabench
ETC_BACKUP=$ETC_CONF.adabench-backup

export SLURM_CONF=$CONF

log() { printf '[slurm_cluster] %s\n' "$*" >&2; }
die() { printf '[slurm_cluster] ERROR: %s\n' "$*" >&2; exit 1; }

usage() {
    sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'
    exit "${1:-2}"
}

need_root() {
    [[ $(id -u) -eq 0 ]] || die "must run as root (try: sudo bash $0 $*)"
}

need_cmds() {
    local c missing=()
    for c in slurmctld slurmd scontrol sinfo squeue scancel munged munge unmunge; do
        command -v "$c" >/dev/null 2>&1 || missing+=("$c")
    done
    ((${#missing[@]} == 0)) ||
        die "missing commands: ${missing[*]} (install: apt-get install slurm-wlm munge)"
}

# running PID -> the process exists and is not a zombie
running() {
    kill -0 "$1" 2>/dev/null || return 1
    # field 3 of /proc/PID/stat, after the "(comm)" that may contain spaces
    [[ $(sed -E 's/^.*\) ([A-Za-z]).*/\1/' "/proc/$1/stat" 2>/dev/null) != Z ]]
}

# pid_alive PIDFILE -> prints the pid and succeeds if that process is running
pid_alive() {
    local pid
    [[ -s $1 ]] || return 1
    pid=$(tr -dc '0-9' <"$1")
    [[ -n $pid ]] && running "$pid" || return 1
    echo "$pid"
}

# wait_gone PID SECONDS -> succeeds once the process has exited
wait_gone() {
    local pid=$1 deadline=$((SECONDS + $2))
    while running "$pid"; do
        ((SECONDS < deadline)) || return 1
        sleep 0.2
    done
}

# stop_pid NAME PID : TERM, wait up to 10 s, then KILL
stop_pid() {
    local name=$1 pid=$2
    running "$pid" || return 0
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    if ! wait_gone "$pid" 10; then
        log "$name (pid $pid) ignored SIGTERM for 10 s, sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        wait_gone "$pid" 5 || die "could not kill $name (pid $pid)"
    fi
}

show_logs() {
    local f
    for f in "$MUNGE_LOG" "$CTLD_LOG" "$SLURMD_LOG"; do
        [[ -f $f ]] || continue
        printf '\n===== last lines of %s =====\n' "$f" >&2
        tail -n 25 "$f" >&2
    done
}

node_name() {
    if [[ -f $CONF ]]; then
        sed -n 's/^NodeName=\([^ ]*\).*/\1/p' "$CONF" | head -n1
    else
        hostname -s
    fi
}

# node state as sinfo shows it (idle, mix, alloc, drain, down*, ...), "" if unreachable
node_state() {
    timeout 10 sinfo -h -N -n "$(node_name)" -o %t 2>/dev/null | head -n1 || true
}

# ---------------------------------------------------------------- munge ----
munge_works() {
    timeout 10 munge -n 2>/dev/null | timeout 10 unmunge >/dev/null 2>&1
}

start_munge() {
    if munge_works; then
        if pid_alive "$MUNGE_PID" >/dev/null && [[ -f $MUNGE_OURS ]]; then
            log "munged already running (pid $(pid_alive "$MUNGE_PID"), started by this script)"
        else
            log "munged already running and not started by this script: reusing it, 'down' leaves it alone"
        fi
        return 0
    fi
    local user=munge
    id -u munge >/dev/null 2>&1 || user=root
    if [[ ! -s $MUNGE_KEY ]]; then
        log "creating munge key $MUNGE_KEY"
        mkdir -p "$(dirname "$MUNGE_KEY")"
        if command -v mungekey >/dev/null 2>&1; then
            mungekey --create --keyfile="$MUNGE_KEY"
        else
            dd if=/dev/urandom of="$MUNGE_KEY" bs=1 count=1024 status=none
        fi
    fi
    # munged insists on strict ownership/permissions of its key (and of /etc/munge)
    chown "$user:" "$MUNGE_KEY"
    chmod 0600 "$MUNGE_KEY"
    if [[ $(dirname "$MUNGE_KEY") == /etc/munge ]]; then
        chown "$user:" /etc/munge
        chmod 0700 /etc/munge
    fi
    mkdir -p "$MUNGE_RUN" /var/lib/munge
    chown "$user:" "$MUNGE_RUN" /var/lib/munge
    chmod 0755 "$MUNGE_RUN"
    chmod 0711 /var/lib/munge
    mkdir -p "$LOG_DIR" "$RUN_DIR"
    touch "$MUNGE_LOG"
    chown "$user:" "$MUNGE_LOG"
    # munged opens its log as $user, who cannot reach it when $DIR lies in a private directory
    # (e.g. pytest's /tmp/pytest-of-root, mode 0700): then it logs to munge's usual place
    if [[ $user != root ]] && ! runuser -u "$user" -- test -w "$MUNGE_LOG"; then
        rm -f "$MUNGE_LOG"
        MUNGE_LOG=/var/log/munge/munged.log
        log "$user cannot reach $LOG_DIR: munged logs to $MUNGE_LOG"
        mkdir -p "$(dirname "$MUNGE_LOG")"
        chown "$user:" "$(dirname "$MUNGE_LOG")"
        chmod 0700 "$(dirname "$MUNGE_LOG")"
        touch "$MUNGE_LOG"
        chown "$user:" "$MUNGE_LOG"
    fi
    # a stale socket/pidfile from a killed munged makes the new one refuse to start
    if ! pid_alive "$MUNGE_PID" >/dev/null; then
        rm -f "$MUNGE_PID" "$MUNGE_RUN/munge.socket.2" "$MUNGE_RUN/munge.socket.2.lock"
    fi
    log "starting munged as $user"
    runuser -u "$user" -- munged --key-file="$MUNGE_KEY" --log-file="$MUNGE_LOG" \
        --pid-file="$MUNGE_PID" ||
        { show_logs; die "munged failed to start"; }
    local deadline=$((SECONDS + 10))
    until munge_works; do
        ((SECONDS < deadline)) || { show_logs; die "munged started but 'munge -n | unmunge' fails"; }
        sleep 0.2
    done
    pid_alive "$MUNGE_PID" >"$MUNGE_OURS" || true
}

stop_munge() {
    local pid
    if [[ ! -f $MUNGE_OURS ]]; then
        munge_works && log "munged was not started by this script: leaving it running"
        return 0
    fi
    if pid=$(pid_alive "$MUNGE_PID"); then
        stop_pid munged "$pid"
    else
        # pidfile gone: fall back to the pid recorded at start
        pid=$(tr -dc '0-9' <"$MUNGE_OURS")
        [[ -n $pid ]] && [[ $(cat "/proc/$pid/comm" 2>/dev/null) == munged ]] && stop_pid munged "$pid"
    fi
    rm -f "$MUNGE_OURS"
}

# --------------------------------------------------------------- config ----
write_config() {
    mkdir -p "$ETC_DIR" "$LOG_DIR" "$RUN_DIR" "$STATE_DIR" "$SPOOL_DIR"
    local nodeline host gres_node="" overrides=""
    # first line of `slurmd -C`: NodeName=... CPUs=... Boards=... RealMemory=...
    nodeline=$(slurmd -C | head -n1)
    [[ $nodeline == NodeName=* ]] || die "unexpected 'slurmd -C' output: $nodeline"
    host=$(hostname -s)
    nodeline=$(sed -E "s/^NodeName=[^ ]+/NodeName=$host/" <<<"$nodeline")
    if [[ -n $REAL_MEMORY ]]; then
        nodeline=$(sed -E "s/RealMemory=[0-9]+/RealMemory=$REAL_MEMORY/" <<<"$nodeline")
    fi
    if [[ -n $CPUS ]]; then
        [[ $CPUS =~ ^[1-9][0-9]*$ ]] || die "ADABENCH_SLURM_CPUS must be a positive integer, not '$CPUS'"
        # one socket of CPUS single-thread cores; slurmd keeps these instead of the real
        # hardware (without config_overrides it would drain the node as "Low socket*core*thread count")
        nodeline=$(sed -E -e "s/ (CPUs|Boards|SocketsPerBoard|CoresPerSocket|ThreadsPerCore)=[0-9]+//g" \
            -e "s/^(NodeName=[^ ]+)/\1 CPUs=$CPUS Boards=1 SocketsPerBoard=1 CoresPerSocket=$CPUS ThreadsPerCore=1/" \
            <<<"$nodeline")
        overrides=$'SlurmdParameters=config_overrides\n'
    fi
    ((GPUS > 0)) && gres_node=" Gres=gpu:$GPUS"

    cat >"$CONF.new" <<EOF
# Generated by scripts/slurm_cluster.sh -- one-node test cluster. Do not edit;
# change the ADABENCH_SLURM_* variables and rerun 'up' instead.
ClusterName=$CLUSTER
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
# no cgroups, no accounting database
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
# share the node between jobs by core and memory; without DefMemPerCPU a job
# without --mem gets the whole node's memory and jobs run one at a time
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=$SELECT_PARAMS
DefMemPerCPU=$MEM_PER_CPU
# finished jobs stay visible to squeue this long: the plugin's squeue status
# query needs >= 3 x slurm-init-seconds-before-status-checks and > 180 s
# (its longest poll interval)
MinJobAge=$MIN_JOB_AGE
ReturnToService=2
InactiveLimit=0
KillWait=10
Waittime=0
SlurmctldTimeout=30
SlurmdTimeout=60
StateSaveLocation=$STATE_DIR
SlurmdSpoolDir=$SPOOL_DIR
SlurmctldPidFile=$CTLD_PID
SlurmdPidFile=$SLURMD_PID
SlurmctldLogFile=$CTLD_LOG
SlurmdLogFile=$SLURMD_LOG
SlurmctldDebug=info
SlurmdDebug=info
GresTypes=gpu
${overrides}NodeName=${nodeline#NodeName=} NodeAddr=127.0.0.1$gres_node State=UNKNOWN
PartitionName=$PARTITION Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
    # pretend GPU(s): a File is mandatory (without it the node drains); jobs
    # asking for --gres=gpu:1 / --gpus=1 get CUDA_VISIBLE_DEVICES=0
    {
        echo "# Generated by scripts/slurm_cluster.sh: pretend GPUs backed by /dev/null"
        echo "AutoDetect=off"
        local i
        for ((i = 0; i < GPUS; i++)); do echo "NodeName=$host Name=gpu File=/dev/null"; done
    } >"$GRES_CONF.new"
    local changed=0
    cmp -s "$CONF.new" "$CONF" || changed=1
    cmp -s "$GRES_CONF.new" "$GRES_CONF" || changed=1
    mv "$CONF.new" "$CONF"
    mv "$GRES_CONF.new" "$GRES_CONF"
    echo "$changed"
}

link_etc_conf() {
    mkdir -p "$(dirname "$ETC_CONF")"
    if [[ -L $ETC_CONF && $(readlink "$ETC_CONF") == "$CONF" ]]; then
        return 0
    fi
    if [[ -e $ETC_CONF || -L $ETC_CONF ]]; then
        if [[ $FORCE != 1 ]]; then
            die "$ETC_CONF already exists and was not created by this script; replacing it
    would point every SLURM client on this machine at the test cluster. Move it away, or rerun
    with ADABENCH_SLURM_FORCE=1 to back it up to $ETC_BACKUP ('down' puts it back)."
        fi
        [[ -e $ETC_BACKUP || -L $ETC_BACKUP ]] && die "$ETC_BACKUP already exists; resolve by hand"
        log "backing up $ETC_CONF to $ETC_BACKUP"
        mv "$ETC_CONF" "$ETC_BACKUP"
    fi
    ln -s "$CONF" "$ETC_CONF"
}

unlink_etc_conf() {
    if [[ -L $ETC_CONF && $(readlink "$ETC_CONF") == "$CONF" ]]; then
        rm -f "$ETC_CONF"
        if [[ -e $ETC_BACKUP || -L $ETC_BACKUP ]]; then
            log "restoring $ETC_CONF from $ETC_BACKUP"
            mv "$ETC_BACKUP" "$ETC_CONF"
        fi
    fi
}

# -------------------------------------------------------------- daemons ----
wait_ready() {
    local deadline=$((SECONDS + TIMEOUT)) state="" last_resume=-100 node
    node=$(node_name)
    local start=$SECONDS d
    while true; do
        # fail fast when a daemon died after forking (e.g. a fatal config error)
        for d in slurmctld:"$CTLD_PID" slurmd:"$SLURMD_PID"; do
            if ! pid_alive "${d#*:}" >/dev/null && { [[ -s ${d#*:} ]] || ((SECONDS - start > 5)); }; then
                show_logs
                die "${d%%:*} is not running (see $LOG_DIR/${d%%:*}.log); stop the rest with: bash $0 down"
            fi
        done
        state=$(node_state)
        case $state in
            idle | mix | alloc | comp) return 0 ;;
            drain* | drng* | down | fail* | maint)
                # drained/down but responding (no '*'): clear it
                if ((SECONDS - last_resume >= 3)); then
                    log "node $node is '$state': scontrol update nodename=$node state=resume"
                    scontrol update nodename="$node" state=resume >/dev/null 2>&1 || true
                    last_resume=$SECONDS
                fi
                ;;
        esac
        if ((SECONDS >= deadline)); then
            log "node $node not idle after ${TIMEOUT}s (sinfo state: '${state:-unreachable}')"
            scontrol show node "$node" 2>&1 | grep -E 'State=|Reason=' >&2 || true
            show_logs
            die "cluster did not come up; logs are in $LOG_DIR (stop the daemons with: bash $0 down)"
        fi
        sleep 0.5
    done
}

# scontrol shutdown, then wait for (or kill) slurmctld and slurmd by their pidfiles
stop_slurm_daemons() {
    local d pid grace=0
    if pid_alive "$CTLD_PID" >/dev/null; then
        log "scontrol shutdown"
        if timeout 10 scontrol shutdown >/dev/null 2>&1; then
            grace=15
        else
            log "scontrol shutdown failed; stopping the daemons by pid"
        fi
    fi
    for d in slurmctld:"$CTLD_PID" slurmd:"$SLURMD_PID"; do
        if pid=$(pid_alive "${d#*:}"); then
            wait_gone "$pid" "$grace" || stop_pid "${d%%:*}" "$pid"
        fi
        rm -f "${d#*:}"
    done
}

cmd_up() {
    need_root up
    need_cmds
    local changed pid
    mkdir -p "$DIR"
    changed=$(write_config)
    link_etc_conf
    start_munge

    if ((changed)) && { pid_alive "$CTLD_PID" >/dev/null || pid_alive "$SLURMD_PID" >/dev/null; }; then
        # a full restart is more reliable than 'scontrol reconfigure' (node/gres
        # changes need a slurmd restart; slurmd ignores SIGTERM while reconfiguring)
        log "config changed: restarting slurmctld and slurmd"
        stop_slurm_daemons
    fi
    if pid=$(pid_alive "$CTLD_PID"); then
        log "slurmctld already running (pid $pid)"
    else
        log "starting slurmctld"
        rm -f "$CTLD_PID"
        slurmctld -f "$CONF" || { show_logs; die "slurmctld failed to start"; }
    fi
    if pid=$(pid_alive "$SLURMD_PID"); then
        log "slurmd already running (pid $pid)"
    else
        log "starting slurmd"
        rm -f "$SLURMD_PID"
        slurmd -f "$CONF" || { show_logs; die "slurmd failed to start"; }
    fi

    log "waiting up to ${TIMEOUT}s for node $(node_name) to be idle"
    wait_ready
    echo "SLURM cluster '$CLUSTER' is up: node $(node_name) is $(node_state), partition '$PARTITION' (default)"
    echo "  slurm.conf : $CONF  (linked from $ETC_CONF)"
    echo "  gres.conf  : $GRES_CONF  ($GPUS pretend GPU(s))"
    echo "  logs       : $LOG_DIR/{slurmctld,slurmd}.log, $MUNGE_LOG"
    echo "  state      : $DIR"
    echo "  try        : sbatch --wrap 'hostname' ; squeue ; sinfo"
    echo "  stop       : bash $0 down"
}

cmd_down() {
    need_root down
    local pid deadline purge=0
    case ${1:-} in
        "") ;;
        --purge) purge=1 ;;
        *) die "unknown option for down: $1 (only --purge)" ;;
    esac
    if pid_alive "$CTLD_PID" >/dev/null; then
        # jobs must go first: slurmstepd processes outlive 'scontrol shutdown'
        if [[ -n $(timeout 10 squeue -h -o %i 2>/dev/null) ]]; then
            log "cancelling all jobs"
            timeout 10 squeue -h -o %i | xargs -r timeout 10 scancel || true
            deadline=$((SECONDS + 20))
            while [[ -n $(timeout 10 squeue -h -t R,CG,CF,PD -o %i 2>/dev/null) ]] && ((SECONDS < deadline)); do
                sleep 0.5
            done
        fi
    fi
    stop_slurm_daemons
    # leftover job step daemons (a job that ignored scancel) of this cluster only: they inherit
    # SLURM_CONF=$CONF from our slurmd. Those of another cluster on this machine (another state
    # directory, e.g. a concurrent test run whose `up` made ours fail) are not ours to stop.
    for pid in $(pgrep -x slurmstepd 2>/dev/null || true); do
        if { tr '\0' '\n' <"/proc/$pid/environ"; } 2>/dev/null | grep -qxF "SLURM_CONF=$CONF"; then
            stop_pid slurmstepd "$pid"
        fi
    done
    stop_munge
    unlink_etc_conf
    if ((purge)); then
        log "removing $DIR"
        rm -rf -- "$DIR"
    fi
    if ((purge)) || [[ ! -d $DIR ]]; then
        echo "SLURM cluster is down"
    else
        echo "SLURM cluster is down (state, config and logs kept in $DIR; 'down --purge' removes them)"
    fi
}

cmd_status() {
    local pid up=1
    echo "config: $CONF ($( [[ -L $ETC_CONF && $(readlink "$ETC_CONF") == "$CONF" ]] && echo "linked from $ETC_CONF" || echo "NOT linked from $ETC_CONF"))"
    echo "logs:   $LOG_DIR"
    if munge_works; then
        if [[ -f $MUNGE_OURS ]]; then echo "munged:    running (started by this script)"; else echo "munged:    running (not started by this script)"; fi
    else
        echo "munged:    not running"; up=0
    fi
    if pid=$(pid_alive "$CTLD_PID"); then echo "slurmctld: running (pid $pid)"; else echo "slurmctld: not running"; up=0; fi
    if pid=$(pid_alive "$SLURMD_PID"); then echo "slurmd:    running (pid $pid)"; else echo "slurmd:    not running"; up=0; fi
    if ((up)); then
        echo "--- sinfo"
        timeout 10 sinfo || true
        echo "--- squeue"
        timeout 10 squeue || true
        return 0
    fi
    return 3
}

case ${1:-} in
    up) cmd_up ;;
    down) shift; cmd_down "$@" ;;
    status) cmd_status ;;
    -h | --help | help) usage 0 ;;
    *) usage 2 ;;
esac
