/*
 * vm.c - the VM object inside vmgrd and the one way its state changes.
 *
 * Every state change goes through vm_set_state(), which asks the table in
 * core/state.c, writes the state and its event row in one database
 * transaction, and publishes the event.  Requests whose outcome comes
 * later (QEMU ready, QEMU gone) park a waiter on the VM; vm_complete()
 * answers the waiters of an operation.  The VM's one timer (vm_arm) is a
 * deadline: a start, a shutdown or a save that overruns it is ended by
 * force.
 *
 * The rest of the VM layer: vm_create.c (create, delete, PATCH),
 * vm_spawn.c (QEMU's command line and process), vm_qemu.c (what QEMU
 * says and when it exits), vm_save.c (save to disk, preemption),
 * vm_actions.c (start, pause, resume, shutdown, stop, console) and
 * vm_adopt.c (start-up: load and re-adopt).  They share vm_int.h.
 */
#include "vm_int.h"

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../lib/log.h"
#include "../lib/util.h"
#include "../qemu/proc.h"
#include "../qemu/qmp.h"

/* What the layers above want to hear of (vm_set_hooks). */
static struct vm_hooks hooks;
static struct vm_mig_hooks mig_hooks;

const char *
vm_storage_name(enum vm_storage s)
{
	static const char *const names[] = { "", "snapshot", "revert",
	    "backup", "restore" };

	return (size_t)s < sizeof(names) / sizeof(names[0]) ? names[s] : "";
}

void
vm_set_hooks(const struct vm_hooks *h)
{
	hooks = *h;
}

void
vm_set_mig_hooks(const struct vm_mig_hooks *h)
{
	mig_hooks = *h;
}

const struct vm_mig_hooks *
vm_mig_hooks(void)
{
	return &mig_hooks;
}

/* The picture changed (a VM came, went, started, stopped): tell above. */
void
vm_changed(void)
{
	if (hooks.changed)
		hooks.changed();
}

struct vm *
vm_new(void)
{
	struct vm *vm = calloc(1, sizeof(*vm));

	if (vm == NULL)
		return NULL;
	TAILQ_INIT(&vm->waiters);
	return vm;
}

void
vm_free(struct vm *vm)
{
	struct parked *w;

	if (vm == NULL)
		return;
	while ((w = TAILQ_FIRST(&vm->waiters)) != NULL) {
		TAILQ_REMOVE(&vm->waiters, w, owner);
		api_drop(w);
	}
	if (vm->qmp)
		job_qmp_gone(vm->qmp, "VM freed");
	qmp_free(vm->qmp);
	agent_detach(vm);
	display_detach(vm);
	proc_watch_free(vm->watch);
	if (vm->timer)
		event_free(vm->timer);
	if (vm->reconnect)
		event_free(vm->reconnect);
	monitor_vm_free(vm);
	net_forget_vm(vm);
	spec_clear(&vm->spec);
	free(vm);
}

/*
 * How to reach its sshd: a TCP forward to port 22 (on loopback when it
 * listens on every address), else its address on a bridge.  NULL: no way.
 */
static json_t *
ssh_json(const struct vm *vm)
{
	const struct vm_spec *s = &vm->spec;
	const char *user = cloudinit_user(s), *host = NULL;
	char cmd[160];
	int port = 22;

	for (int i = 0; i < s->nnics && !host; i++)
		for (int k = 0; k < s->nics[i].nforwards && !host; k++) {
			const struct spec_forward *f = &s->nics[i].forwards[k];
			if (strcmp(f->proto, "tcp") == 0 && f->guest_port == 22) {
				host = strcmp(f->host_addr, "0.0.0.0") == 0 ?
				    "127.0.0.1" : f->host_addr;
				port = f->host_port;
			}
		}
	for (int i = 0; i < s->nnics && !host; i++)
		if (net_nic_bridged_ip(s, i))
			host = s->nics[i].ip;
	if (host == NULL)
		return NULL;
	if (port == 22)
		snprintf(cmd, sizeof(cmd), "ssh %s@%s", user, host);
	else
		snprintf(cmd, sizeof(cmd), "ssh -p %d %s@%s", port, user, host);
	return json_pack("{s:s, s:s, s:i, s:s}", "user", user, "host", host,
	    "port", port, "command", cmd);
}

/* What the guest agent said, and whether it is there. */
static json_t *
guest_json(const struct vm *vm)
{
	json_t *g = vm->guest ? json_deep_copy(vm->guest) : json_object();
	char since[40];

	static const char *const freeze[] = { "thawed", "freezing", "frozen",
	    "thawing" };

	if (vm->pid > 0 && vm->spec.agent.enabled)
		json_object_set_new(g, "freeze", json_string(freeze[vm->freeze]));
	if (!vm->spec.agent.enabled)
		json_object_set_new(g, "agent", json_string("disabled"));
	else if (agent_ready(vm)) {
		json_object_set_new(g, "agent", json_string("connected"));
		json_object_set_new(g, "connected_since", json_string(
		    fmt_time_ms(vm->agent_since, since, sizeof(since))));
	} else {
		json_object_set_new(g, "agent", json_string("disconnected"));
		json_object_set_new(g, "error", json_string(vm->pid > 0 ?
		    vm->agent_error : "not running"));
	}
	return g;
}

/*
 * Its address: the guest's own first IPv4 one (the agent's word), else
 * the one vmgr assigned on a vmgr network.  NULL: none known.
 */
static const char *
vm_ip(const struct vm *vm)
{
	json_t *i, *a;
	size_t k, m;

	json_array_foreach(json_object_get(vm->guest, "interfaces"), k, i) {
		if (strcmp(json_string_value(json_object_get(i, "name")), "lo")
		    == 0)
			continue;
		json_array_foreach(json_object_get(i, "addresses"), m, a) {
			const char *ip = json_string_value(json_object_get(a,
			    "address"));
			const char *fam = json_string_value(json_object_get(a,
			    "family"));
			if (ip && fam && strcmp(fam, "ipv4") == 0 &&
			    strncmp(ip, "127.", 4) != 0)
				return ip;
		}
	}
	for (int n = 0; n < vm->spec.nnics; n++)
		if (vm->spec.nics[n].ip[0])
			return vm->spec.nics[n].ip;
	return NULL;
}

json_t *
vm_json(const struct vm *vm)
{
	char since[40], created[40], path[PATH_MAX];
	json_t *o, *rt;

	o = json_pack("{s:I, s:s, s:s, s:s, s:s, s:s, s:o}",
	    "id", (json_int_t)vm->id,
	    "name", vm->spec.name,
	    "state", vm_state_name(vm->state),
	    "state_reason", vm->reason,
	    "state_since", fmt_time_ms(vm->state_since, since, sizeof(since)),
	    "created_at", fmt_time_ms(vm->created_at, created,
	    sizeof(created)),
	    "spec", spec_to_json(&vm->spec));
	rt = json_object();
	vm_path(vm, "console.sock", path, sizeof(path));
	json_object_set_new(rt, "console_socket", json_string(path));
	vm_path(vm, "console.log", path, sizeof(path));
	json_object_set_new(rt, "console_log", json_string(path));
	if (vm->vnc) {
		vm_path(vm, "vnc.sock", path, sizeof(path));
		json_object_set_new(rt, "vnc_socket", json_string(path));
	}
	json_object_set_new(rt, "dir", json_string(vm->dir));
	if (vm->pid > 0) {
		char started[40];
		json_object_set_new(o, "pid", json_integer(vm->pid));
		json_object_set_new(rt, "pid", json_integer(vm->pid));
		json_object_set_new(rt, "started_at", json_string(
		    fmt_time_ms(vm->started_at, started, sizeof(started))));
		json_object_set_new(o, "uptime_s", json_integer(
		    (now_unix_ms() - vm->started_at) / 1000));
		json_object_set_new(rt, "accel", json_string(vmgrd->accel));
		json_object_set_new(rt, "qmp_connected", json_boolean(
		    vm->qmp && qmp_is_ready(vm->qmp)));
		/* What carries each NIC's frames. */
		json_t *nics = json_array();
		for (int i = 0; i < vm->spec.nnics; i++) {
			const char *net = vm->spec.nics[i].network;
			json_array_append_new(nics, json_pack("{s:i, s:s, s:s}",
			    "nic", i, "network", net, "backend",
			    net_nic_backend(vm, i)));
		}
		json_object_set_new(rt, "nics", nics);
	}
	if (vm->busy != OP_NONE) {
		static const char *const ops[] = { "", "create", "start",
		    "pause", "resume", "shutdown", "stop", "save", "migrate" };
		json_object_set_new(o, "operation", json_string(ops[vm->busy]));
	}
	if (vm->storage)
		json_object_set_new(o, "storage_operation",
		    json_string(vm_storage_name(vm->storage)));
	json_object_set_new(o, "runtime", rt);
	json_t *ssh = vm->spec.cloud_init ? ssh_json(vm) : NULL;
	if (ssh)
		json_object_set_new(o, "ssh", ssh);
	json_object_set_new(o, "guest", guest_json(vm));
	const char *ip = vm->pid > 0 || vm->spec.nnics ? vm_ip(vm) : NULL;
	if (ip)
		json_object_set_new(o, "ip", json_string(ip));
	if (hooks.json)
		hooks.json(vm, o);
	if (mig_hooks.json && vm->mig)
		mig_hooks.json(vm, o);
	return o;
}

void
vm_to_alloc(const struct vm *vm, struct alloc_vm *a)
{
	const struct vm_spec *s = &vm->spec;

	memset(a, 0, sizeof(*a));
	a->policy = (enum alloc_policy)alloc_policy_parse(s->resources.policy);
	a->vcpus = s->vcpus;
	a->memory_mib = s->memory_mib;
	a->min_memory_mib = s->resources.min_memory_mib;
	a->priority = s->resources.priority;
	a->weight = s->resources.weight;
}

/*
 * Move vm to the state `ev` leads to, record it and tell subscribers.
 * Returns 0, or -1 (state unchanged) when the table forbids it or the
 * database refuses the write.
 */
int
vm_set_state(struct vm *vm, enum vm_event ev, const char *actor,
    const char *fmt, ...)
{
	enum vm_state from = vm->state, to;
	char oldreason[sizeof(vm->reason)];
	int64_t oldsince = vm->state_since;
	va_list ap;

	if (vm_transition(from, ev, &to) < 0) {
		log_warnx("%s: %s: %s not allowed in state %s", __func__,
		    vm->spec.name, vm_event_name(ev), vm_state_name(from));
		return -1;
	}
	memcpy(oldreason, vm->reason, sizeof(oldreason));
	va_start(ap, fmt);
	vsnprintf(vm->reason, sizeof(vm->reason), fmt, ap);
	va_end(ap);
	vm->state = to;
	vm->state_since = now_unix_ms();

	struct event_row row = {
		.time = vm->state_since,
		.vm = vm->spec.name,
		.from = vm_state_name(from),
		.to = vm_state_name(to),
		.event = vm_event_name(ev),
		.reason = vm->reason,
		.actor = actor,
	};
	/* Only a start is a wish; every other event has happened. */
	if (db_transition(vmgrd->db, vm, from, &row, ev != EV_START) < 0) {
		if (ev == EV_START) {
			vm->state = from;
			vm->state_since = oldsince;
			memcpy(vm->reason, oldreason, sizeof(oldreason));
			return -1;
		}
		/*
		 * It has happened, even with the reserve gone: vmgrd's view
		 * follows QEMU and the row is written when the database can
		 * take it (vm_db_sync); a restart meanwhile asks QEMU.
		 */
		vm->flags |= VMF_DB_STALE;
		log_warnx("%s: %s -> %s not recorded yet: %s", vm->spec.name,
		    vm_state_name(from), vm_state_name(to),
		    db_errmsg(vmgrd->db));
	}
	log_info("%s: %s -> %s (%s%s%s)", vm->spec.name, vm_state_name(from),
	    vm_state_name(to), vm_event_name(ev), vm->reason[0] ? ": " : "",
	    vm->reason);
	events_publish(&row);
	return 0;
}

/* Write the state of VMs whose transition the database could not take. */
void
vm_db_sync(void)
{
	struct vm *vm;

	TAILQ_FOREACH(vm, &vmgrd->vms, entry)
		if (vm_has(vm, VMF_DB_STALE) && db_vm_save_state(vmgrd->db, vm)
		    == 0) {
			vm->flags &= ~VMF_DB_STALE;
			log_info("%s: %s is recorded now", vm->spec.name,
			    vm_state_name(vm->state));
		}
}

/* The database refused a write: the state dir is full, or worse. */
int
vm_db_err(struct api_err *e)
{
	if (db_full(vmgrd->db))
		return api_err(e, 507, "no_space", "the state dir is full: %s",
		    db_errmsg(vmgrd->db));
	return api_err(e, 500, "database", "%s", db_errmsg(vmgrd->db));
}

/* p (NULL: nobody) waits for the end of vm's operation op. */
void
vm_wait(struct vm *vm, struct parked *p, enum vm_op op)
{
	if (p == NULL)
		return;
	p->tag = (int)op;
	TAILQ_INSERT_TAIL(&vm->waiters, p, owner);
}

/* The call waits for op's end: API_WAIT, or API_FAIL out of memory. */
int
vm_park(struct vm *vm, struct api_call *c, enum vm_op op)
{
	struct parked *p = api_park(c->req, op);

	if (p == NULL)
		return api_err(&c->err, 500, "no_memory", "out of memory");
	vm_wait(vm, p, op);
	return API_WAIT;
}

/*
 * Answer every waiter of op: with the VM's JSON when status is 200, else
 * with the error.
 */
void
vm_complete(struct vm *vm, enum vm_op op, int status, const char *code,
    const char *fmt, ...)
{
	struct parked *w, *next;
	char msg[512] = "";
	va_list ap;

	if (fmt) {
		va_start(ap, fmt);
		vsnprintf(msg, sizeof(msg), fmt, ap);
		va_end(ap);
	}
	for (w = TAILQ_FIRST(&vm->waiters); w; w = next) {
		next = TAILQ_NEXT(w, owner);
		if (w->tag != (int)op)
			continue;
		TAILQ_REMOVE(&vm->waiters, w, owner);
		if (status == 200 || status == 201)
			api_answer(w, status, vm_json(vm));
		else
			api_answer_error(w, status, code, "%s", msg);
	}
}

/* Signal the VM's QEMU, if it has one: never kill(0, ...). */
void
vm_kill(struct vm *vm, int sig)
{
	if (vm->pid > 0)
		kill(vm->pid, sig);
}

void
vm_disarm(struct vm *vm)
{
	if (vm->timer) {
		event_free(vm->timer);
		vm->timer = NULL;
	}
}

void
vm_arm(struct vm *vm, int seconds, void (*fn)(evutil_socket_t, short, void *))
{
	struct timeval tv = { seconds, 0 };

	vm_disarm(vm);
	vm->timer = evtimer_new(vmgrd->base, fn, vm);
	evtimer_add(vm->timer, &tv);
}

void
vm_kill_now(evutil_socket_t fd, short what, void *arg)
{
	struct vm *vm = arg;

	(void)fd;
	(void)what;
	if (vm->pid > 0) {
		log_warnx("%s: QEMU pid %d did not exit; SIGKILL",
		    vm->spec.name, (int)vm->pid);
		vm_kill(vm, SIGKILL);
	}
}

/* Ask QEMU to quit now (no guest involvement); SIGKILL if it won't. */
void
vm_force_off(struct vm *vm)
{
	if (vm->pid <= 0)
		return;
	if (vm->qmp && qmp_is_ready(vm->qmp))
		qmp_command(vm->qmp, "quit", NULL, NULL, NULL);
	else
		vm_kill(vm, SIGTERM);
	fault_point("stop:after-quit");
	vm_arm(vm, STOP_GRACE_S, vm_kill_now);
}

void
vm_shutdown_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct vm *vm = arg;

	(void)fd;
	(void)what;
	log_warnx("%s: the guest did not power off in time; forcing",
	    vm->spec.name);
	vm->flags |= VMF_FORCED;
	vm_force_off(vm);
}

void
vm_remove_runtime_files(const struct vm *vm)
{
	static const char *const files[] = { "qmp.sock", "console.sock",
	    "agent.sock", "vnc.sock", "qemu.pid", "state.new" };
	char path[PATH_MAX];

	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		vm_path(vm, files[i], path, sizeof(path));
		unlink(path);
	}
	for (int i = 0; i < vm->spec.nnics; i++) {
		nic_sock_path(vm, i, path, sizeof(path));
		unlink(path);
		/* Where earlier vmgrds had QEMU bind a datagram socket. */
		snprintf(path, sizeof(path), "%s/qemu/net%d.sock", vm->dir, i);
		unlink(path);
		snprintf(path, sizeof(path), "%s/net%d.sock", vm->dir, i);
		unlink(path);
	}
}

/* A VM that is no longer saved has no use for its saved memory. */
void
vm_drop_saved_state(struct vm *vm)
{
	char path[PATH_MAX];

	vm->flags &= ~VMF_RESTORING;
	vm_path(vm, "state.sav", path, sizeof(path));
	unlink(path);
}

/* vmgrd is exiting: QEMUs go on; only our side is released. */
void
vm_shutdown_daemon(void)
{
	struct vm *vm;

	while ((vm = TAILQ_FIRST(&vmgrd->vms)) != NULL) {
		TAILQ_REMOVE(&vmgrd->vms, vm, entry);
		vm_free(vm);
	}
}

/* 0 if the table lets vm take ev now, else -1 with the 409. */
int
vm_refuse(const struct vm *vm, enum vm_event ev, struct api_err *e)
{
	enum vm_state next;
	char allowed[128];

	if (vm_transition(vm->state, ev, &next) == 0)
		return 0;
	return api_err(e, 409, "invalid_transition", "cannot %s %s: it is "
	    "%s (%s allows: %s)", vm_event_name(ev), vm->spec.name,
	    vm_state_name(vm->state), vm_state_name(vm->state),
	    vm_allowed_events(vm->state, allowed, sizeof(allowed)));
}

/* 0 if QEMU's monitor is there to be asked, else -1 with the 503. */
int
vm_need_qmp(const struct vm *vm, struct api_err *e)
{
	if (vm->qmp && qmp_is_ready(vm->qmp))
		return 0;
	return api_err(e, 503, "qmp_unavailable", "%s: QEMU's monitor is "
	    "not connected; try again, or stop the VM", vm->spec.name);
}

/* The last non-empty line of QEMU's log: why it refused to start. */
void
vm_qemu_log_tail(const struct vm *vm, char *buf, size_t len)
{
	char path[PATH_MAX];

	vm_path(vm, "qemu.log", path, sizeof(path));
	if (last_line(path, buf, len) < 0)
		snprintf(buf, len, "no message from QEMU");
}
