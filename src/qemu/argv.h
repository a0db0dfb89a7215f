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
 * Descriptors QEMU inherits, all opened or bound by vmgrd in the VM's run
 * directory, which QEMU's user cannot write: its QMP listening socket, the
 * saved state a restore reads (migrate-incoming "fd:4"; /dev/null when not
 * restoring), the serial console's listening socket and the console log it
 * appends to (as fd set 1), the guest agent's listening socket, then the
 * taps of bridge NICs.  A save's file is
 * handed over later, with getfd.  QEMU itself writes only its NICs'
 * sockets, in VMDIR/qemu/, the one directory of its own.
 */
#define QEMU_QMP_FD		3
#define QEMU_RESTORE_FD		4
#define QEMU_CONSOLE_FD		5
#define QEMU_CONSOLE_LOG_FD	6
#define QEMU_AGENT_FD		7	/* the guest agent's listening socket */
#define QEMU_FIRST_TAP_FD	8

struct qemu_conf {
	const char	*binary;	/* "qemu-system-x86_64" or a path */
	const char	*accel;		/* "kvm" or "tcg" */
	const char	*vmdir;		/* the VM's run directory */
	const char	*kernel;	/* resolved from the image or the spec */
	const char	*initrd;	/* or NULL */
	const char	*cmdline;	/* or NULL */
	const char	*const *disks;	/* spec->ndisks volume paths */
	int		 paused;	/* start with -S */
	int		 agent;		/* a guest agent channel on QEMU_AGENT_FD */
	int		 incoming;	/* -incoming defer: a restore follows */
	/*
	 * Per NIC, QEMU's descriptor numbers, or 0: a listening socket of an
	 * isolated network's switch (-netdev stream,server=on), or the end of
	 * a socket pair whose other end is passt's (-netdev stream).  A NIC
	 * with neither and no tap is QEMU's own user-mode NAT (slirp).
	 */
	const int	*netfds;
	const int	*natfds;
	/* Per NIC: a tap device on a bridge network (-netdev tap), or NULL. */
	const char	*const *taps;
	const int	*tapfds;	/* per NIC: an open tap's fd in QEMU, or -1 */
	/*
	 * Without a kernel, firmware boots the disks and the cdrom in
	 * spec->boot_order (disk first by default): SeaBIOS, or with
	 * ovmf_code UEFI, its variable store the VM's own file (vars_fd).
	 * Descriptors are QEMU's numbers, 0 when absent; each becomes a
	 * fd set (-add-fd), the seed and the cdrom read-only.
	 */
	const char	*ovmf_code;	/* OVMF's code, or NULL: SeaBIOS */
	int		 vars_fd;	/* fd set 2, read-write */
	int		 vars_ro_fd;	/* and read-only: QEMU opens it both ways */
	int		 seed_fd;	/* fd set 3: the cloud-init seed */
	int		 cdrom_fd;	/* fd set 4: the ISO */
};

/* A new argv (caller frees with strv_free); NULL when out of memory or a
 * path is too long to pass. */
char	**qemu_argv(const struct vm_spec *, const struct qemu_conf *);
void	  strv_free(char **);

/* The argument of -name for a VM: "guest=NAME,debug-threads=on". */
#define QEMU_NAME_FMT	"guest=%s,debug-threads=on"

/*
 * The argument of the -add-fd that names the VM's console log: it has the
 * run directory in it, so vmgrd knows its QEMUs by it (with the -name) in
 * /proc/PID/cmdline.  -1 when it does not fit.
 */
int	  qemu_marker(const char *vmdir, char *buf, size_t len);

#endif
