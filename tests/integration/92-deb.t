#!/usr/bin/env bash
# The Debian package, for real: `make deb` builds vcl-worker_VERSION_ARCH.deb
# (VERSION from the Makefile's git version, '-' as '+') and lintian finds no
# error in it; dpkg -i installs it on this machine: the vcl-worker user
# (sysusers.d), /var/lib/vcl-worker owned by it (tmpfiles.d), the example
# configuration as a conffile, both units neither enabled nor started, bash
# completion that completes from the command table, man pages; then the
# installed programs alone (/usr/bin/vclctl migrate from /usr/share, the
# worker with /usr/lib/vcl-worker/drivers) run one real load on libvirt into
# a throwaway PostgreSQL; dpkg -r removes every file of the package but the
# admin's configuration, and dpkg -P that too.
. "$(dirname "$0")/../lib/world.sh"
((EUID == 0)) || skip_all "needs root (dpkg -i)"
command -v dpkg >/dev/null || skip_all "not a Debian system"
world_init
world_pg
world_libvirt
world_dirs
[ "$VCL_TEST_LIBVIRT" = real ] || skip_all "no libvirt daemon can run here (a load needs QEMU)"

unset VCL_DRIVERS_DIR VCL_SQL_DIR
T="t${WORLD##*.}"
URI="$VCL_TEST_URI"
V() { virsh -q -c "$URI" "$@"; }
installed() { [[ $(dpkg-query -W -f='${db:Status-Status}' vcl-worker 2>/dev/null) == installed ]]; }
if installed; then
    diag "vcl-worker is installed here already: removing it (its configuration stays)"
    dpkg -r vcl-worker >/dev/null
fi
# Whatever happens, the package does not stay installed.
world_on_exit dpkg -P vcl-worker

# --- 1. make deb ---------------------------------------------------------------
version=$(make -s --no-print-directory -C "$ROOT" version)
debv=${version//-/+}
arch=$(dpkg --print-architecture)
deb=$ROOT/build/deb/vcl-worker_${debv}_${arch}.deb
t0=$(date +%s)
ok "make deb (lintian: no error)" nice make -s --no-print-directory -C "$ROOT" deb
diag "make deb: $(($(date +%s) - t0)) s"
ok "it wrote $deb" test -f "$deb"
is "$(dpkg-deb -f "$deb" Package Version Architecture | tr '\n' ' ')" \
   "Package: vcl-worker Version: $debv Architecture: $arch " "package name, version (make version: $version), arch"
like "$(dpkg-deb -f "$deb" Depends)" 'libsystemd0' "Depends from the shared libraries (libsystemd0 among them)"

# --- 2. dpkg -i --------------------------------------------------------------------
ok "dpkg -i" dpkg -i "$deb"
ok "installed" installed
is "$(/usr/bin/vcl-worker --version | head -1)" "vcl-worker $version" "the installed worker reports the tree's version"
is "$(/usr/bin/vclctl --version | head -1)" "vclctl $version" "and so does vclctl"
ok "the user vcl-worker exists (sysusers.d)" getent passwd vcl-worker
is "$(getent passwd vcl-worker | cut -d: -f6,7)" "/nonexistent:/usr/sbin/nologin" "a system user without home or shell"
is "$(stat -c '%U:%G %a' /var/lib/vcl-worker /var/lib/vcl-worker/xml | tr '\n' ' ')" \
   "vcl-worker:vcl-worker 755 vcl-worker:vcl-worker 755 " "/var/lib/vcl-worker{,/xml} made by tmpfiles.d"
is "$(dpkg-query -W -f='${Conffiles}' vcl-worker | awk 'NF { print $1 }')" "/etc/vcl-worker/vcl-worker.yaml" \
   "the example configuration is the one conffile"
ok "the conffile is the example" cmp /etc/vcl-worker/vcl-worker.yaml "$ROOT/config/vcl-worker.yaml"
for u in vcl-worker.service vcl-worker@.service; do
    ok "$u installed" test -f /lib/systemd/system/$u
done
like "$(cat /lib/systemd/system/vcl-worker.service)" $'\nExecStart=/usr/bin/vcl-worker --config /etc/vcl-worker/vcl-worker.yaml\n' \
     "the unit runs /usr/bin/vcl-worker"
is "$(find /etc/systemd/system -name 'vcl-worker*' 2>/dev/null)" "" "no unit enabled on install"
running_installed() {
    local p
    for p in /proc/[0-9]*; do
        [[ $(readlink "$p/exe" 2>/dev/null) == /usr/bin/vcl-worker ]] && return 0
    done
    return 1
}
fails "no installed worker started on install" running_installed
ok "man vcl-worker (installed page renders)" bash -c 'man -l /usr/share/man/man8/vcl-worker.8.gz 2>/dev/null | grep -q "^NAME"'
complete_words() {
    bash -c '. "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); "$F"; echo "${COMPREPLY[*]}"' \
        sh "$@"
}
is "$(F=_vclctl complete_words /usr/share/bash-completion/completions/vclctl vclctl node a)" "add" \
   "bash completion: vclctl node a<TAB> -> add"
is "$(F=_vclctl complete_words /usr/share/bash-completion/completions/vclctl vclctl --db x computer add pc --me)" "--memory" \
   "bash completion: options of the command, past a global option's value"
is "$(F=_vcl_worker complete_words /usr/share/bash-completion/completions/vcl-worker vcl-worker --che)" "--check-config" \
   "bash completion: vcl-worker --che<TAB>"
cmds=$(/usr/bin/vclctl --help | sed -n '/^commands:/,/^$/p' | awk 'NR > 1 && NF { print $1 }' | sort -u)
offered=$(F=_vclctl complete_words /usr/share/bash-completion/completions/vclctl vclctl "" | tr ' ' '\n' | grep -v '^-' | sort -u)
is "$offered" "$cmds" "completion offers exactly the commands of vclctl --help"

# --- 3. one real load with the installed programs --------------------------
ok "vclctl migrate (the installed SQL)" /usr/bin/vclctl migrate
qemu-img create -q -f qcow2 "$WORLD/repo/$T-blank-v1.qcow2" 64M
ok "node add" /usr/bin/vclctl node add node1 --uri "$URI" --master-dir "$WORLD/master" \
    --cow-dir "$WORLD/cow" --xml-dir "$WORLD/xml" --repo "$WORLD/repo"
ok "node check (the installed drivers probe the CPU mode)" /usr/bin/vclctl node check node1 --config "$(world_config w1 'drivers_dir: /usr/lib/vcl-worker/drivers')"
ok "image add" /usr/bin/vclctl image add "$T-blank" --os-type none
ok "revision 1" /usr/bin/vclctl image revision-add "$T-blank" --revision 1 --file-stem "$T-blank-v1"
ok "computer add" /usr/bin/vclctl computer add "$T-pc1" --node node1 \
    --mac "52:54:00:$(printf %02x $((RANDOM % 256))):92:01" --memory 128 --vcpus 1
world_track_domain "$T-pc1:$T-blank-v1"
id=$(/usr/bin/vclctl load "$T-pc1" "$T-blank:1")
like "$id" '^[0-9]+$' "load queued ($id)"
ok "the installed worker runs it (--drain)" timeout 600 /usr/bin/vcl-worker --config "$WORLD/w1.yaml" --drain
is "$(psql_val "SELECT state FROM vcl.reservation WHERE id = $id")" done "reservation $id done"
is "$(psql_val "SELECT node_status FROM vcl.computer WHERE name = '$T-pc1'")" READY "the computer is READY"
is "$(V domstate "$T-pc1:$T-blank-v1" | head -1)" running "its domain runs"
V destroy "$T-pc1:$T-blank-v1" >/dev/null 2>&1
V undefine "$T-pc1:$T-blank-v1" >/dev/null 2>&1

# --- 4. dpkg -r, dpkg -P ---------------------------------------------------------
files=$(dpkg -L vcl-worker | while IFS= read -r f; do [[ -f $f ]] && printf '%s\n' "$f"; done)
n=$(grep -c . <<<"$files")
is "$n" "$(dpkg-deb -c "$deb" | grep -vc '^d')" "dpkg -L lists every file of the .deb ($n)"
ok "dpkg -r" dpkg -r vcl-worker
left=$(while IFS= read -r f; do [[ -e $f ]] && printf '%s\n' "$f"; done <<<"$files")
is "$left" "/etc/vcl-worker/vcl-worker.yaml" "dpkg -r leaves no file of the package but the admin's configuration"
ok "dpkg -P" dpkg -P vcl-worker
ok "purge removes the configuration" test ! -e /etc/vcl-worker
ok "and the (empty) state directory" test ! -e /var/lib/vcl-worker
diag "the vcl-worker user stays after purge (Debian keeps system users: files may still be owned by it)"
done_testing
