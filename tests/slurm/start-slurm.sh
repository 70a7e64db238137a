#!/usr/bin/env bash
# Start a real single-node Slurm (slurmctld + slurmd + munge) on this machine, as root and
# without systemd, for the tests that submit through the Slurm profile. The node offers four
# fake GPUs (a generic resource backed by /dev/null) so that GPU jobs are schedulable on a
# CPU-only machine. No accounting database: jobs are followed with squeue.
set -euo pipefail

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq slurmctld slurmd slurm-client munge >/dev/null
fi

HOST=$(hostname -s)
# The node's real topology, as slurmd reports it (CPUs, sockets, cores, threads).
TOPOLOGY=$(slurmd -C | head -n 1 | grep -oE '(CPUs|Boards|SocketsPerBoard|CoresPerSocket|ThreadsPerCore)=[0-9]+' | tr '\n' ' ')
MEM_MB=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))
STATE=/var/spool/slurmctld
mkdir -p /etc/slurm "$STATE" /var/spool/slurmd /var/log/slurm /run/munge /var/run/slurm

cat > /etc/slurm/slurm.conf <<CONF
ClusterName=ci
SlurmctldHost=${HOST}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=${STATE}
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/var/run/slurm/slurmctld.pid
SlurmdPidFile=/var/run/slurm/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
GresTypes=gpu
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
ReturnToService=2
MinJobAge=600
KillWait=5
InactiveLimit=0
SlurmctldTimeout=30
SlurmdTimeout=30
MpiDefault=none
NodeName=${HOST} ${TOPOLOGY} RealMemory=${MEM_MB} Gres=gpu:4 State=UNKNOWN
PartitionName=cpu Nodes=${HOST} Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
PartitionName=gpu Nodes=${HOST} MaxTime=INFINITE State=UP OverSubscribe=YES
CONF

# Four fake GPU device files; Slurm only needs something to hand out.
for i in 0 1 2 3; do [ -e "/dev/fakegpu$i" ] || mknod "/dev/fakegpu$i" c 1 3; done
cat > /etc/slurm/gres.conf <<CONF
NodeName=${HOST} Name=gpu File=/dev/fakegpu[0-3]
CONF

if [ ! -s /etc/munge/munge.key ]; then
    dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
fi
chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge 2>/dev/null || true
chmod 400 /etc/munge/munge.key
pgrep -x munged >/dev/null || runuser -u munge -- /usr/sbin/munged

pkill -x slurmctld 2>/dev/null || true
pkill -x slurmd 2>/dev/null || true
sleep 1
/usr/sbin/slurmctld -c
/usr/sbin/slurmd

for _ in $(seq 1 60); do
    if timeout 5 sinfo -h -o '%T' 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
        timeout 5 sinfo
        exit 0
    fi
    sleep 1
done
echo "slurm did not come up; logs:" >&2
tail -n 30 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log >&2
exit 1
