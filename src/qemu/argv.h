/*
 * argv.h - the QEMU command line for a VM.  Pure: the spec and the resolved
 * host-side facts go in, a NULL-terminated argv comes out.  vmgrd uses it to
 * spawn QEMU, the benchmark's floor program uses the very same line, and
 * re-adoption checks a running QEMU's /proc cmdline against it.
 */
#ifndef VMGR_ARGV_H
#define VMGR_ARGV_H

#include "../core/spec.h"

/*
 * Descriptors QEMU inherits: its QMP listening socket, and the saved state
 * a restore reads (migrate-incoming "fd:4"; /dev/null when not restoring).
 * A save's file is handed over later, with getfd.
 */
#define QEMU_QMP_FD	3
#define QEMU_RESTORE_FD	4

struct qemu_conf {
	const char	*binary;	/* "qemu-system-x86_64" or a path */
	const char	*accel;		/* "kvm" or "tcg" */
	const char	*vmdir;		/* the VM's run directory */
	const char	*kernel;	/* resolved from the image or the spec */
	const char	*initrd;	/* or NULL */
	const char	*cmdline;	/* or NULL */
	const char	*const *disks;	/* spec->ndisks volume paths */
	int		 paused;	/* start with -S */
	int		 incoming;	/* -incoming defer: a restore follows */
	/*
	 * Per NIC: NULL for user-mode NAT, else the vmgr network's switch
	 * socket (the NIC becomes -netdev dgram from VMDIR/netN.sock).
	 */
	const char	*const *nets;
	/* Per NIC: a tap device on a bridge network (-netdev tap), or NULL. */
	const char	*const *taps;
	const int	*tapfds;	/* per NIC: an open tap's fd in QEMU, or -1 */
};

/* A new argv (caller frees with strv_free); NULL when out of memory or a
 * path is too long to pass. */
char	**qemu_argv(const struct vm_spec *, const struct qemu_conf *);
void	  strv_free(char **);

/* The argument of -name for a VM: "guest=NAME,debug-threads=on". */
#define QEMU_NAME_FMT	"guest=%s,debug-threads=on"

#endif
