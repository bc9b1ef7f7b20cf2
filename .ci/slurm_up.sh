#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for tests/workflow/test_slurm_cluster.py (CI
# calls it from .ci/run). Installs Debian's slurm-wlm and munge when absent, writes a
# slurm.conf for one node on localhost with this machine's CPU count and memory (no
# cgroups, no accounting database, no systemd: it also works inside a container),
# starts munged, slurmctld and slurmd, and waits until `sinfo` shows the node idle.
# Safe to rerun: a running cluster with an unchanged slurm.conf is left alone.
#
# Exit status: 0 when the cluster is up, or when it cannot be installed here (not root,
# no apt-get, no package mirror); it says so, and the SLURM test then skips. 1 when
# SLURM is installed but the cluster does not come up (the daemons' logs are printed).
set -euo pipefail

say() { echo "slurm_up: $*"; }
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    exec sudo -n "$0" "$@"   # a CI runner with password-less sudo
fi
conf_dir=/etc/slurm
state=/var/lib/slurm
logs=/var/log/slurm
partition=cpu     # the shipped profile's default partition (profiles/slurm/config.yaml)

# --- install (only what is missing) ---
if ! command -v sbatch >/dev/null || ! command -v slurmctld >/dev/null \
    || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
    if [ "$(id -u)" != 0 ]; then
        say "SLURM is not installed and this is not root: no cluster, the SLURM test will skip"
        exit 0
    fi
    if ! command -v apt-get >/dev/null; then
        say "SLURM is not installed and apt-get is unavailable: no cluster, the SLURM test will skip"
        exit 0
    fi
    say "installing slurm-wlm and munge with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends \
            slurm-wlm munge >/dev/null; }; then
        say "apt-get could not install slurm-wlm and munge: no cluster, the SLURM test will skip"
        exit 0
    fi
fi
if [ "$(id -u)" != 0 ]; then
    say "starting the daemons needs root: no cluster, the SLURM test will skip"
    exit 0
fi

# --- munge: a key, then the daemon ---
mkdir -p /etc/munge /var/lib/munge /var/log/munge /run/munge
if [ ! -s /etc/munge/munge.key ]; then
    if command -v mungekey >/dev/null; then
        mungekey --create --keyfile=/etc/munge/munge.key
    else
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    fi
fi
chown munge:munge /etc/munge /etc/munge/munge.key /var/lib/munge /var/log/munge /run/munge
chmod 0700 /etc/munge /var/lib/munge /var/log/munge
chmod 0400 /etc/munge/munge.key
chmod 0755 /run/munge
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    say "starting munged"
    rm -f /run/munge/munge.socket.2 /run/munge/munge.socket.2.lock
    runuser -u munge -- munged
    for _ in $(seq 20); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.5; done
fi

# --- slurm.conf: one node, this machine's CPUs and memory ---
node=$(hostname -s)
cpus=$(nproc)
mem_mb=$(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo)
limit=$(cat /sys/fs/cgroup/memory.max 2>/dev/null || echo max)
if [ "$limit" != max ] && [ "$(( limit / 1048576 ))" -lt "$mem_mb" ]; then
    mem_mb=$(( limit / 1048576 ))
fi
mem_mb=$(( mem_mb * 95 / 100 ))   # leave the daemons some room
mkdir -p "$conf_dir" "$state/slurmctld" "$state/slurmd" "$logs"
new_conf=$(cat <<EOF
# Written by .ci/slurm_up.sh: a one-node test cluster on localhost.
ClusterName=salpipe
SlurmctldHost=$node(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
MpiDefault=none
# no cgroups and no systemd (containers): track job processes through /proc only
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# trust the node line below instead of probing hardware a container may misreport
SlurmdParameters=config_overrides
ReturnToService=2
# finished jobs stay visible to squeue for 10 minutes (there is no sacct)
MinJobAge=600
StateSaveLocation=$state/slurmctld
SlurmdSpoolDir=$state/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$logs/slurmctld.log
SlurmdLogFile=$logs/slurmd.log
NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=$partition Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
)

running() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
stop() {  # the daemon whose pid file is $1 (one this script started)
    if running "$1"; then
        kill "$(cat "$1")"
        for _ in $(seq 20); do running "$1" || break; sleep 0.5; done
    fi
    rm -f "$1"
}

if [ "$(cat "$conf_dir/slurm.conf" 2>/dev/null)" != "$new_conf" ]; then
    say "writing $conf_dir/slurm.conf ($node: $cpus CPUs, $mem_mb MB)"
    echo "$new_conf" >"$conf_dir/slurm.conf"
    stop /run/slurmd.pid
    stop /run/slurmctld.pid
fi

# --- the daemons ---
if ! running /run/slurmctld.pid; then
    say "starting slurmctld"
    slurmctld
fi
if ! running /run/slurmd.pid; then
    say "starting slurmd"
    slurmd
fi

# --- wait for the node ---
for _ in $(seq 60); do
    node_state=$(sinfo -h -n "$node" -o %t 2>/dev/null | head -n 1 || true)
    case "$node_state" in
        idle|mix|alloc)
            say "node $node is $node_state: $(sinfo -h -o '%P %D %c CPUs %m MB' | head -n 1)"
            exit 0 ;;
        down*|drain*|drng*)
            scontrol update NodeName="$node" State=RESUME 2>/dev/null || true ;;
    esac
    sleep 1
done
say "the node did not become idle (state: ${node_state:-none}); daemon logs follow"
tail -n 20 "$logs/slurmctld.log" "$logs/slurmd.log" 2>/dev/null || true
exit 1
