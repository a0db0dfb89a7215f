/*
 * vm_save.c - save a VM to disk (stop it, migrate its state to a file,
 * make that durable, then let QEMU go) and preempt one for the scheduler,
 * by saving it or, when it cannot be saved, by pausing it.
 */
#include "vm_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../lib/log.h"
#include "../lib/util.h"
#include "../qemu/qmp.h"

static void	save_timeout(evutil_socket_t fd, short what, void *arg);

/* Who a sync(1) run is for: the VM may be gone by the time it ends. */
struct save_ticket {
	int64_t		id;
	unsigned	gen;
};

static void
save_failed(struct vm *vm, const char *why)
{
	char path[PATH_MAX];
	int full = why && (strstr(why, "No space") || strstr(why, "ENOSPC") ||
	    strstr(why, "Disk quota"));

	log_warnx("%s: save failed: %s", vm->spec.name, why);
	vm_path(vm, "state.new", path, sizeof(path));
	unlink(path);
	if (vm_has(vm, VMF_SAVE_WAS_RUNNING) && vm->qmp)
		qmp_command(vm->qmp, "cont", NULL, NULL, NULL);
	vm->busy = OP_NONE;
	vm->save_gen++;		/* a sync still running is for nothing */
	vm_disarm(vm);
	vm_changed();		/* its memory limit back to normal */
	/* Don't try again at once: the disk will not have emptied. */
	if (vm_has(vm, VMF_PREEMPTED)) {
		vm->flags &= ~VMF_PREEMPTED;
		vm->slice_end = now_mono() + vmgrd->quantum_s;
	}
	vm_complete(vm, OP_SAVE, full ? 507 : 500, full ? "no_space" : "save_failed",
	    "cannot save %s: %s; it keeps running", vm->spec.name, why);
}

static void
save_synced(const char *why, const struct fdwork_result *res, void *arg)
{
	struct save_ticket *t = arg;
	struct vm *vm = vm_by_id(t->id);
	char from[PATH_MAX], to[PATH_MAX];
	unsigned gen = t->gen;

	free(t);
	if (vm == NULL || vm->save_gen != gen || vm->busy != OP_SAVE ||
	    vm->pid <= 0)
		return;
	if (why || res[0].error) {
		save_failed(vm, why ? why : strerror(res[0].error));
		return;
	}
	vm_path(vm, "state.new", from, sizeof(from));
	vm_path(vm, "state.sav", to, sizeof(to));
	if (rename(from, to) < 0) {
		save_failed(vm, strerror(errno));
		return;
	}
	if (fsync_dir_of(to) < 0)
		log_warn("%s: fsync the directory of %s", __func__, to);
	/* The state is on disk: QEMU can go, and vm_qemu_exited() records it. */
	fault_point("save:after-state");
	vm->flags |= VMF_SAVE_OK;
	vm_force_off(vm);
}

static void
migration_failed(struct qmp *q, json_t *result, const char *error, void *arg)
{
	struct vm *vm = arg;
	const char *desc = json_string_value(json_object_get(result,
	    "error-desc"));

	(void)q;
	if (vm->busy == OP_SAVE)
		save_failed(vm, desc ? desc : error ? error : "migration failed");
}

/* QEMU's MIGRATION status during a save (vm_qemu.c passes it on). */
void
vm_save_migration(struct vm *vm, const char *status)
{
	char path[PATH_MAX];

	if (vm->busy != OP_SAVE)
		return;
	if (strcmp(status, "completed") == 0) {
		/* Make it durable before QEMU goes, off the loop. */
		struct save_ticket *t = malloc(sizeof(*t));
		int fd;
		vm_path(vm, "state.new", path, sizeof(path));
		if (t == NULL) {
			save_failed(vm, "out of memory");
			return;
		}
		if ((fd = open_private(path, O_RDONLY, 0)) < 0) {
			free(t);
			save_failed(vm, strerror(errno));
			return;
		}
		t->id = vm->id;
		t->gen = vm->save_gen;
		if (fdwork_start(&fd, 1, FDWORK_SYNC, save_synced, t) < 0) {
			free(t);
			save_failed(vm, "cannot sync the state file");
		}
		close(fd);
	} else if (strcmp(status, "failed") == 0 ||
	    strcmp(status, "cancelled") == 0)
		qmp_command(vm->qmp, "query-migrate", NULL, migration_failed,
		    vm);
}

static void
migrate_sent(struct qmp *q, json_t *result, const char *error, void *arg)
{
	struct vm *vm = arg;

	(void)q;
	if (result == NULL && vm->busy == OP_SAVE)
		save_failed(vm, error);
}

static void
save_fd_given(struct qmp *q, json_t *result, const char *error, void *arg)
{
	struct vm *vm = arg;

	if (vm->busy != OP_SAVE)
		return;
	if (result == NULL) {
		save_failed(vm, error);
		return;
	}
	qmp_command(q, "migrate", json_pack("{s:s}", "uri", "fd:vmstate"),
	    migrate_sent, vm);
}

/* The guest is stopped: hand QEMU the state file and migrate into it. */
static void
save_stopped(struct qmp *q, json_t *result, const char *error, void *arg)
{
	struct vm *vm = arg;
	char path[PATH_MAX];
	int fd;

	if (vm->busy != OP_SAVE)
		return;
	if (result == NULL) {
		save_failed(vm, error);
		return;
	}
	/* A file of its own, made now: never one a name pointed to. */
	vm_path(vm, "state.new", path, sizeof(path));
	unlink(path);
	if ((fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW |
	    O_CLOEXEC, 0600)) < 0) {
		save_failed(vm, strerror(errno));
		return;
	}
	if (qmp_command_fd(q, "getfd", json_pack("{s:s}", "fdname",
	    "vmstate"), fd, save_fd_given, vm) < 0)
		save_failed(vm, "cannot pass the state file to QEMU");
	close(fd);
}

/*
 * Save: memory and device state to vm/ID/state.sav, then QEMU goes.  The
 * guest is stopped first (one pass, nothing to iterate); the migration
 * stream goes to a file handed to QEMU with getfd.
 */
static void
vm_save_begin(struct vm *vm, const char *reason)
{
	vm->busy = OP_SAVE;
	vm->flags &= ~VMF_SAVE_OK;
	vm->save_gen++;
	vm_flag(vm, VMF_SAVE_WAS_RUNNING, vm->state == VM_RUNNING);
	snprintf(vm->save_reason, sizeof(vm->save_reason), "%s", reason);
	/* Room in its memory limit for the state file's page cache. */
	vm->limit_memory_mib += vm->spec.memory_mib;
	cgroup_apply(vm);
	vm_arm(vm, SAVE_TIMEOUT_S, save_timeout);
	if (vm_has(vm, VMF_SAVE_WAS_RUNNING))
		qmp_command(vm->qmp, "stop", NULL, save_stopped, vm);
	else {
		json_t *ok = json_object();
		save_stopped(vm->qmp, ok, NULL, vm);
		json_decref(ok);
	}
}

static void
save_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct vm *vm = arg;

	(void)fd;
	(void)what;
	if (vm->busy != OP_SAVE)
		return;
	if (vm->qmp)
		qmp_command(vm->qmp, "migrate_cancel", NULL, NULL, NULL);
	save_failed(vm, "timed out");
}

int
vm_do_save(struct api_call *c)
{
	struct vm *vm = c->vm;

	if (vm_refuse(vm, EV_SAVE, &c->err) < 0 ||
	    vm_need_qmp(vm, &c->err) < 0)
		return API_FAIL;
	if (vm_has(vm, VMF_PREEMPTED))
		return api_err(&c->err, 409, "invalid_transition", "%s is paused "
		    "by the scheduler; it is not the user's to save",
		    vm->spec.name);
	int ret = vm_park(vm, c, OP_SAVE);
	vm_save_begin(vm, "saved by user");
	return ret;
}

static void
vm_preempted(struct qmp *q, json_t *result, const char *error, void *arg)
{
	struct vm *vm = arg;

	(void)q;
	if (vm->busy != OP_PAUSE || !vm_has(vm, VMF_PREEMPTED))
		return;
	vm->busy = OP_NONE;
	if (result == NULL) {
		log_warnx("%s: preempt: %s", vm->spec.name, error);
		vm->flags &= ~VMF_PREEMPTED;
		return;
	}
	vm->queue_seq = ++vmgrd->queue_seq;
	vm->slice_end = 0;
	vm_set_state(vm, EV_PREEMPT, "scheduler", "preempted (rr): CPU");
	vm_changed();
}

/* The scheduler takes the CPU (pause) or the memory (save) of vm. */
void
vm_preempt(struct vm *vm, int by_memory)
{
	if (vm->qmp == NULL || !qmp_is_ready(vm->qmp) || vm->storage)
		return;
	vm->flags |= VMF_PREEMPTED;
	vm->slice_end = 0;
	if (by_memory) {
		vm_save_begin(vm, "preempted (rr): memory");
		return;
	}
	vm->busy = OP_PAUSE;
	qmp_command(vm->qmp, "stop", NULL, vm_preempted, vm);
}
