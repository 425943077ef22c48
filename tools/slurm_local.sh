#!/usr/bin/env bash
# A private one-node SLURM cluster on localhost for clipwb's tests and for trying `clipwb submit`.
#
#   tools/slurm_local.sh up       install the Debian packages when missing (apt-get, needs root), write the
#                                 configuration and start munged, a private MariaDB, slurmdbd, slurmctld and
#                                 slurmd; waits until the node takes jobs. Idempotent: running daemons are kept.
#   tools/slurm_local.sh down     stop the daemons this script started (by their pid files) and nothing else.
#   tools/slurm_local.sh status   which daemons run, and `sinfo`.
#   tools/slurm_local.sh env      prints `export SLURM_CONF=…` (eval it to use sbatch/squeue/submitit).
#
# Everything lives under $CLIPWB_SLURM_DIR (default /tmp/clipwb-slurm): configuration, munge key and socket,
# the MariaDB data folder, spool and state folders, logs and pid files. Ports: $CLIPWB_SLURM_PORT (default
# 16817) for slurmctld, +1 slurmd, +2 slurmdbd, +3 MariaDB (127.0.0.1 only). System daemons are not touched;
# clients find the cluster through SLURM_CONF=$CLIPWB_SLURM_DIR/slurm.conf.
# Why the configuration looks as it does (found while bringing it up):
# - munged with a private socket: slurm.conf and slurmdbd.conf need AuthInfo=socket=…, slurm.conf also
#   AccountingStoragePass=<socket>; the socket folder must be traversable by all (umask 022).
# - slurmdbd (with MariaDB) gives `sacct`, which submitit uses to see cancelled or crashed jobs.
# - slurmdbd.conf must be mode 0600 and owned by SlurmUser.
# - slurmd -N localhost names the node as slurm.conf does whatever the host name is.
# - batch_sched_delay=0,sched_min_interval=0: a job starts about a second after sbatch; kill_invalid_depend
#   cancels the afterok dependants of a failed job (instead of leaving them pending forever).
# - AuthInfo cred_expire=15: a requeued job (scontrol requeue, preemption, submitit's time-limit requeue) may start
#   again after 15 s instead of SLURM's default 120 s; sched_interval=2 starts it within 2 s of that (a begin time
#   that passes wakes no scheduler: the periodic pass, every 60 s by default, finds it).
# - `up` on a running cluster whose slurm.conf this script changed runs `scontrol reconfigure`.
set -euo pipefail
umask 022

DIR=${CLIPWB_SLURM_DIR:-/tmp/clipwb-slurm}
OLD_CONF=""
PORT=${CLIPWB_SLURM_PORT:-16817}
CPUS=${CLIPWB_SLURM_CPUS:-8}          # job slots: more than the cores is fine (config_overrides)
CLUSTER=clipwb
PKGS="slurmctld slurmd slurm-client munge slurmdbd mariadb-server"

have() { command -v "$1" >/dev/null 2>&1; }
say() { echo "slurm_local: $*"; }
alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
sbin() { for d in /usr/sbin /usr/bin /sbin; do [ -x "$d/$1" ] && { echo "$d/$1"; return; }; done; command -v "$1"; }

install_pkgs() {
    local missing=()
    for b in slurmctld slurmd sbatch munged slurmdbd mariadbd; do [ -n "$(sbin $b 2>/dev/null)" ] || missing+=("$b"); done
    [ ${#missing[@]} -eq 0 ] && return 0
    say "missing ${missing[*]}: apt-get install $PKGS"
    local SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
    have apt-get || { say "apt-get not found: install $PKGS with your package manager" >&2; exit 1; }
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends $PKGS >/dev/null
}

wait_for() {  # wait_for <seconds> <what> <command…>
    local t=$1 what=$2; shift 2
    for _ in $(seq $((t * 5))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
    say "timed out after ${t}s waiting for $what; logs in $DIR/log" >&2; tail -n 20 "$DIR"/log/*.log >&2 || true; exit 1
}

configure() {
    mkdir -p "$DIR"/{log,run,munge,spool,state,mysql}
    chmod 755 "$DIR" "$DIR/run" "$DIR/munge"
    local sql=$((PORT + 3)) mem
    mem=$(awk '/MemTotal/ {print int($2 / 1024 * 0.8)}' /proc/meminfo)
    OLD_CONF=$(cat "$DIR/slurm.conf" 2>/dev/null || true)
    cat > "$DIR/slurm.conf" <<EOF
ClusterName=$CLUSTER
SlurmctldHost=localhost
SlurmUser=root
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
AuthType=auth/munge
AuthInfo=socket=$DIR/munge/munge.socket,cred_expire=15
CredType=cred/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=$((PORT + 2))
AccountingStoragePass=$DIR/munge/munge.socket
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0,sched_interval=2,kill_invalid_depend
SlurmdParameters=config_overrides
ReturnToService=2
MpiDefault=none
KillWait=5
MinJobAge=300
InactiveLimit=0
NodeName=localhost CPUs=$CPUS RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
    cat > "$DIR/slurmdbd.conf" <<EOF
AuthType=auth/munge
AuthInfo=socket=$DIR/munge/munge.socket
DbdHost=localhost
DbdPort=$((PORT + 2))
SlurmUser=root
PidFile=$DIR/run/slurmdbd.pid
LogFile=$DIR/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$sql
StorageUser=root
StorageLoc=slurm_acct_db
EOF
    chown root:root "$DIR/slurmdbd.conf"; chmod 600 "$DIR/slurmdbd.conf"
}

start_munge() {
    alive "$DIR/run/munged.pid" && return 0
    [ -s "$DIR/munge/munge.key" ] || dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 status=none
    chown munge:munge "$DIR/munge" "$DIR/munge/munge.key"; chmod 400 "$DIR/munge/munge.key"; chmod 755 "$DIR/munge"
    touch "$DIR/run/munged.pid" "$DIR/log/munged.log"; chown munge:munge "$DIR/run/munged.pid" "$DIR/log/munged.log"
    runuser -u munge -- "$(sbin munged)" --socket="$DIR/munge/munge.socket" --key-file="$DIR/munge/munge.key" \
        --pid-file="$DIR/run/munged.pid" --log-file="$DIR/log/munged.log" --seed-file="$DIR/munge/munge.seed" --force
    wait_for 10 munged munge -S "$DIR/munge/munge.socket" -n
}

start_mariadb() {
    alive "$DIR/run/mariadb.pid" && return 0
    chown -R mysql:mysql "$DIR/mysql"
    if [ ! -d "$DIR/mysql/mysql" ]; then
        "$(sbin mariadb-install-db || sbin mysql_install_db)" --user=mysql --datadir="$DIR/mysql" \
            --auth-root-authentication-method=normal >"$DIR/log/mariadb-install.log" 2>&1
    fi
    touch "$DIR/log/mariadb.log"; chown mysql:mysql "$DIR/log/mariadb.log"
    chown mysql:mysql "$DIR/run"
    "$(sbin mariadbd)" --no-defaults --user=mysql --datadir="$DIR/mysql" --bind-address=127.0.0.1 --port=$((PORT + 3)) \
        --socket="$DIR/run/mariadb.sock" --pid-file="$DIR/run/mariadb.pid" --log-error="$DIR/log/mariadb.log" \
        --innodb-buffer-pool-size=32M --skip-name-resolve >/dev/null 2>&1 &
    wait_for 30 MariaDB mariadb-admin --no-defaults --socket="$DIR/run/mariadb.sock" -uroot ping
    chown root:root "$DIR/run"
}

start_daemons() {
    if ! alive "$DIR/run/slurmdbd.pid"; then
        SLURM_CONF="$DIR/slurm.conf" "$(sbin slurmdbd)"   # reads slurmdbd.conf next to $SLURM_CONF
        wait_for 30 slurmdbd bash -c "exec 3<>/dev/tcp/127.0.0.1/$((PORT + 2))"
    fi
    export SLURM_CONF="$DIR/slurm.conf"
    if ! alive "$DIR/run/slurmctld.pid"; then
        "$(sbin slurmctld)" -f "$SLURM_CONF" -i
        wait_for 30 slurmctld scontrol ping
    elif [ "$OLD_CONF" != "$(cat "$SLURM_CONF")" ]; then
        say "slurm.conf changed: scontrol reconfigure"; scontrol reconfigure
    fi
    if ! alive "$DIR/run/slurmd.pid"; then
        "$(sbin slurmd)" -f "$SLURM_CONF" -N localhost
    fi
    wait_for 30 "the node to be idle" bash -c "sinfo -h -N -o %t | grep -qE '^(idle|mix|alloc)'"
    # accounting: slurmctld registers the cluster itself; add it when an old database lacks it
    sacctmgr -i -n show cluster format=cluster | grep -qw "$CLUSTER" || sacctmgr -i add cluster "$CLUSTER" >/dev/null || true
}

up() {
    local t0=$SECONDS
    install_pkgs
    configure
    start_munge
    start_mariadb
    start_daemons
    say "up in $((SECONDS - t0)) s: export SLURM_CONF=$DIR/slurm.conf"
}

down() {
    local n=0
    for d in slurmd slurmctld slurmdbd mariadb munged; do
        local f="$DIR/run/$d.pid"
        if alive "$f"; then
            local pid; pid=$(cat "$f"); kill "$pid"
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
            kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
            n=$((n + 1))
        fi
        rm -f "$f"
    done
    say "stopped $n daemon(s)"
}

status() {
    for d in munged mariadb slurmdbd slurmctld slurmd; do
        if alive "$DIR/run/$d.pid"; then echo "$d: running (pid $(cat "$DIR/run/$d.pid"))"; else echo "$d: stopped"; fi
    done
    SLURM_CONF="$DIR/slurm.conf" sinfo 2>/dev/null || true
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    status) status ;;
    env) echo "export SLURM_CONF=$DIR/slurm.conf" ;;
    *) echo "usage: $0 up|down|status|env" >&2; exit 2 ;;
esac
