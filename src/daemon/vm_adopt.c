/*
 * vm_adopt.c - vmgrd's start-up: load every VM from the database and
 * re-adopt the QEMUs that outlived the last daemon, or settle the VMs
 * whose QEMU is gone.
 */
#include "vm_int.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../lib/log.h"
#include "../lib/sock.h"
#include "../lib/util.h"
#include "../qemu/argv.h"
#include "../qemu/proc.h"
#include "../qemu/qmp.h"

/*
 * Whether pid is this VM's QEMU: its command line has the VM's -name and
 * the -add-fd that names its run dir; a QEMU started by vmgr 0.1 has its
 * -pidfile in the run dir instead (*legacy), with its NIC sockets there.
 */
static int
is_its_qemu(const struct vm *vm, pid_t pid, int *legacy)
{
	char name[128], marker[PATH_MAX + 64], pidfile[PATH_MAX];
	const char *args[] = { name, marker, NULL };

	if (pid <= 0)
		return 0;
	snprintf(name, sizeof(name), QEMU_NAME_FMT, vm->spec.name);
	*legacy = 0;
	if (qemu_marker(vm->dir, marker, sizeof(marker)) == 0 &&
	    proc_cmdline_has(pid, args))
		return 1;
	vm_path(vm, "qemu.pid", pidfile, sizeof(pidfile));
	args[1] = pidfile;
	return (*legacy = proc_cmdline_has(pid, args));
}

static void
adopt(struct vm *vm)
{
	char sock[PATH_MAX];
	int fd, legacy;

	if (vm->pid <= 0 || kill(vm->pid, 0) < 0 ||
	    !is_its_qemu(vm, vm->pid, &legacy)) {
		int pid = vm->pid;
		vm->pid = 0;
		nat_stop(vm);
		vm_remove_runtime_files(vm);
		vm_set_state(vm, EV_CRASH, "vmgrd", "lost: QEMU (pid %d) is gone",
		    pid);
		return;
	}
	if ((vm->watch = proc_watch_new(vmgrd->base, vm->pid, vm_qemu_exited,
	    vm)) == NULL) {
		log_warn("%s: %s: watch pid %d", __func__, vm->spec.name,
		    (int)vm->pid);
		return;
	}
	if (proc_uid(vm->pid, &vm->qemu_uid) < 0)
		vm->qemu_uid = (uid_t)priv_uid(vm);
	vm_flag(vm, VMF_LEGACY, legacy);
	net_adopt_check(vm);
	net_ports_changed();
	vm_path(vm, "qmp.sock", sock, sizeof(sock));
	if ((fd = sock_connect(sock, SOCK_NONBLOCK)) < 0 || (vm->qmp = qmp_new(vmgrd->base,
	    fd, &vm_qmp_handlers, vm)) == NULL) {
		log_warn("%s: %s: QMP %s", __func__, vm->spec.name, sock);
		return;
	}
	/* A shutdown in progress gets a fresh deadline. */
	if (vm->state == VM_STOPPING)
		vm_arm(vm, vmgrd->shutdown_timeout_s, vm_shutdown_timeout);
}

/*
 * A queued VM after a restart: if vmgrd died while spawning it, end that
 * QEMU; the VM stays queued.
 */
static void
abandon_start(struct vm *vm)
{
	char pidfile[PATH_MAX], *s;
	int legacy;

	vm_path(vm, "qemu.pid", pidfile, sizeof(pidfile));
	if ((s = read_file_private(pidfile, 64, NULL)) != NULL) {
		pid_t pid = (pid_t)atoi(s);
		if (is_its_qemu(vm, pid, &legacy))
			kill(pid, SIGKILL);
		free(s);
	}
	vm->pid = 0;
	vm_remove_runtime_files(vm);
	/* It keeps its place: the scheduler admits it again. */
	vm->queue_seq = ++vmgrd->queue_seq;
	vm_path(vm, "state.sav", pidfile, sizeof(pidfile));
	vm_flag(vm, VMF_RESTORING, access(pidfile, F_OK) == 0);
}

static int
load_one(int64_t id, const char *name, const char *spec, const char *state,
    const char *reason, int64_t state_since, int64_t created_at,
    int64_t started_at, pid_t pid, void *arg)
{
	struct spec_error err;
	json_error_t jerr;
	json_t *j;
	struct vm *vm;
	int st;

	(void)arg;
	if ((vm = vm_new()) == NULL)
		return -1;
	j = json_loads(spec, JSON_DECODE_INT_AS_REAL, &jerr);
	if (j == NULL || spec_from_json(j, &vm->spec, &err) < 0 ||
	    (st = vm_state_parse(state)) < 0) {
		log_warnx("%s: VM %s has an unreadable record; skipped",
		    __func__, name);
		json_decref(j);
		vm_free(vm);
		return 0;
	}
	json_decref(j);
	vm->id = id;
	vm->state = (enum vm_state)st;
	snprintf(vm->reason, sizeof(vm->reason), "%s", reason);
	vm->state_since = state_since;
	vm->created_at = created_at;
	vm->started_at = started_at;
	vm->pid = pid;
	vm_set_dir(vm);
	if (vm->state == VM_PAUSED && strncmp(reason, "preempted", 9) == 0) {
		vm->flags |= VMF_PREEMPTED;
		vm->queue_seq = ++vmgrd->queue_seq;
	}
	TAILQ_INSERT_TAIL(&vmgrd->vms, vm, entry);
	return 0;
}

int
vm_load_all(void)
{
	struct vm *vm;

	if (db_vm_foreach(vmgrd->db, load_one, NULL) < 0)
		return -1;
	TAILQ_FOREACH(vm, &vmgrd->vms, entry) {
		char err[256];
		/* A run dir of vmgr 0.1 was its QEMU's: it becomes root's. */
		if (access(vm->dir, F_OK) == 0 && priv_run_dir(vm, err,
		    sizeof(err)) < 0)
			log_warnx("%s: %s", vm->spec.name, err);
		if (vm->state == VM_QUEUED)
			abandon_start(vm);
		else if (vm_state_has_qemu(vm->state))
			adopt(vm);
	}
	net_hosts_changed();	/* the DHCP servers learn the VMs' MACs */
	vm_changed();
	return 0;
}
