# shellcheck shell=bash
# tests/lib/images.sh: hostile repository images that tests feed to the
# worker (node/imgtrust.h must refuse each before anything reaches a node).
#
#   hostile_vmdk PATH [HOST_FILE]
#                           writes PATH, a monolithicFlat vmdk descriptor whose
#                           one extent is HOST_FILE (default /etc/shadow): a
#                           file outside the image's own directory

[[ -n ${_IMAGES_SH_LOADED:-} ]] && return 0
_IMAGES_SH_LOADED=1

hostile_vmdk() {
    local path=$1 host=${2:-/etc/shadow}
    cat >"$path" <<EOF
# Disk DescriptorFile
version=1
CID=fffffffe
parentCID=ffffffff
createType="monolithicFlat"
RW 100 FLAT "$host" 0
EOF
}
