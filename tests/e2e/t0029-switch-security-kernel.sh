#!/bin/sh
# t0019 on the kernel's bridges: vmgrd as root, --switch kernel.
SWITCH=kernel exec sh "$(dirname "$0")/t0019-switch-security.sh"
