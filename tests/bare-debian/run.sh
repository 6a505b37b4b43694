#!/usr/bin/env bash
# The README's first build on a bare Debian 12 machine, as written.
#
# Usage: tests/bare-debian/run.sh KILN_DEB [README]
#
# The "machine" is a fresh `mmdebstrap --variant=minbase bookworm` root: Debian's essential and
# required packages and apt, nothing else (no busybox-static, no mmdebstrap, no qemu-img, no
# skopeo). It gets this host's kernel through a private mount namespace (/proc, /sys with the
# cgroup tree, /dev) and this host's network (the Debian mirror, 127.0.0.1). Inside it, the shell
# blocks of the README marked `<!-- first-build -->` run one after another in one bash, with
# `set -euo pipefail`, exactly as written; the only stand-in is `systemctl`, which is not
# installed there: `systemctl enable --now kiln` starts the installed unit's ExecStart line in the
# background, as systemd would. The run fails if any command fails; `kiln logs --follow` in the
# README exits non-zero unless the image is AVAILABLE, and the last command's output is checked.
set -euo pipefail

DEB="$(realpath "$1")"
README="$(realpath "${2:-$(dirname "$0")/../../README.md}")"
MIRROR="${KILN_TEST_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
WORK="$(mktemp -d /tmp/kiln-bare.XXXXXX)"
ROOT="$WORK/root"
KEEP="${KILN_TEST_KEEP_BARE:-}"

cleanup() {
    # Kiln and the mounts ended with the namespace.
    if [ -z "$KEEP" ]; then
        # The image store may hold overlay work dirs owned by mapped ids; plain rm handles them.
        rm -rf --one-file-system "$WORK"
    else
        echo "kept $WORK"
    fi
}
trap cleanup EXIT

if (exec 3<>/dev/tcp/127.0.0.1/7070) 2>/dev/null; then
    echo "127.0.0.1:7070 is in use; the README's commands need it" >&2
    exit 1
fi

echo "== a bare Debian 12: mmdebstrap --variant=minbase bookworm"
mmdebstrap --quiet --variant=minbase bookworm "$ROOT" "$MIRROR"
cp "$DEB" "$ROOT/root/"
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"

# The README's marked blocks, in order.
python3 - "$README" > "$ROOT/root/first-build.sh" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
blocks = re.findall(r"<!-- first-build -->\s*```sh\n(.*?)```", text, re.S)
if not blocks:
    sys.exit("no <!-- first-build --> blocks in the README")
print("\n".join(blocks))
PY
echo "== the README's commands ($(grep -c . "$ROOT/root/first-build.sh") lines)"

# systemctl where systemd is not running: `enable --now kiln` runs the unit's ExecStart.
cat > "$ROOT/root/systemctl.sh" <<'SH'
systemctl() {
    [ "$*" = "enable --now kiln" ] || { echo "systemctl stand-in: only 'enable --now kiln'" >&2; return 1; }
    local exec
    exec=$(sed -n 's/^ExecStart=//p' /lib/systemd/system/kiln.service)
    mkdir -p /var/lib/kiln
    chmod 700 /var/lib/kiln
    # The unit's Environment= lines, StateDirectory=kiln, and a file for the journal.
    (
        while IFS= read -r setting; do export "${setting#Environment=}"; done \
            < <(grep '^Environment=' /lib/systemd/system/kiln.service)
        cd /var/lib/kiln && exec $exec
    ) >/var/log/kiln.log 2>&1 &
    echo $! > /run/kiln.pid
    for _ in $(seq 1 100); do
        if (exec 3<>/dev/tcp/127.0.0.1/7070) 2>/dev/null; then return 0; fi
        kill -0 "$(cat /run/kiln.pid)" 2>/dev/null || { cat /var/log/kiln.log; return 1; }
        sleep 0.1
    done
    echo "kiln did not listen on 127.0.0.1:7070 in 10 s" >&2; cat /var/log/kiln.log; return 1
}
SH

status=0
# A mount and PID namespace of its own, its root pivoted to the bare root (not chroot: the
# kernel refuses user namespaces to a chrooted process, and Kiln's builds make them). When the
# script ends, so does every process in the namespace, Kiln included, and with it the mounts.
unshare --mount --pid --fork --kill-child --propagation private -- bash -euo pipefail -c '
    ROOT=$1
    mount --bind "$ROOT" "$ROOT"
    mount -t proc proc "$ROOT/proc"
    mount --rbind /sys "$ROOT/sys"
    mount --rbind /dev "$ROOT/dev"
    mount -t tmpfs tmpfs "$ROOT/run"
    mount -t tmpfs tmpfs "$ROOT/tmp"
    mkdir -p "$ROOT/.host"
    cd "$ROOT"
    pivot_root . .host
    umount -l /.host
    rmdir /.host
    exec /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        HOME=/root DEBIAN_FRONTEND=noninteractive \
        /bin/bash -c "cd /root; . /root/systemctl.sh; set -euxo pipefail; . /root/first-build.sh" \
        > /root/first-build.log 2>&1 < /dev/null
' bash "$ROOT" || status=$?
tail -n 40 "$ROOT/root/first-build.log"
if [ "$status" -ne 0 ]; then
    echo "--- kiln's log:"
    tail -n 40 "$ROOT/var/log/kiln.log" 2>/dev/null || true
    echo "== FAILED: the README's first build on a bare Debian 12 (exit $status)" >&2
    exit "$status"
fi
if ! tail -n 3 "$ROOT/root/first-build.log" | grep -qx AVAILABLE; then
    echo "== FAILED: the last command did not print AVAILABLE" >&2
    exit 1
fi
echo "== passed: bare Debian 12 -> AVAILABLE, as the README says"
