/*
 * vm_spawn.c - start a VM's QEMU: resolve what it boots, open its taps,
 * build the command line (qemu/argv.c), prepare its cgroup and
 * credentials, spawn it and connect to its QMP socket.
 */
#include "vm_int.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include "../lib/log.h"
#include "../lib/sock.h"
#include "../lib/util.h"
#include "../qemu/argv.h"
#include "../qemu/proc.h"
#include "../qemu/qmp.h"

int
vm_boots_kernel(const struct vm_spec *spec)
{
	if (spec->kernel)
		return 1;
	if (!spec->image[0])
		return 0;
	return !(spec->ndisks && strcmp(spec->disks[0].image, spec->image) ==
	    0);
}

/*
 * Resolve kernel, initrd and command line from the image or the spec;
 * kernel is "" when firmware boots the disks.
 */
int
vm_resolve_boot(const struct vm_spec *spec, char *kernel, char *initrd,
    char **cmdline, char *err, size_t errlen)
{
	struct stat st;

	*cmdline = NULL;
	initrd[0] = '\0';
	kernel[0] = '\0';
	if (!vm_boots_kernel(spec))
		return 0;	/* firmware boots its disks */
	if (spec->image[0]) {
		char dir[600], path[PATH_MAX];
		snprintf(dir, sizeof(dir), "%s/%s", vmgrd->images_dir,
		    spec->image);
		snprintf(kernel, PATH_MAX, "%s/vmlinuz", dir);
		if (stat(kernel, &st) < 0) {
			snprintf(err, errlen, "no image \"%s\" (looked for %s); "
			    "build the built-in one with `make guest`",
			    spec->image, kernel);
			return -1;
		}
		snprintf(path, sizeof(path), "%s/initrd.img", dir);
		if (stat(path, &st) == 0)
			snprintf(initrd, PATH_MAX, "%s", path);
		snprintf(path, sizeof(path), "%s/cmdline", dir);
		if ((*cmdline = read_file(path, SPEC_CMDLINE_MAX, NULL)))
			(*cmdline)[strcspn(*cmdline, "\n")] = '\0';
	} else {
		snprintf(kernel, PATH_MAX, "%s", spec->kernel);
		if (spec->initrd)
			snprintf(initrd, PATH_MAX, "%s", spec->initrd);
	}
	if (spec->cmdline) {
		free(*cmdline);
		*cmdline = strdup(spec->cmdline);
	}
	const char *files[] = { kernel, initrd[0] ? initrd : NULL };
	for (int i = 0; i < 2; i++) {
		if (files[i] == NULL)
			continue;
		if (stat(files[i], &st) < 0 || access(files[i], R_OK) < 0) {
			snprintf(err, errlen, "%s %s: %s", i ? "initrd" :
			    "kernel", files[i], strerror(errno));
			goto fail;
		}
		if (!S_ISREG(st.st_mode)) {
			snprintf(err, errlen, "%s %s is not a regular file",
			    i ? "initrd" : "kernel", files[i]);
			goto fail;
		}
	}
	return 0;
fail:
	free(*cmdline);
	*cmdline = NULL;
	return -1;
}

static void
rotate(const struct vm *vm, const char *name)
{
	char a[PATH_MAX], b[PATH_MAX + 4];

	vm_path(vm, name, a, sizeof(a));
	snprintf(b, sizeof(b), "%s.1", a);
	rename(a, b);
}

/*
 * Spawn QEMU for vm, paused (-S), with its QMP socket already listening,
 * and connect to it at once: no polling for readiness.  The guest is let go
 * with "cont" when QMP is up (vm_qmp_ready).  Everything QEMU is given in its
 * run dir (sockets, logs, saved state) is made there by vmgrd and passed as
 * a descriptor; whatever fails releases all of it on one path.
 */
/* What a start prepares for QEMU, and the one place it is let go. */
struct launch {
	char		 kernel[PATH_MAX], initrd[PATH_MAX], *cmdline;
	char		 sock[PATH_MAX], pidpath[PATH_MAX];
	char		 disks[SPEC_MAX_DISKS][PATH_MAX];
	const char	*diskp[SPEC_MAX_DISKS];
	char		 cgroups[2][PATH_MAX];
	char		 taps[SPEC_MAX_NICS][16];
	int		 netfd[SPEC_MAX_NICS];	/* a switch's listener, or -1 */
	int		 qnetfd[SPEC_MAX_NICS];	/* its number in QEMU, or 0 */
	int		 natfd[SPEC_MAX_NICS][2]; /* passt's and QEMU's, or -1 */
	int		 qnatfd[SPEC_MAX_NICS];	/* QEMU's number, or 0 */
	const char	*tapp[SPEC_MAX_NICS];
	int		 tapfd[SPEC_MAX_NICS];	/* vmgrd's, or -1 */
	int		 qtapfd[SPEC_MAX_NICS];	/* their numbers in QEMU */
	int		 fds[QEMU_FIRST_TAP_FD - 3 + SPEC_MAX_NICS + 4], nfds;
	int		 lfd, confd, logfd, restfd, agentfd;
	int		 varsfd, varsrofd, seedfd, cdromfd; /* firmware's, or -1 */
	int		 qvarsfd, qvarsrofd, qseedfd, qcdromfd; /* QEMU's, or 0 */
	const char	*ovmf;
	int		 taps_up;
	int		 as_user;
	struct proc_cred cred;
	char		**argv;
};

static void
launch_init(struct launch *l)
{
	memset(l, 0, sizeof(*l));
	for (int i = 0; i < SPEC_MAX_NICS; i++)
		l->tapfd[i] = l->qtapfd[i] = l->netfd[i] = l->natfd[i][0] =
		    l->natfd[i][1] = -1;
	l->lfd = l->confd = l->logfd = l->restfd = l->agentfd = -1;
	l->varsfd = l->varsrofd = l->seedfd = l->cdromfd = -1;
}

/* QEMU has its own copies of every descriptor it was given. */
static void
launch_free(struct vm *vm, struct launch *l)
{
	if (l->lfd >= 0)
		close(l->lfd);
	if (l->confd >= 0)
		close(l->confd);
	if (l->agentfd >= 0)
		close(l->agentfd);
	if (l->logfd >= 0)
		close(l->logfd);
	if (l->restfd >= 0)
		close(l->restfd);
	if (l->varsfd >= 0)
		close(l->varsfd);
	if (l->varsrofd >= 0)
		close(l->varsrofd);
	if (l->seedfd >= 0)
		close(l->seedfd);
	if (l->cdromfd >= 0)
		close(l->cdromfd);
	for (int i = 0; i < SPEC_MAX_NICS; i++) {
		if (l->netfd[i] >= 0)
			close(l->netfd[i]);
		for (int k = 0; k < 2; k++)
			if (l->natfd[i][k] >= 0)
				close(l->natfd[i][k]);
	}
	for (int i = 0; i < SPEC_MAX_NICS; i++)
		if (l->tapfd[i] >= 0)
			close(l->tapfd[i]);
	if (l->taps_up)
		net_taps_down(vm);
	strv_free(l->argv);
	free(l->cmdline);
}

/* What it boots, its host ports, its networks and its disks are there. */
static int
launch_check(struct vm *vm, struct launch *l, char *err, size_t errlen)
{
	if (vm_resolve_boot(&vm->spec, l->kernel, l->initrd, &l->cmdline, err,
	    errlen) < 0 || vm_forwards_free(vm, err, errlen) < 0 ||
	    net_vm_ready(vm, err, errlen) < 0)
		return -1;
	for (int i = 0; i < vm->spec.ndisks; i++) {
		volume_path(vm->spec.disks[i].volume, l->disks[i],
		    sizeof(l->disks[i]));
		if (access(l->disks[i], R_OK | W_OK) < 0) {
			snprintf(err, errlen, "disk %s: %s", l->disks[i],
			    strerror(errno));
			return -1;
		}
		l->diskp[i] = l->disks[i];
	}
	return 0;
}

/*
 * Its run dir and volumes, ready for the user it runs as; its QMP and
 * console sockets, console log, saved state and cgroups.
 */
static int
launch_files(struct vm *vm, struct launch *l, char *err, size_t errlen)
{
	char csock[PATH_MAX], path[PATH_MAX];

	if (priv_prepare_vm(vm, &l->cred, &l->as_user, err, errlen) < 0)
		return -1;
	rotate(vm, "console.log");
	rotate(vm, "qemu.log");
	vm_path(vm, "qemu.pid", l->pidpath, sizeof(l->pidpath));
	unlink(l->pidpath);
	vm_path(vm, "qmp.sock", l->sock, sizeof(l->sock));
	vm_path(vm, "console.sock", csock, sizeof(csock));
	if ((l->lfd = sock_bind(l->sock, SOCK_STREAM, 1, 0)) < 0 ||
	    (l->confd = sock_bind(csock, SOCK_STREAM, 1, 0)) < 0) {
		snprintf(err, errlen, "%.300s: %s", l->lfd < 0 ? l->sock :
		    csock, strerror(errno));
		return -1;
	}
	/* The agent's socket, or a placeholder that keeps the numbers. */
	vm_path(vm, "agent.sock", path, sizeof(path));
	unlink(path);
	if ((l->agentfd = vm->spec.agent.enabled ? sock_bind(path,
	    SOCK_STREAM, 1, 0) : open("/dev/null", O_RDONLY | O_CLOEXEC)) < 0) {
		snprintf(err, errlen, "%.300s: %s", path, strerror(errno));
		return -1;
	}
	vm_path(vm, "console.log", path, sizeof(path));
	if ((l->logfd = open_private(path, O_WRONLY | O_CREAT | O_APPEND,
	    0600)) < 0) {
		snprintf(err, errlen, "%.300s: %s", path, strerror(errno));
		return -1;
	}
	vm_path(vm, "state.sav", path, sizeof(path));
	if ((l->restfd = vm_has(vm, VMF_RESTORING) ? open_private(path,
	    O_RDONLY, 0) : open("/dev/null", O_RDONLY | O_CLOEXEC)) < 0) {
		snprintf(err, errlen, "%.300s: %s", path, errno == EPERM ||
		    errno == ELOOP ? "not a file of vmgrd's own; refused" :
		    strerror(errno));
		return -1;
	}
	if (cgroup_prepare(vm, l->cgroups) < 0) {
		snprintf(err, errlen, "cannot create the VM's cgroup");
		return -1;
	}
	l->fds[0] = l->lfd;
	l->fds[1] = l->restfd;
	l->fds[2] = l->confd;
	l->fds[3] = l->logfd;
	l->fds[4] = l->agentfd;
	l->nfds = QEMU_FIRST_TAP_FD - 3;
	return 0;
}

/* QEMU gets fd as its next descriptor; its number there. */
static int
pass_fd(struct launch *l, int fd)
{
	l->fds[l->nfds] = fd;
	return 3 + l->nfds++;
}

/*
 * Its NICs: on an isolated network a socket vmgrd binds in the run dir
 * (root's) and QEMU listens on, for the switch to connect to; on a bridge
 * a tap that vmgrd opens and hands over, so that QEMU, running as its own
 * user, needs no access to /dev/net/tun.
 */
static int
launch_nics(struct vm *vm, struct launch *l, char *err, size_t errlen)
{
	char path[PATH_MAX];

	for (int i = 0; i < vm->spec.nnics; i++) {
		int64_t id = net_id(vm->spec.nics[i].network);
		if (strcmp(vm->spec.nics[i].network, "nat") == 0 &&
		    nat_uses_passt()) {
			/* passt's end and QEMU's: passt starts before QEMU. */
			if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0,
			    l->natfd[i]) < 0) {
				snprintf(err, errlen, "socketpair: %s",
				    strerror(errno));
				return -1;
			}
			/*
			 * passt sends frames of up to 64 KiB (the MTU it
			 * offers): the default 208 KiB of a unix socket holds
			 * three, and host-to-guest TCP then crawls.
			 */
			for (int k = 0; k < 2; k++)
				sock_buffers(l->natfd[i][k], 4 << 20);
			l->qnatfd[i] = pass_fd(l, l->natfd[i][1]);
			continue;
		}
		if (strcmp(vm->spec.nics[i].network, "nat") == 0 ||
		    net_nic_is_tap(vm, i))
			continue;
		if (id < 0) {
			snprintf(err, errlen, "network %s does not exist",
			    vm->spec.nics[i].network);
			return -1;
		}
		nic_sock_path(vm, i, path, sizeof(path));
		if ((l->netfd[i] = sock_bind(path, SOCK_STREAM, 4, 0600)) < 0) {
			snprintf(err, errlen, "%.300s: %s", path,
			    strerror(errno));
			return -1;
		}
		l->qnetfd[i] = pass_fd(l, l->netfd[i]);
	}
	l->taps_up = 1;
	if (net_taps_up(vm, l->taps, err, errlen) < 0)
		return -1;
	for (int i = 0; i < vm->spec.nnics; i++) {
		if (!l->taps[i][0])
			continue;
		l->tapp[i] = l->taps[i];
		if ((l->tapfd[i] = net_tap_open(vm, i, l->taps[i])) < 0) {
			snprintf(err, errlen, "tap %s: %s", l->taps[i],
			    strerror(errno));
			return -1;
		}
		l->qtapfd[i] = 3 + l->nfds;
		l->fds[l->nfds++] = l->tapfd[i];
	}
	if (fault_fail("start:after-taps")) {
		snprintf(err, errlen, "injected failure (VMGR_FAIL_AT)");
		return -1;
	}
	return 0;
}


/*
 * What firmware and the guest read besides the disks: UEFI's variable
 * store (the VM's own file), the cdrom (opened here, by vmgrd, so QEMU's
 * user needs no access to it) and the cloud-init seed (made in memory).
 */
static int
launch_boot(struct vm *vm, struct launch *l, char *err, size_t errlen)
{
	if (firmware_uefi(&vm->spec)) {
		if (firmware_ovmf(&vm->spec, &l->ovmf, NULL) < 0) {
			snprintf(err, errlen, "UEFI needs OVMF in %s (Debian's "
			    "ovmf)", FIRMWARE_OVMF_DIR);
			return -1;
		}
		if ((l->varsfd = firmware_vars_open(vm, err, errlen)) < 0)
			return -1;
		l->qvarsfd = pass_fd(l, l->varsfd);
		/* The same file read-only: QEMU opens the store both ways. */
		if ((l->varsrofd = fd_reopen_ro(l->varsfd)) < 0) {
			snprintf(err, errlen, "%s: %s", FIRMWARE_VARS,
			    strerror(errno));
			return -1;
		}
		l->qvarsrofd = pass_fd(l, l->varsrofd);
	}
	if (vm->spec.cdrom) {
		if ((l->cdromfd = open(vm->spec.cdrom, O_RDONLY | O_CLOEXEC)) <
		    0) {
			snprintf(err, errlen, "cdrom %s: %s", vm->spec.cdrom,
			    strerror(errno));
			return -1;
		}
		struct stat cst;
		if (fstat(l->cdromfd, &cst) < 0 || !S_ISREG(cst.st_mode)) {
			snprintf(err, errlen, "cdrom %s: not a regular file",
			    vm->spec.cdrom);
			return -1;
		}
		l->qcdromfd = pass_fd(l, l->cdromfd);
	}
	if (vm->spec.cloud_init) {
		if ((l->seedfd = cloudinit_fd(&vm->spec, err, errlen)) < 0)
			return -1;
		l->qseedfd = pass_fd(l, l->seedfd);
	}
	return 0;
}

/* QEMU's command line (qemu/argv.c), the guests' IPs on the kernel's. */
static int
launch_argv(struct vm *vm, struct launch *l, char *err, size_t errlen)
{
	char ipargs[SPEC_MAX_NICS * 48], *fullcmd = NULL;

	net_cmdline(&vm->spec, ipargs, sizeof(ipargs));
	if (ipargs[0] && l->kernel[0] && asprintf(&fullcmd, "%s%s", l->cmdline ? l->cmdline :
	    "", ipargs) > 0) {
		free(l->cmdline);
		l->cmdline = fullcmd;
	}
	struct qemu_conf conf = {
		.binary = vmgrd->qemu_binary,
		.accel = vmgrd->accel,
		.vmdir = vm->dir,
		.kernel = l->kernel[0] ? l->kernel : NULL,
		.initrd = l->initrd[0] ? l->initrd : NULL,
		.ovmf_code = l->ovmf,
		.vars_fd = l->qvarsfd,
		.vars_ro_fd = l->qvarsrofd,
		.seed_fd = l->qseedfd,
		.cdrom_fd = l->qcdromfd,
		.cmdline = l->cmdline,
		.disks = l->diskp,
		.paused = 1,
		.agent = vm->spec.agent.enabled,
		.incoming = vm_has(vm, VMF_RESTORING | VMF_INCOMING),
		.netfds = l->qnetfd,
		.natfds = l->qnatfd,
		.taps = l->tapp,
		.tapfds = l->qtapfd,
	};
	if ((l->argv = qemu_argv(&vm->spec, &conf)) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	return 0;
}

/* The VM's runtime fields for a QEMU just started as pid. */
static void
launched(struct vm *vm, const struct launch *l, pid_t pid)
{
	vm->pid = pid;
	vm->flags &= ~VMF_LEGACY;
	vm->started_at = now_unix_ms();
	vm->flags &= ~(VMF_GUEST_OFF | VMF_PANICKED | VMF_FORCED | VMF_AGENT_OFF |
	    VMF_STOP_ASKED | VMF_CONT_OK | VMF_RESUMED | VMF_RESTORE_SENT);
	memset(vm->nic_rx_bytes, 0, sizeof(vm->nic_rx_bytes));
	memset(vm->nic_tx_bytes, 0, sizeof(vm->nic_tx_bytes));
	memset(vm->nic_rx_packets, 0, sizeof(vm->nic_rx_packets));
	memset(vm->nic_tx_packets, 0, sizeof(vm->nic_tx_packets));
	memset(vm->nic_spoofed, 0, sizeof(vm->nic_spoofed));
	memset(vm->nic_dropped, 0, sizeof(vm->nic_dropped));
	vm->qemu_uid = l->as_user ? l->cred.uid : geteuid();
}

/* Spawn QEMU, watch it and connect to its QMP socket. */
static int
launch_exec(struct vm *vm, struct launch *l, char *err, size_t errlen)
{
	char logpath[PATH_MAX];
	char *cgv[3] = { NULL, NULL, NULL };
	int cfd;
	pid_t pid;

	vm_path(vm, "qemu.log", logpath, sizeof(logpath));
	for (int i = 0, k = 0; i < 2; i++)
		if (l->cgroups[i][0])
			cgv[k++] = l->cgroups[i];
	for (int i = 0; i < vm->spec.nnics; i++) {
		if (l->natfd[i][0] < 0)
			continue;
		if (nat_passt_spawn(vm, i, l->natfd[i][0], cgv, l->as_user ?
		    &l->cred : NULL, err, errlen) < 0)
			return -1;
		close(l->natfd[i][0]);
		l->natfd[i][0] = -1;
	}
	struct proc_spawn sp = {
		.argv = l->argv,
		.logpath = logpath,
		.pidfile = l->pidpath,
		.fds = l->fds,
		.nfds = l->nfds,
		.cgroups = cgv,
		.cred = l->as_user ? &l->cred : NULL,
	};
	if ((pid = proc_spawn_detached(&sp)) < 0) {
		snprintf(err, errlen, "fork: %s", strerror(errno));
		return -1;
	}
	vm->pid = pid;
	fault_point("start:after-spawn");
	launched(vm, l, pid);
	net_ports_changed();
	if ((vm->watch = proc_watch_new(vmgrd->base, pid, vm_qemu_exited,
	    vm)) == NULL) {
		/* Unwatched, its exit would go unnoticed: give up now. */
		snprintf(err, errlen, "cannot watch QEMU: %s", strerror(errno));
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		vm->pid = 0;
		net_forget_vm(vm);
		return -1;
	}
	/* The backlog holds our connection until QEMU accepts it. */
	if ((cfd = sock_connect(l->sock, SOCK_NONBLOCK)) < 0 ||
	    (vm->qmp = qmp_new(vmgrd->base, cfd, &vm_qmp_handlers, vm)) ==
	    NULL) {
		log_warn("%s: %s: QMP connect", __func__, vm->spec.name);
		kill(pid, SIGKILL);
	}
	l->taps_up = 0;	/* QEMU holds them now: they go when it does */
	log_info("%s: QEMU started, pid %d (%s%s)", vm->spec.name, (int)pid,
	    vmgrd->accel, vm_has(vm, VMF_RESTORING) ? ", restoring" :
	    vm_has(vm, VMF_INCOMING) ? ", incoming" : "");
	/* A QEMU that never gets ready is ended: the start fails. */
	vm_arm(vm, START_TIMEOUT_S, vm_kill_now);
	return 0;
}

int
vm_spawn(struct vm *vm, char *err, size_t errlen)
{
	struct launch *l = malloc(sizeof(*l));
	int rc;

	if (l == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	launch_init(l);
	rc = launch_check(vm, l, err, errlen) < 0 ||
	    launch_files(vm, l, err, errlen) < 0 ||
	    launch_nics(vm, l, err, errlen) < 0 ||
	    launch_boot(vm, l, err, errlen) < 0 ||
	    launch_argv(vm, l, err, errlen) < 0 ||
	    launch_exec(vm, l, err, errlen) < 0 ? -1 : 0;
	launch_free(vm, l);
	free(l);
	return rc;
}

/* The VM (other than self) that forwards a conflicting host port. */
const struct vm *
vm_forward_owner(const struct spec_forward *f, const struct vm *self)
{
	struct vm *vm;

	TAILQ_FOREACH(vm, &vmgrd->vms, entry) {
		if (vm == self)
			continue;
		for (int i = 0; i < vm->spec.nnics; i++)
			for (int k = 0; k < vm->spec.nics[i].nforwards; k++)
				if (spec_forward_conflict(f,
				    &vm->spec.nics[i].forwards[k]))
					return vm;
	}
	return NULL;
}

/*
 * Can every forwarded host port be bound right now?  A port another
 * program holds would make QEMU refuse to start; say so first.
 */
int
vm_forwards_free(const struct vm *vm, char *err, size_t errlen)
{
	for (int i = 0; i < vm->spec.nnics; i++)
		for (int k = 0; k < vm->spec.nics[i].nforwards; k++) {
			const struct spec_forward *f = &vm->spec.nics[i].forwards[k];
			struct sockaddr_in sin = { .sin_family = AF_INET,
			    .sin_port = htons((uint16_t)f->host_port) };
			int one = 1, fd, ok;
			inet_pton(AF_INET, f->host_addr, &sin.sin_addr);
			fd = socket(AF_INET, (strcmp(f->proto, "tcp") == 0 ?
			    SOCK_STREAM : SOCK_DGRAM) | SOCK_CLOEXEC, 0);
			if (fd < 0)
				continue;
			setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one,
			    sizeof(one));
			ok = bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0;
			int e = errno;
			close(fd);
			if (!ok) {
				snprintf(err, errlen, "host port %s %s:%d is not "
				    "free: %s", f->proto, f->host_addr,
				    f->host_port, strerror(e));
				return -1;
			}
		}
	return 0;
}

int
vm_spawn_incoming(struct vm *vm, char *err, size_t errlen)
{
	vm->flags |= VMF_INCOMING;
	if (vm_spawn(vm, err, errlen) < 0)
		return -1;
	/*
	 * Its state does not change, so nothing else records its pid: a
	 * vmgrd restarted must find this QEMU (it may run the guest by then).
	 */
	if (db_vm_save_state(vmgrd->db, vm) < 0) {
		snprintf(err, errlen, "cannot record its QEMU: %s",
		    db_errmsg(vmgrd->db));
		vm_kill(vm, SIGKILL);
		return -1;
	}
	return 0;
}
