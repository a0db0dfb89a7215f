/*
 * vm_actions.c - what a user asks of a VM: start, pause, resume, shutdown,
 * stop, save, and its console log; and the scheduler's admit and balloon.
 */
#include "vm_int.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>

#include "../lib/log.h"
#include "../lib/util.h"
#include "../qemu/qmp.h"

static void
sched_resumed(struct qmp *q, json_t *result, const char *error, void *arg)
{
	struct vm *vm = arg;

	(void)q;
	if (vm->busy != OP_RESUME || !vm_has(vm, VMF_PREEMPTED))
		return;
	vm->busy = OP_NONE;
	if (result == NULL) {
		log_warnx("%s: resume: %s", vm->spec.name, error);
		return;
	}
	vm->flags &= ~VMF_PREEMPTED;
	vm->slice_end = 0;
	vm_set_state(vm, EV_RESUME, "scheduler", "its turn again (rr)");
	vm_changed();
}

/*
 * Start: into the queue, and let the scheduler decide.  Admitted at once,
 * the request is answered when the guest runs; queued, it is answered now
 * (202) with the VM's place in the queue and the reason.
 */
static int
do_start(struct api_call *c, struct vm *vm)
{
	char err[256];

	if (vm_refuse(vm, EV_START, &c->err) < 0)
		return API_FAIL;
	if (vm_forwards_free(vm, err, sizeof(err)) < 0)
		return api_err(&c->err, 409, "port_in_use", "cannot start %s: "
		    "%s", vm->spec.name, err);
	char sav[PATH_MAX];
	vm_path(vm, "state.sav", sav, sizeof(sav));
	vm_flag(vm, VMF_RESTORING, vm->state == VM_SAVED || access(sav, F_OK) ==
	    0);
	if (vm_set_state(vm, EV_START, "api", "%s", vm_has(vm, VMF_RESTORING) ?
	    "restore requested" : "start requested") < 0)
		return vm_db_err(&c->err);
	vm->queue_seq = ++vmgrd->queue_seq;
	vm_changed();
	if (vm->busy == OP_START)
		return vm_park(vm, c, OP_START);
	if (vm->state == VM_QUEUED)
		return api_ok(c, 202, vm_json(vm));
	return api_err(&c->err, 422, "start_failed", "cannot start %s: %s",
	    vm->spec.name, vm->reason);
}

static int
by_priority(const void *a, const void *b)
{
	const struct vm *x = *(struct vm *const *)a, *y = *(struct vm *const *)b;

	if (x->spec.resources.priority != y->spec.resources.priority)
		return y->spec.resources.priority - x->spec.resources.priority;
	return x->id < y->id ? -1 : x->id > y->id;
}

int
vm_autostart(void)
{
	char boot[64] = "", last[64] = "";
	struct vm *vm, **v;
	int n = 0, k = 0;

	/* Once per host boot, as libvirt does: not after a vmgrd restart. */
	char *id = read_file("/proc/sys/kernel/random/boot_id", 64, NULL);
	if (id) {
		snprintf(boot, sizeof(boot), "%.*s", (int)strcspn(id, "\n"), id);
		free(id);
	}
	db_setting_get(vmgrd->db, "autostart_boot_id", last, sizeof(last));
	if (boot[0] && strcmp(boot, last) == 0)
		return 0;
	TAILQ_FOREACH(vm, &vmgrd->vms, entry)
		n++;
	if ((v = calloc((size_t)n + 1, sizeof(*v))) == NULL)
		return -1;
	TAILQ_FOREACH(vm, &vmgrd->vms, entry)
		if (vm->spec.autostart && vm->busy == OP_NONE && !vm->storage &&
		    (vm->state == VM_CREATED || vm->state == VM_SAVED ||
		    vm->state == VM_CRASHED))
			v[k++] = vm;
	qsort(v, (size_t)k, sizeof(*v), by_priority);
	for (int i = 0; i < k; i++) {
		char sav[PATH_MAX];
		vm = v[i];
		vm_path(vm, "state.sav", sav, sizeof(sav));
		vm_flag(vm, VMF_RESTORING, vm->state == VM_SAVED ||
		    access(sav, F_OK) == 0);
		if (vm_set_state(vm, EV_START, "vmgrd", "autostart") < 0)
			continue;
		vm->queue_seq = ++vmgrd->queue_seq;
		log_info("%s: autostart (priority %d)", vm->spec.name,
		    vm->spec.resources.priority);
	}
	free(v);
	if (boot[0])
		db_setting_set(vmgrd->db, "autostart_boot_id", boot);
	if (k)
		vm_changed();	/* the scheduler admits them in its order */
	return k;
}

/* The scheduler's word: run this queued (or preempted) VM now. */
int
vm_admit(struct vm *vm)
{
	char err[512];

	if (vm->state == VM_PAUSED && vm_has(vm, VMF_PREEMPTED)) {
		if (vm->qmp == NULL || !qmp_is_ready(vm->qmp))
			return -1;
		vm->busy = OP_RESUME;
		qmp_command(vm->qmp, "cont", NULL, sched_resumed, vm);
		return 0;
	}
	vm->busy = OP_START;
	if (vm_spawn(vm, err, sizeof(err)) < 0) {
		vm->busy = OP_NONE;
		/* Saved state is kept: the next start tries it again. */
		vm_set_state(vm, EV_STOP, "vmgrd", "start failed: %s%s", err,
		    vm_has(vm, VMF_RESTORING) ? " (the saved state is kept)" :
		    "");
		return -1;
	}
	return 0;
}

void
vm_set_balloon(struct vm *vm, long long mib)
{
	if (mib <= 0 || mib == vm->balloon_mib || vm->qmp == NULL ||
	    !qmp_is_ready(vm->qmp))
		return;
	vm->balloon_mib = mib;
	qmp_command(vm->qmp, "balloon", json_pack("{s:I}", "value",
	    (json_int_t)mib << 20), NULL, NULL);
}

static void
paused_or_resumed(struct qmp *q, json_t *result, const char *error,
    void *arg)
{
	struct vm *vm = arg;
	enum vm_op op = vm->busy;
	int pause = op == OP_PAUSE;

	(void)q;
	if (op != OP_PAUSE && op != OP_RESUME)
		return;
	vm->busy = OP_NONE;
	if (result == NULL) {
		vm_complete(vm, op, vm->pid ? 504 : 409, "qmp_failed", "%s %s: %s",
		    pause ? "pause" : "resume", vm->spec.name, error);
		return;
	}
	fault_point(pause ? "pause:after-stop" : "resume:after-cont");
	if (vm_set_state(vm, pause ? EV_PAUSE : EV_RESUME, "api", "%s",
	    pause ? "paused by user" : "resumed by user") < 0) {
		vm_complete(vm, op, 500, "database", "%s", db_errmsg(vmgrd->db));
		return;
	}
	vm_complete(vm, op, 200, NULL, NULL);
}

static int
do_pause_resume(struct api_call *c, struct vm *vm, int pause)
{
	if (vm_refuse(vm, pause ? EV_PAUSE : EV_RESUME, &c->err) < 0 ||
	    vm_need_qmp(vm, &c->err) < 0)
		return API_FAIL;
	vm->busy = pause ? OP_PAUSE : OP_RESUME;
	int ret = vm_park(vm, c, vm->busy);
	qmp_command(vm->qmp, pause ? "stop" : "cont", NULL, paused_or_resumed,
	    vm);
	return ret;
}

static int
do_shutdown(struct api_call *c, struct vm *vm)
{
	static const char *const keys[] = { "timeout_s", "wait", "method",
	    NULL };
	long long timeout = vmgrd->shutdown_timeout_s;
	json_t *body = c->body;
	json_t *wait = body ? json_object_get(body, "wait") : NULL;
	json_t *jm = body ? json_object_get(body, "method") : NULL;
	const char *method = jm ? json_string_value(jm) : "auto";

	if (api_body_keys(&c->err, body, keys) < 0 ||
	    api_body_int(&c->err, body, "timeout_s", 0, 86400, &timeout) < 0)
		return API_FAIL;
	if (wait && !json_is_boolean(wait))
		return api_err(&c->err, 422, "invalid_value",
		    "wait must be true or false");
	if (method == NULL || (strcmp(method, "auto") && strcmp(method,
	    "agent") && strcmp(method, "acpi")))
		return api_err(&c->err, 422, "invalid_value", "method must be "
		    "auto, agent or acpi");
	if (vm_refuse(vm, EV_SHUTDOWN, &c->err) < 0 ||
	    vm_need_qmp(vm, &c->err) < 0)
		return API_FAIL;
	int was_paused = vm->state == VM_PAUSED;
	/* The agent of a paused guest cannot answer: the button, then. */
	int by_agent = strcmp(method, "acpi") != 0 && !was_paused &&
	    agent_ready(vm);
	if (strcmp(method, "agent") == 0 && !by_agent)
		return api_err(&c->err, 409, "no_agent", "the guest agent of %s "
		    "is not connected%s; use --method acpi", vm->spec.name,
		    was_paused ? " (the VM is paused)" : "");
	if (vm_set_state(vm, EV_SHUTDOWN, "api", "%s, %llds to power off",
	    by_agent ? "guest agent shutdown" : "ACPI power button",
	    timeout) < 0)
		return vm_db_err(&c->err);
	/* A paused guest cannot see the button: let it run to act on it. */
	if (was_paused)
		qmp_command(vm->qmp, "cont", NULL, NULL, NULL);
	if (!by_agent || agent_shutdown(vm) < 0)
		qmp_command(vm->qmp, "system_powerdown", NULL, NULL, NULL);
	fault_point("shutdown:after-button");
	vm_arm(vm, (int)timeout, vm_shutdown_timeout);
	if (wait && json_is_false(wait))
		return api_ok(c, 202, vm_json(vm));
	return vm_park(vm, c, OP_SHUTDOWN);
}

static int
do_stop(struct api_call *c, struct vm *vm)
{
	if (vm_refuse(vm, EV_STOP, &c->err) < 0)
		return API_FAIL;
	if (vm->pid <= 0) {
		/* queued, saved or crashed: no QEMU, only the record changes. */
		if (vm_set_state(vm, EV_STOP, "api", "%s", vm->state ==
		    VM_QUEUED ? "taken out of the queue" : "reset by user") < 0)
			return vm_db_err(&c->err);
		vm_drop_saved_state(vm);
		api_ok(c, 200, vm_json(vm));
		vm_changed();
		return API_OK;
	}
	vm->flags |= VMF_STOP_ASKED;
	int ret = vm_park(vm, c, OP_STOP);
	vm_force_off(vm);
	return ret;
}

int
vm_api_action(struct api_call *c)
{
	static const char *const no_keys[] = { NULL };
	const char *action = c->route.arg[1];
	struct vm *vm = c->vm;

	if (strcmp(action, "start") && strcmp(action, "pause") &&
	    strcmp(action, "resume") && strcmp(action, "shutdown") &&
	    strcmp(action, "stop") && strcmp(action, "save"))
		return api_err(&c->err, 404, "unknown_action", "no action "
		    "\"%s\"; actions are start, pause, resume, shutdown, stop, "
		    "save", action);
	if (strcmp(action, "shutdown") != 0 && api_body_keys(&c->err, c->body,
	    no_keys) < 0)
		return API_FAIL;
	/* Disk work ends only on its own; pausing a backup is harmless. */
	if (vm->storage && !(vm->storage == STORAGE_BACKUP &&
	    (strcmp(action, "pause") == 0 || strcmp(action, "resume") == 0)))
		return api_err(&c->err, 409, "busy", "%s is busy (%s in "
		    "progress); try again when it has finished", vm->spec.name,
		    vm_storage_name(vm->storage));
	if (vm->busy == OP_MIGRATE)
		return api_err(&c->err, 409, "migrating", "%s is migrating; "
		    "cancel that first (vmgr migrate %s --cancel)",
		    vm->spec.name, vm->spec.name);
	/* Stop always goes through; anything else waits its turn. */
	if (vm->busy != OP_NONE && strcmp(action, "stop") != 0)
		return api_err(&c->err, 409, "busy", "%s is busy (%s in "
		    "progress); try again", vm->spec.name, vm->busy == OP_START ?
		    "start" : vm->busy == OP_PAUSE ? "pause" : vm->busy ==
		    OP_RESUME ? "resume" : vm->busy == OP_SAVE ? "save" :
		    "create");
	if (vm_has(vm, VMF_PREEMPTED) && (strcmp(action, "resume") == 0 ||
	    strcmp(action, "pause") == 0))
		return api_err(&c->err, 409, "preempted", "%s is paused by the "
		    "scheduler (rr) and resumes on its turn", vm->spec.name);
	if (strcmp(action, "start") == 0)
		return do_start(c, vm);
	if (strcmp(action, "pause") == 0)
		return do_pause_resume(c, vm, 1);
	if (strcmp(action, "resume") == 0)
		return do_pause_resume(c, vm, 0);
	if (strcmp(action, "shutdown") == 0)
		return do_shutdown(c, vm);
	if (strcmp(action, "save") == 0)
		return vm_do_save(c);
	return do_stop(c, vm);
}

int
vm_api_console(struct api_call *c)
{
	char path[PATH_MAX], *log;
	size_t len = 0;
	struct evbuffer *buf;
	struct vm *vm = c->vm;
	const char *start;
	long long tail = 0;

	if (api_query_int(&c->err, &c->query, "tail", 0, 1000000, &tail) < 0)
		return API_FAIL;
	vm_path(vm, "console.log", path, sizeof(path));
	/* The log can grow large; serve its last CONSOLE_MAX bytes at most. */
	int fd = open_private(path, O_RDONLY, 0);
	if (fd < 0 && errno != ENOENT)
		return api_err(&c->err, 500, "console_log", "%s's console log "
		    "%s: %s", vm->spec.name, path, errno == EPERM ||
		    errno == ELOOP ? "not a file of vmgrd's own; refused" :
		    strerror(errno));
	log = NULL;
	if (fd >= 0) {
		off_t size = lseek(fd, 0, SEEK_END);
		off_t from = size > CONSOLE_MAX ? size - CONSOLE_MAX : 0;
		if ((log = malloc((size_t)(size - from) + 1)) != NULL) {
			ssize_t n = pread(fd, log, (size_t)(size - from), from);
			len = n > 0 ? (size_t)n : 0;
			log[len] = '\0';
		}
		close(fd);
	}
	start = log ? log : "";
	if (tail > 0 && log) {
		const char *p = log + len;
		long lines = 0;
		if (p > log && p[-1] == '\n')
			p--;
		while (p > log) {
			if (p[-1] == '\n' && ++lines == tail)
				break;
			p--;
		}
		start = p;
	}
	buf = evbuffer_new();
	evbuffer_add(buf, start, strlen(start));
	free(log);
	return api_ok_text(c, "text/plain; charset=utf-8", buf);
}

void
vm_kill_qemu(struct vm *vm)
{
	vm_kill(vm, SIGKILL);
}

void
vm_arrived(struct vm *vm, int how, const char *from)
{
	vm->flags &= ~VMF_INCOMING;
	vm->busy = OP_NONE;
	if (how > 0) {
		vm_set_state(vm, EV_RESUME, "migration", "migrated from %s",
		    from);
	} else if (how == 0) {
		snprintf(vm->reason, sizeof(vm->reason), "migrated from %s "
		    "(%s, as it was there)", from, vm_state_name(vm->state));
		if (db_vm_save_state(vmgrd->db, vm) < 0)
			vm->flags |= VMF_DB_STALE;
	} else {
		if (vm->pid > 0)
			vm_kill(vm, SIGKILL);
		vm->flags |= VMF_STOP_ASKED;
		if (vm->pid <= 0) {
			vm->flags &= ~VMF_STOP_ASKED;
			vm_set_state(vm, EV_STOP, "migration", "migrated from "
			    "%s; its memory was lost in the switch-over, its "
			    "disks are whole", from);
		}
	}
	vm_changed();
}
