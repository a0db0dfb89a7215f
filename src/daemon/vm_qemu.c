/*
 * vm_qemu.c - what a running QEMU tells us: QMP greeting, events and a
 * lost connection; a start or restore that completes; and the process's
 * exit, which settles every VM state that had a QEMU behind it.
 */
#include "vm_int.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../lib/log.h"
#include "../lib/sock.h"
#include "../lib/util.h"
#include "../qemu/proc.h"
#include "../qemu/qmp.h"

static void	vm_qmp_event(struct qmp *q, const char *name, json_t *data, void *arg);

/*
 * QEMU refused the saved state: keep it as state.sav.failed for a look,
 * and let the next start boot afresh instead of failing again.
 */
static void
quarantine_saved_state(struct vm *vm)
{
	char from[PATH_MAX], to[PATH_MAX + 8];

	vm->flags &= ~VMF_RESTORING;
	vm_path(vm, "state.sav", from, sizeof(from));
	snprintf(to, sizeof(to), "%s.failed", from);
	if (rename(from, to) == 0)
		log_warnx("%s: QEMU refused the saved state; kept as %s",
		    vm->spec.name, to);
}

void
vm_qemu_exited(pid_t pid, int status, void *arg)
{
	struct vm *vm = arg;
	char how[128], tail[256];
	int start_failed = vm->state == VM_QUEUED;

	proc_status_str(status, how, sizeof(how));
	log_info("%s: QEMU pid %d %s", vm->spec.name, (int)pid, how);
	proc_watch_free(vm->watch);
	vm->watch = NULL;
	vm->pid = 0;
	vm_disarm(vm);
	if (vm->reconnect) {
		event_free(vm->reconnect);
		vm->reconnect = NULL;
	}
	if (vm->qmp)
		job_qmp_gone(vm->qmp, how);
	qmp_free(vm->qmp);	/* fails its pending commands */
	vm->qmp = NULL;
	agent_detach(vm);
	display_detach(vm);
	nat_stop(vm);
	vm_remove_runtime_files(vm);
	cgroup_remove(vm);
	net_forget_vm(vm);
	net_taps_down(vm);
	vm->slice_end = 0;
	vm->balloon_mib = vm->balloon_actual_mib = 0;
	vm->alloc_cpu = vm->alloc_memory_mib = 0;

	if (vm->busy == OP_MIGRATE && vm_mig_hooks()->exited) {
		/* The migration decides; an arriving VM stays as it is. */
		vm_mig_hooks()->exited(vm, how);
		if (vm_has(vm, VMF_INCOMING) || vm->busy == OP_MIGRATE) {
			vm_changed();
			return;
		}
	}
	if (vm->busy == OP_SAVE &&
	    vm_has(vm, VMF_SAVE_OK) && vm_has(vm, VMF_STOP_ASKED)) {
		/* Stopped while saving: a stop is a reset, saved state too. */
		vm->flags &= ~VMF_SAVE_OK;
		vm->flags &= ~VMF_PREEMPTED;
		vm_drop_saved_state(vm);
		vm_complete(vm, OP_SAVE, 409, "vm_stopped", "%s was stopped while "
		    "it saved", vm->spec.name);
	}
	if (vm->busy == OP_SAVE && vm_has(vm, VMF_SAVE_OK)) {
		vm->busy = OP_NONE;
		vm->flags &= ~VMF_SAVE_OK;
		vm_set_state(vm, EV_SAVE, vm_has(vm, VMF_PREEMPTED) ?
		    "scheduler" : "api", "%s", vm->save_reason);
		if (vm_has(vm, VMF_PREEMPTED)) {
			/* Back in the queue: it comes back on its turn. */
			vm->flags &= ~VMF_PREEMPTED;
			vm->flags |= VMF_RESTORING;
			vm->queue_seq = ++vmgrd->queue_seq;
			vm_set_state(vm, EV_START, "scheduler", "requeued after "
			    "preemption");
		}
		vm_complete(vm, OP_SAVE, 200, NULL, NULL);
		vm_changed();
		return;
	}
	vm->flags &= ~VMF_PREEMPTED;
	if (start_failed && vm_has(vm, VMF_STOP_ASKED)) {
		vm_drop_saved_state(vm);	/* a stop resets, saved state too */
		vm_set_state(vm, EV_STOP, "api", "stopped while starting");
		vm->busy = OP_NONE;
		vm->flags &= ~VMF_STOP_ASKED;
		vm_complete(vm, OP_START, 409, "vm_stopped", "%s was stopped while "
		    "it started", vm->spec.name);
	} else if (start_failed) {
		vm_qemu_log_tail(vm, tail, sizeof(tail));
		vm_set_state(vm, EV_STOP, "vmgrd", "start failed: QEMU %s: %s",
		    how, tail);
		vm->busy = OP_NONE;
		vm_complete(vm, OP_START, 500, "qemu_failed", "QEMU %s: %s", how,
		    tail);
		if (vm_has(vm, VMF_RESTORING))
			quarantine_saved_state(vm);
	}
	if (start_failed) {
		vm_complete(vm, OP_STOP, 200, NULL, NULL);
		vm_changed();
		return;
	}
	if (vm_has(vm, VMF_STOP_ASKED))
		vm_set_state(vm, EV_STOP, "api", "stopped");
	else if (vm->state == VM_STOPPING && vm_has(vm, VMF_FORCED))
		vm_set_state(vm, EV_STOP, "vmgrd", "shutdown timed out; forced "
		    "off");
	else if (vm_has(vm, VMF_PANICKED))
		vm_set_state(vm, EV_CRASH, "qemu", "guest panicked");
	else if (vm->state == VM_STOPPING && vm_has(vm, VMF_AGENT_OFF))
		vm_set_state(vm, EV_GUEST_OFF, "guest", "guest powered off "
		    "(guest agent)");
	else if (vm->state == VM_STOPPING)
		vm_set_state(vm, EV_GUEST_OFF, "guest", "guest powered off "
		    "(ACPI button)");
	else if (vm_has(vm, VMF_GUEST_OFF))
		vm_set_state(vm, EV_GUEST_OFF, "guest", "guest powered off");
	else {
		vm_qemu_log_tail(vm, tail, sizeof(tail));
		vm_set_state(vm, EV_CRASH, "qemu", "QEMU %s", how);
	}
	vm->busy = OP_NONE;
	vm->flags &= ~(VMF_STOP_ASKED | VMF_FORCED | VMF_GUEST_OFF |
	    VMF_PANICKED | VMF_AGENT_OFF);
	vm_complete(vm, OP_STOP, 200, NULL, NULL);
	vm_complete(vm, OP_SHUTDOWN, 200, NULL, NULL);
	vm_complete(vm, OP_PAUSE, 409, "vm_stopped", "%s stopped meanwhile",
	    vm->spec.name);
	vm_complete(vm, OP_RESUME, 409, "vm_stopped", "%s stopped meanwhile",
	    vm->spec.name);
	vm_complete(vm, OP_SAVE, 409, "vm_stopped", "%s stopped meanwhile",
	    vm->spec.name);
	vm_changed();
}

/*
 * The guest runs once `cont` is answered and QEMU reported RESUME (on a
 * restore the event can come after the reply).
 */
static void
vm_start_done(struct vm *vm)
{
	if (vm->busy != OP_START || vm->state != VM_QUEUED ||
	    !vm_has(vm, VMF_CONT_OK) || !vm_has(vm, VMF_RESUMED))
		return;
	vm->busy = OP_NONE;
	vm_disarm(vm);
	int restored = vm_has(vm, VMF_RESTORING);
	if (vm_set_state(vm, EV_ADMIT, "scheduler", "%s", restored ?
	    "restored from saved state" : "started") < 0) {
		vm_complete(vm, OP_START, 500, "database", "%s",
		    db_errmsg(vmgrd->db));
		vm->flags |= VMF_STOP_ASKED;
		vm_force_off(vm);
		return;
	}
	if (restored)
		vm_drop_saved_state(vm);
	vm_complete(vm, OP_START, 200, NULL, NULL);
	vm_changed();
}

static void
vm_started(struct qmp *q, json_t *result, const char *error, void *arg)
{
	struct vm *vm = arg;

	(void)q;
	if (vm->busy != OP_START || vm->state != VM_QUEUED)
		return;
	if (result == NULL) {
		log_warnx("%s: cont: %s", vm->spec.name, error);
		vm_kill(vm, SIGKILL);	/* vm_qemu_exited() reports it */
		return;
	}
	vm->flags |= VMF_CONT_OK;
	vm_start_done(vm);
}

/*
 * QEMU's MIGRATION status: a restore's end (the guest may go on) or a
 * step of a save.
 */
static void
migration_event(struct vm *vm, const char *status)
{
	if (status == NULL)
		return;
	if (vm->busy == OP_START && vm_has(vm, VMF_RESTORING)) {
		if (strcmp(status, "completed") == 0)
			qmp_command(vm->qmp, "cont", NULL, vm_started, vm);
		else if (strcmp(status, "failed") == 0)
			vm_kill(vm, SIGKILL);	/* start failed */
		return;
	}
	vm_save_migration(vm, status);
}

/* After a QMP reconnect mid-restore: the MIGRATION event may be lost. */
static void
restore_status(struct qmp *q, json_t *result, const char *error, void *arg)
{
	struct vm *vm = arg;

	(void)q;
	(void)error;
	if (result)
		migration_event(vm, json_string_value(json_object_get(result,
		    "status")));
}

static void
restore_begun(struct qmp *q, json_t *result, const char *error, void *arg)
{
	struct vm *vm = arg;

	(void)q;
	if (result == NULL && vm->pid > 0) {
		log_warnx("%s: migrate-incoming: %s", vm->spec.name, error);
		vm_kill(vm, SIGKILL);
	}
	/* The MIGRATION event "completed" lets the guest go (vm_qmp_event). */
}

/* After a vmgrd restart: make the recorded state agree with QEMU's. */
static void
reconciled(struct qmp *q, json_t *result, const char *error, void *arg)
{
	struct vm *vm = arg;
	const char *status;
	int running;

	(void)q;
	if (result == NULL) {
		log_warnx("%s: query-status: %s", vm->spec.name, error);
		return;
	}
	status = json_string_value(json_object_get(result, "status"));
	running = json_is_true(json_object_get(result, "running"));
	log_info("%s: re-adopted QEMU pid %d, status %s", vm->spec.name,
	    (int)vm->pid, status ? status : "?");
	char sav[PATH_MAX];
	vm_path(vm, "state.sav", sav, sizeof(sav));
	if (status && strcmp(status, "postmigrate") == 0 &&
	    access(sav, F_OK) == 0 && (vm->state == VM_RUNNING ||
	    vm->state == VM_PAUSED)) {
		/*
		 * A save whose state was written and synced, but vmgrd died
		 * before QEMU ended: finish it (vm_qemu_exited() records it).
		 */
		vm->busy = OP_SAVE;
		vm->flags |= VMF_SAVE_OK;
		snprintf(vm->save_reason, sizeof(vm->save_reason), "saved "
		    "(finished after vmgrd restart)");
		vm_force_off(vm);
		return;
	}
	if (vm->state == VM_RUNNING && !running)
		vm_set_state(vm, EV_PAUSE, "vmgrd", "found %s after vmgrd "
		    "restart", status ? status : "paused");
	else if (vm->state == VM_PAUSED && running)
		vm_set_state(vm, EV_RESUME, "vmgrd", "found running after vmgrd "
		    "restart");
	if (vm_has(vm, VMF_PREEMPTED))
		vm_changed();	/* its turn may have come meanwhile */
}

static void
vm_qmp_ready(struct qmp *q, void *arg)
{
	struct vm *vm = arg;

	if (vm->busy == OP_MIGRATE && vm_mig_hooks()->ready) {
		vm_disarm(vm);	/* an incoming QEMU waits as long as it must */
		vm_mig_hooks()->ready(vm);
		agent_attach(vm);
		display_attach(vm);
		return;
	}
	/* Jobs a vmgrd or a link that went left behind, done but kept. */
	job_dismiss_stale(q);
	/* MIGRATION events tell when a save or a restore is done. */
	qmp_command(q, "migrate-set-capabilities", json_pack("{s:[{s:s, s:b}]}",
	    "capabilities", "capability", "events", "state", 1), NULL, NULL);
	if (vm->busy == OP_START &&
	    vm_has(vm, VMF_RESTORING) && !vm_has(vm, VMF_RESTORE_SENT)) {
		vm->flags |= VMF_RESTORE_SENT;
		qmp_command(q, "migrate-incoming", json_pack("{s:s}", "uri",
		    "fd:" "4"), restore_begun, vm);
	} else if (vm->busy == OP_START && vm_has(vm, VMF_RESTORING))
		qmp_command(q, "query-migrate", NULL, restore_status, vm);
	else if (vm->busy == OP_START)
		qmp_command(q, "cont", NULL, vm_started, vm);
	else {
		qmp_command(q, "query-status", NULL, reconciled, vm);
		if (vm_mig_hooks()->adopted)
			vm_mig_hooks()->adopted(vm);
	}
	/*
	 * A shutdown under way when vmgrd died: its button press may never
	 * have left vmgrd's buffer.  Pressing again is harmless to a guest
	 * already powering off, and the timeout still runs.
	 */
	if (vm->state == VM_STOPPING && vm->busy == OP_NONE)
		qmp_command(q, "system_powerdown", NULL, NULL, NULL);
	agent_attach(vm);
	display_attach(vm);
}

static void
vm_qmp_event(struct qmp *q, const char *name, json_t *data, void *arg)
{
	struct vm *vm = arg;

	log_debug("%s: QMP event %s", vm->spec.name, name);
	job_event(q, name, data);
	if (vm->busy == OP_MIGRATE && vm_mig_hooks()->event) {
		vm_mig_hooks()->event(vm, name, data);
		if (strcmp(name, "VSERPORT_CHANGE") != 0 &&
		    strcmp(name, "BALLOON_CHANGE") != 0)
			return;
	}
	if (strcmp(name, "SHUTDOWN") == 0) {
		if (json_is_true(json_object_get(data, "guest")))
			vm->flags |= VMF_GUEST_OFF;
	} else if (strcmp(name, "GUEST_PANICKED") == 0) {
		vm->flags |= VMF_PANICKED;
	} else if (strcmp(name, "STOP") == 0) {
		/*
		 * A pause we did not ask for (I/O error, ...).  A snapshot
		 * stops the guest for a moment by itself: not a pause.
		 */
		if (vm->state == VM_RUNNING && vm->busy == OP_NONE &&
		    !vm->storage &&
		    !vm_has(vm, VMF_GUEST_OFF) && !vm_has(vm, VMF_STOP_ASKED))
			vm_set_state(vm, EV_PAUSE, "qemu", "paused by QEMU");
	} else if (strcmp(name, "RESUME") == 0) {
		if (vm->busy == OP_START) {
			vm->flags |= VMF_RESUMED;
			vm_start_done(vm);
		} else if (vm->state == VM_PAUSED && vm->busy == OP_NONE &&
		    !vm->storage)
			vm_set_state(vm, EV_RESUME, "qemu", "resumed by QEMU");
	} else if (strcmp(name, "BALLOON_CHANGE") == 0) {
		vm->balloon_actual_mib = (long long)json_integer_value(
		    json_object_get(data, "actual")) >> 20;
	} else if (strcmp(name, "VSERPORT_CHANGE") == 0) {
		if (strcmp(json_string_value(json_object_get(data, "id")) ?
		    json_string_value(json_object_get(data, "id")) : "",
		    "qga0") == 0)
			agent_port(vm, json_is_true(json_object_get(data,
			    "open")));
	} else if (strcmp(name, "MIGRATION") == 0) {
		migration_event(vm, json_string_value(json_object_get(data,
		    "status")));
	}
}

static void
qmp_reconnect(evutil_socket_t fd, short what, void *arg)
{
	struct vm *vm = arg;
	char sock[PATH_MAX];
	int cfd;

	(void)fd;
	(void)what;
	event_free(vm->reconnect);
	vm->reconnect = NULL;
	if (vm->pid <= 0 || vm->qmp)
		return;
	vm_path(vm, "qmp.sock", sock, sizeof(sock));
	if ((cfd = sock_connect(sock, SOCK_NONBLOCK)) < 0 || (vm->qmp = qmp_new(vmgrd->base,
	    cfd, &vm_qmp_handlers, vm)) == NULL)
		log_warn("%s: %s: reconnect to %s", __func__, vm->spec.name,
		    sock);
}

/*
 * QMP went away while QEMU lives (a command timed out, say): the pid watch
 * still decides the VM's state; try the monitor again in a second.
 */
static void
vm_qmp_closed(struct qmp *q, const char *why, void *arg)
{
	struct vm *vm = arg;
	struct timeval tv = { 1, 0 };

	if (vm->pid <= 0 || q != vm->qmp)
		return;
	log_info("%s: QMP connection closed: %s", vm->spec.name, why);
	job_qmp_gone(q, why);
	qmp_free(vm->qmp);	/* deferred: we are inside its callback */
	vm->qmp = NULL;
	if (vm->reconnect == NULL) {
		vm->reconnect = evtimer_new(vmgrd->base, qmp_reconnect, vm);
		evtimer_add(vm->reconnect, &tv);
	}
}

const struct qmp_handlers vm_qmp_handlers = {
	.ready = vm_qmp_ready,
	.event = vm_qmp_event,
	.closed = vm_qmp_closed,
};
