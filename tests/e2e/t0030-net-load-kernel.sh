#!/bin/sh
# t0027 on the kernel's bridges: vmgrd as root, --switch kernel.
SWITCH=kernel exec sh "$(dirname "$0")/t0027-net-load.sh"
