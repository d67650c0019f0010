#!/usr/bin/env bash
# Runs a sharded recipe on a real Slurm cluster of one node, started here, and checks that the
# merged shards give the sequential run's table value for value.
#
#   scripts/test-slurm.sh               # as root, on Debian 12; takes about a minute
#
# It installs slurm-wlm and munge with apt-get when they are missing, then starts its own munged,
# slurmctld and slurmd on free local ports with everything (key, socket, configuration, state,
# logs) in a temporary directory, so it neither needs nor disturbs a cluster already configured on
# the machine. It submits examples/slurm/sweep.sbatch as a 4-task array with
# examples/slurm/merge.sbatch depending on it, and compares the merged table with
# `qsh merge` of a sequential run of the same recipe. The daemons it started are stopped, by
# process id, however the script ends.
#
# Environment:
#   QSH_BIN               the qsh binary (default .build/release/qsh, from the repository root)
#   QSH_MODELS, QSH_DATA  models and data sets (default ../shared/models and ../shared/data)
#   QSH_SLURM_TIMEOUT     seconds to wait for the jobs (default 300)
#   QSH_SLURM_KEEP=1      keep the temporary directory (logs, shard records) for inspection
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"

QSH_BIN="${QSH_BIN:-.build/release/qsh}"
case "$QSH_BIN" in /*) ;; *) QSH_BIN="$ROOT/$QSH_BIN" ;; esac
[ -d ../shared/models ] && export QSH_MODELS="${QSH_MODELS:-$(cd ../shared/models && pwd)}"
[ -d ../shared/data ] && export QSH_DATA="${QSH_DATA:-$(cd ../shared/data && pwd)}"
export QSH_BIN
RECIPE="$ROOT/examples/slurm/sweep.qs"
SHARDS=4
TIMEOUT="${QSH_SLURM_TIMEOUT:-300}"

say() { echo "slurm: $*"; }
die() { echo "slurm: error: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root: the test starts munged, slurmctld and slurmd"
[ -x "$QSH_BIN" ] || die "no qsh binary at $QSH_BIN (swift build -c release, or set QSH_BIN)"

WORK=""
PIDS=()                 # daemons started here, in start order
JOBS=()                 # jobs submitted here
POLICY_RC_CREATED=0

cleanup() {
    local status=$? pid i
    trap - EXIT INT TERM
    if [ ${#JOBS[@]} -gt 0 ] && [ ${#PIDS[@]} -ge 2 ]; then
        scancel "${JOBS[@]}" 2>/dev/null || true
        for i in $(seq 20); do
            [ -z "$(squeue -h -o %i 2>/dev/null)" ] && break
            sleep 0.5
        done
    fi
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        pid="${PIDS[$i]}"
        kill "$pid" 2>/dev/null || continue
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        kill -9 "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [ "$POLICY_RC_CREATED" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
    if [ -n "$WORK" ]; then
        if [ "${QSH_SLURM_KEEP:-0}" = 1 ]; then say "kept $WORK"; else rm -rf "$WORK"; fi
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- Packages ------------------------------------------------------------------------------------

missing=()
for tool in munged munge slurmctld slurmd sbatch squeue scontrol scancel; do
    command -v "$tool" >/dev/null || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
    say "installing slurm-wlm and munge (missing: ${missing[*]})"
    export DEBIAN_FRONTEND=noninteractive
    apt_get() { apt-get -o DPkg::Lock::Timeout=600 -q "$@"; }
    if ! apt-cache policy slurm-wlm munge 2>/dev/null | grep -q 'Candidate: [0-9]'; then
        apt_get update >/dev/null
    fi
    # The packages' scripts would start the daemons with the system configuration; a container
    # without an init system has none, so keep them from trying.
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        POLICY_RC_CREATED=1
    fi
    apt_get install -y --no-install-recommends slurm-wlm munge >/dev/null
    if [ "$POLICY_RC_CREATED" = 1 ]; then rm -f /usr/sbin/policy-rc.d; POLICY_RC_CREATED=0; fi
fi

# --- A one-node cluster in a temporary directory ---------------------------------------------------

WORK="$(mktemp -d /tmp/qsh-slurm.XXXXXX)"
chmod 755 "$WORK"       # munged wants its socket's directories searchable by all
mkdir -p "$WORK/state" "$WORK/spool" "$WORK/logs" "$WORK/munge"
chmod 700 "$WORK/munge"

# munge: a fresh key and a daemon on a private socket (root may run it with these paths).
head -c 1024 /dev/urandom > "$WORK/munge/munge.key"
chmod 400 "$WORK/munge/munge.key"
MUNGE_SOCKET="$WORK/munge.socket"
munged --foreground --key-file="$WORK/munge/munge.key" --socket="$MUNGE_SOCKET" \
    --pid-file="$WORK/munge/munged.pid" --seed-file="$WORK/munge/munged.seed" \
    --log-file="$WORK/logs/munged.log" > "$WORK/logs/munged.out" 2>&1 &
PIDS+=($!)

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
CTLD_PORT=""
for ((i = 0; i < 200; i++)); do
    p=$((20000 + (RANDOM % 20000) * 2))
    if port_free "$p" && port_free $((p + 1)); then CTLD_PORT=$p; break; fi
done
[ -n "$CTLD_PORT" ] || die "no two free ports for slurmctld and slurmd"

# This machine as slurmd sees it, less the memory (nothing here asks for memory).
NODE_LINE="$(slurmd -C | head -n 1 | sed 's/ RealMemory=[0-9]*//')"
NODE="$(echo "$NODE_LINE" | sed -n 's/^NodeName=\([^ ]*\).*/\1/p')"
[ -n "$NODE" ] || die "slurmd -C gave no node: $NODE_LINE"

export SLURM_CONF="$WORK/slurm.conf"
cat > "$SLURM_CONF" <<EOF
ClusterName=qshtest
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$((CTLD_PORT + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$MUNGE_SOCKET
StateSaveLocation=$WORK/state
SlurmdSpoolDir=$WORK/spool
SlurmctldPidFile=$WORK/slurmctld.pid
SlurmdPidFile=$WORK/slurmd.pid
SlurmctldLogFile=$WORK/logs/slurmctld.log
SlurmdLogFile=$WORK/logs/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MailProg=/bin/true
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
DependencyParameters=kill_invalid_depend
MinJobAge=3600
ReturnToService=2
$NODE_LINE NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=test Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF

print_logs() {
    local f
    if [ ${#JOBS[@]} -gt 0 ]; then
        echo "----- job states"
        scontrol -o show job 2>/dev/null | sed -e 's/^JobId=\([0-9]*\) ArrayJobId=\([0-9]*\) ArrayTaskId=\([0-9]*\)/JobId=\2_\3/' \
            -n -e 's/^JobId=\([^ ]*\) .*JobName=\([^ ]*\) .* JobState=\([^ ]*\) Reason=\([^ ]*\).*/\1 \2 \3 \4/p' | sort
    fi
    for f in "$WORK"/jobs/*; do
        [ -f "$f" ] || continue
        echo "----- ${f#"$WORK"/}"
        cat "$f"
    done
    for f in "$WORK"/logs/*.log "$WORK"/logs/munged.out "$WORK"/logs/sequential.out; do
        [ -s "$f" ] || continue
        echo "----- ${f#"$WORK"/} (last 25 lines)"
        tail -n 25 "$f"
    done
}
fail_setup() { echo "slurm: error: $*" >&2; print_logs >&2; exit 1; }

for _ in $(seq 50); do [ -S "$MUNGE_SOCKET" ] && break; sleep 0.1; done
munge -S "$MUNGE_SOCKET" -n | unmunge -S "$MUNGE_SOCKET" >/dev/null 2>&1 || fail_setup "munged does not answer"

slurmctld -D -i > "$WORK/logs/slurmctld.out" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do scontrol ping 2>/dev/null | grep -q 'is UP' && break; sleep 0.2; done
scontrol ping 2>/dev/null | grep -q 'is UP' || fail_setup "slurmctld did not come up"

slurmd -D > "$WORK/logs/slurmd.out" 2>&1 &
PIDS+=($!)
state=""
for _ in $(seq 100); do
    state="$(sinfo -h -n "$NODE" -o %T 2>/dev/null || true)"
    [ "$state" = idle ] && break
    sleep 0.2
done
[ "$state" = idle ] || fail_setup "node $NODE is '$state', not idle"
say "cluster up: node $NODE ($(echo "$NODE_LINE" | sed -n 's/.*CPUs=\([0-9]*\).*/\1/p') CPUs), slurmctld on port $CTLD_PORT"

# --- Jobs ----------------------------------------------------------------------------------------

mkdir -p "$WORK/jobs"
cd "$WORK"

# Waits until every job given has ended; fails when one did not complete or time runs out.
wait_jobs() {
    local deadline=$((SECONDS + TIMEOUT)) states
    while :; do
        states="$(for job in "$@"; do scontrol -o show job "$job" 2>/dev/null; done |
            sed -n 's/.* JobState=\([^ ]*\).*/\1/p')"
        if [ -n "$states" ] && ! echo "$states" | grep -qvE '^(COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY|BOOT_FAIL|DEADLINE|PREEMPTED)$'; then
            break
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "slurm: jobs $* still running after ${TIMEOUT}s" >&2
            return 1
        fi
        sleep 1
    done
    if echo "$states" | grep -qv '^COMPLETED$'; then
        echo "slurm: jobs $* ended: $(echo "$states" | tr '\n' ' ')" >&2
        return 1
    fi
}

# Submits the shards named by ARRAY (all of them: 0-3) into OUT, and the merge after them.
submit_sweep() {
    local array="$1" out="$2" jobid mergeid
    jobid="$(OUT="$out" RECIPE="$RECIPE" SHARDS="$SHARDS" sbatch --parsable --array="$array" \
        --output="$WORK/jobs/sweep-%A_%a.out" "$ROOT/examples/slurm/sweep.sbatch")" || return 1
    JOBS+=("$jobid")
    mergeid="$(OUT="$out" sbatch --parsable --dependency="afterok:$jobid" \
        --output="$WORK/jobs/merge-%j.out" "$ROOT/examples/slurm/merge.sbatch")" || return 1
    JOBS+=("$mergeid")
    say "submitted array $jobid ($array) and merge $mergeid (afterok:$jobid)"
    wait_jobs "$jobid" "$mergeid"
}

passed=0
failed=0
check() {
    local name="$1"; shift
    local start=$SECONDS
    if "$@"; then
        passed=$((passed + 1)); say "ok: $name ($((SECONDS - start)) s)"
    else
        failed=$((failed + 1)); say "FAILED: $name"; print_logs
    fi
}

sequential() {
    "$QSH_BIN" "$RECIPE" --json "$WORK/seq.json" > "$WORK/logs/sequential.out" 2>&1 || {
        echo "slurm: the sequential run failed"; cat "$WORK/logs/sequential.out"; return 1; }
    "$QSH_BIN" merge "$WORK/seq.json" > "$WORK/seq.txt" 2> "$WORK/logs/seq-merge.err" || {
        echo "slurm: qsh merge of the sequential run failed"; cat "$WORK/seq.txt" "$WORK/logs/seq-merge.err"; return 1; }
    [ -s "$WORK/seq.txt" ] || { echo "slurm: qsh merge of the sequential run printed nothing"; return 1; }
}

# The whole sweep as a 4-task array and a dependent merge: the same table as the sequential run.
sharded_equals_sequential() {
    submit_sweep "0-$((SHARDS - 1))" "$WORK/shards" || return 1
    local i log logs items
    for ((i = 0; i < SHARDS; i++)); do
        [ -s "$WORK/shards/shard-$i.json" ] || { echo "slurm: no shards/shard-$i.json"; return 1; }
        # 4 items in 4 shards: task i ran item i and nothing else.
        logs=("$WORK"/jobs/sweep-*_"$i".out)
        log="${logs[0]}"
        items="$(grep '^sweep item' "$log" || true)"
        if [ "$(echo "$items" | grep -c .)" != 1 ] || ! echo "$items" | grep -q "^sweep item $i .* in shard $i/$SHARDS"; then
            echo "slurm: array task $i should have run sweep item $i alone; it ran:"; echo "$items"; return 1
        fi
    done
    [ -s "$WORK/shards/results.svg" ] || { echo "slurm: merge.sbatch drew no results.svg"; return 1; }
    diff -u "$WORK/seq.txt" "$WORK/shards/results.txt" || {
        echo "slurm: the merged shards differ from the sequential run (- sequential, + merged)"; return 1; }
}

# A missing shard is named by qsh merge (exit 1); re-running just that shard completes the set.
missing_shard_rerun() {
    mkdir -p "$WORK/partial"
    cp "$WORK/shards"/shard-{0,1,3}.json "$WORK/partial/"
    local status=0
    "$QSH_BIN" merge "$WORK"/partial/shard-*.json > "$WORK/logs/partial-merge.out" 2>&1 || status=$?
    if [ "$status" != 1 ]; then
        echo "slurm: qsh merge without shard 2 exited $status, not 1"; cat "$WORK/logs/partial-merge.out"; return 1
    fi
    grep -qw 2 "$WORK/logs/partial-merge.out" || {
        echo "slurm: qsh merge without shard 2 does not name it:"; cat "$WORK/logs/partial-merge.out"; return 1; }
    submit_sweep 2 "$WORK/partial" || return 1
    diff -u "$WORK/seq.txt" "$WORK/partial/results.txt" || {
        echo "slurm: after re-running shard 2 the merge differs from the sequential run"; return 1; }
}

check "sequential run and its merge" sequential
if [ "$passed" = 1 ]; then
    check "4 shards on Slurm, merged after them, equal the sequential run" sharded_equals_sequential
    if [ "$failed" = 0 ]; then
        check "a missing shard is named, and re-running it alone completes the sweep" missing_shard_rerun
    fi
fi

if [ "$failed" = 0 ] && [ "${QSH_SLURM_KEEP:-0}" = 1 ]; then cat "$WORK/shards/results.txt"; fi
say "$passed passed, $failed failed"
[ "$failed" = 0 ]
