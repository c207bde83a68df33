#!/bin/sh
# One swarm node: dockerd in a container started by `hscale cluster up` (hscale/cluster.py),
# listening on its unix socket and on its own address on the cluster's private network
# only. HSCALE_NODE_ADDR is that address; HSCALE_REGISTRY the cluster registry's
# address:port, which has no TLS and is trusted as an insecure registry.
set -eu
: "${HSCALE_NODE_ADDR:?}" "${HSCALE_REGISTRY:?}"

# The container is not --privileged (a privileged container asks for every capability,
# and runc fails where the host's bounding set lacks one, as CAP_SYS_RESOURCE on this
# project's CI VM): it has all the others, no seccomp, AppArmor or masked /proc paths, and
# every device. /sys and the cgroup hierarchies still come read-only: dockerd creates its
# containers' cgroups, so make them writable.
mount -o remount,rw /sys
if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
    # cgroup v2 (not on this project's VM): the container's own namespace. Processes
    # move to a leaf so that the controllers can be delegated to dockerd's children.
    mount -o remount,rw /sys/fs/cgroup
    mkdir -p /sys/fs/cgroup/init
    xargs -rn1 </sys/fs/cgroup/cgroup.procs >/sys/fs/cgroup/init/cgroup.procs || :
    sed -e 's/ / +/g' -e 's/^/+/' </sys/fs/cgroup/cgroup.controllers \
        >/sys/fs/cgroup/cgroup.subtree_control
else
    # cgroup v1: each hierarchy is a read-only bind of this container's own group.
    for hierarchy in /sys/fs/cgroup/*/; do
        mount -o remount,bind,rw "$hierarchy"
    done
fi
mount --make-rshared /
[ -e /dev/fuse ] || mknod -m 666 /dev/fuse c 10 229

# Storage: overlay2 where overlay mounts on /var/lib/docker (a volume on the host's disk:
# ext4 here, where it works); else fuse-overlayfs; else vfs (a full copy per layer).
# HSCALE_STORAGE_DRIVER forces one.
driver="${HSCALE_STORAGE_DRIVER:-}"
if [ -z "$driver" ]; then
    probe=/var/lib/docker/.overlay-probe
    mkdir -p "$probe/lower" "$probe/upper" "$probe/work" "$probe/merged"
    if mount -t overlay overlay \
        -o "lowerdir=$probe/lower,upperdir=$probe/upper,workdir=$probe/work" "$probe/merged" \
        2>/dev/null; then
        umount "$probe/merged"
        driver=overlay2
    elif fuse-overlayfs -o "lowerdir=$probe/lower,upperdir=$probe/upper,workdir=$probe/work" \
        "$probe/merged" 2>/dev/null; then
        umount "$probe/merged"
        driver=fuse-overlayfs
    else
        driver=vfs
    fi
    rm -rf "$probe"
fi
echo "hscale-node: storage driver $driver"

# No TLS: the API is reachable only on the cluster's private bridge (docs/cluster.md).
mkdir -p /etc/docker
cat >/etc/docker/daemon.json <<JSON
{
  "hosts": ["unix:///var/run/docker.sock", "tcp://${HSCALE_NODE_ADDR}:2375"],
  "tls": false,
  "storage-driver": "${driver}",
  "insecure-registries": ["${HSCALE_REGISTRY}"],
  "log-driver": "json-file",
  "log-opts": {"max-size": "10m", "max-file": "2"}
}
JSON
# A node started again after it was killed (FAULT=stop-node): the pid files and sockets of
# the dead dockerd and containerd are still here, and containerd would not start beside
# them (docker's own dind image removes them too).
# Nothing of it runs any more: its whole run state goes (what lasts is in /var/lib/docker).
rm -rf /run/docker /run/containerd /run/docker.pid /run/docker.sock
exec dockerd
