/*
 * vm.c - the lifecycle of VMs inside vmgrd: create and delete, start,
 * pause, resume, shutdown and stop, and what happens when QEMU reports an
 * event or exits.  Every state change goes through transition(), which asks
 * the table in core/state.c, writes the state and its event row in one
 * database transaction, and publishes the event.
 *
 * Requests whose outcome comes later (QEMU ready, QEMU gone) park a waiter
 * on the VM; complete() answers the waiters of an operation.
 */
#include "daemon.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include <event2/buffer.h>

#include "../lib/log.h"
#include "../lib/util.h"
#include "../qemu/argv.h"
#include "../qemu/proc.h"
#include "../qemu/qmp.h"

#define STOP_GRACE_S	5	/* quit/SIGTERM before SIGKILL */
#define START_TIMEOUT_S	60	/* spawn to running, restores included */
#define SAVE_TIMEOUT_S	600	/* a save that takes longer is abandoned */
#define CONSOLE_MAX	(1 << 20)

static void	qemu_exited(pid_t, int, void *);
static void	qmp_ready(struct qmp *, void *);
static void	qmp_event(struct qmp *, const char *, json_t *, void *);
static void	qmp_closed(struct qmp *, const char *, void *);
static void	migration_event(struct vm *, const char *status);
static void	arm(struct vm *, int, void (*)(evutil_socket_t, short, void *));
static void	disarm(struct vm *);
static void	kill_now(evutil_socket_t, short, void *);
static void	drop_saved_state(struct vm *);

static const struct qmp_handlers vm_qmp_handlers = {
	.ready = qmp_ready,
	.event = qmp_event,
	.closed = qmp_closed,
};



/* What the layers above want to hear of (vm_set_hooks). */
static struct vm_hooks hooks;

void
vm_set_hooks(const struct vm_hooks *h)
{
	hooks = *h;
}

/* The picture changed (a VM came, went, started, stopped): tell above. */
static void
vm_changed(void)
{
	if (hooks.changed)
		hooks.changed();
}

static struct vm *
vm_new(void)
{
	struct vm *vm = calloc(1, sizeof(*vm));

	if (vm == NULL)
		return NULL;
	TAILQ_INIT(&vm->waiters);
	return vm;
}

static void
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
	}
	if (vm->busy != OP_NONE) {
		static const char *const ops[] = { "", "create", "start",
		    "pause", "resume", "shutdown", "stop", "save" };
		json_object_set_new(o, "operation", json_string(ops[vm->busy]));
	}
	if (vm->storage_op[0])
		json_object_set_new(o, "storage_operation",
		    json_string(vm->storage_op));
	json_object_set_new(o, "runtime", rt);
	if (hooks.json)
		hooks.json(vm, o);
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
static int
transition(struct vm *vm, enum vm_event ev, const char *actor,
    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static int
transition(struct vm *vm, enum vm_event ev, const char *actor,
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
		vm->db_stale = 1;
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
		if (vm->db_stale && db_vm_save_state(vmgrd->db, vm) == 0) {
			vm->db_stale = 0;
			log_info("%s: %s is recorded now", vm->spec.name,
			    vm_state_name(vm->state));
		}
}

static void
reply_db_error(struct evhttp_request *req)
{
	if (db_full(vmgrd->db))
		api_reply_error(req, 507, "no_space", "the state dir is full: "
		    "%s", db_errmsg(vmgrd->db));
	else
		api_reply_error(req, 500, "database", "%s",
		    db_errmsg(vmgrd->db));
}

static void
park(struct vm *vm, struct evhttp_request *req, enum vm_op op)
{
	struct parked *w;

	if (req == NULL)	/* an internal request: nobody to answer */
		return;
	if ((w = api_park(req, op)) == NULL) {
		api_reply_error(req, 500, "no_memory", "out of memory");
		return;
	}
	TAILQ_INSERT_TAIL(&vm->waiters, w, owner);
}

/*
 * Answer every waiter of op: with the VM's JSON when status is 200, else
 * with the error.
 */
static void
complete(struct vm *vm, enum vm_op op, int status, const char *code,
    const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void
complete(struct vm *vm, enum vm_op op, int status, const char *code,
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

/* The last non-empty line of QEMU's log: why it refused to start. */
static void
qemu_log_tail(const struct vm *vm, char *buf, size_t len)
{
	char path[PATH_MAX];

	vm_path(vm, "qemu.log", path, sizeof(path));
	if (last_line(path, buf, len) < 0)
		snprintf(buf, len, "no message from QEMU");
}

/* Resolve kernel, initrd and command line from the image or the spec. */
static int
resolve_boot(const struct vm_spec *spec, char *kernel, char *initrd,
    char **cmdline, char *err, size_t errlen)
{
	struct stat st;

	*cmdline = NULL;
	initrd[0] = '\0';
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

/* ---- host port forwards ---------------------------------------------- */

/* The VM (other than self) that forwards a conflicting host port. */
static const struct vm *
forward_owner(const struct spec_forward *f, const struct vm *self)
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
static int
forwards_free(const struct vm *vm, char *err, size_t errlen)
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

/* ---- create and delete ---------------------------------------------- */

static void
random_mac(char *buf, size_t len)
{
	unsigned char r[3];

	if (getrandom(r, sizeof(r), 0) != sizeof(r)) {
		unsigned int x = (unsigned int)now_unix_ms() ^ (unsigned)getpid();
		r[0] = x >> 16; r[1] = x >> 8; r[2] = x;
	}
	/* 52:54:00 is QEMU's locally administered prefix. */
	snprintf(buf, len, "52:54:00:%02x:%02x:%02x", r[0], r[1], r[2]);
}

/* Is mac used by another VM, or by another NIC (not `skip`) of self? */
static int
mac_in_use(const char *mac, const struct vm *self, int skip)
{
	struct vm *vm;

	TAILQ_FOREACH(vm, &vmgrd->vms, entry)
		for (int i = 0; i < vm->spec.nnics; i++)
			if (vm != self && strcasecmp(vm->spec.nics[i].mac,
			    mac) == 0)
				return 1;
	for (int i = 0; i < self->spec.nnics; i++)
		if (i != skip && strcasecmp(self->spec.nics[i].mac, mac) == 0)
			return 1;
	return 0;
}

/*
 * Undo the volumes a create was making: they are its own (it reserved
 * their names), whatever of them is there (a file, a row) goes.
 */
static void
remove_new_disks(struct vm *vm)
{
	for (int i = 0; i < vm->spec.ndisks; i++)
		if (vm->spec.disks[i].size > 0)
			volume_forget(vm->spec.disks[i].volume);
}

/* All disks are made: make the VM real, or undo everything. */
static void
create_finish(struct vm *vm)
{
	char *spec_json = NULL;
	json_t *sj;

	if (vm->create_error[0]) {
		int full = strstr(vm->create_error, "No space") != NULL;
		remove_new_disks(vm);
		complete(vm, OP_CREATE, full ? 507 : 500, full ? "no_space" :
		    "qemu_img", "cannot create disk: %s", vm->create_error);
		goto drop;
	}
	sj = spec_to_json(&vm->spec);
	spec_json = json_dumps(sj, JSON_COMPACT);
	json_decref(sj);

	struct event_row row = {
		.time = vm->created_at,
		.vm = vm->spec.name,
		.from = NULL,
		.to = vm_state_name(VM_CREATED),
		.event = "create",
		.reason = vm->reason,
		.actor = "api",
	};
	/*
	 * Volume rows first: a crash before the VM's row leaves volumes
	 * owned by no VM, which the next start removes.
	 */
	for (int i = 0; i < vm->spec.ndisks; i++)
		if (vm->spec.disks[i].size > 0 && volume_register(
		    vm->spec.disks[i].volume, vm->spec.name) < 0)
			goto dberr;
	fault_point("create:after-volumes");
	if (spec_json == NULL || db_vm_insert(vmgrd->db, vm, spec_json,
	    &row) < 0)
		goto dberr;
	fault_point("create:after-insert");
	vm_set_dir(vm);
	char derr[256];
	if (priv_run_dir(vm, derr, sizeof(derr)) < 0)
		log_warnx("%s: %s", __func__, derr);
	free(spec_json);
	vm->creating = 0;
	vm->busy = OP_NONE;
	log_info("%s: created", vm->spec.name);
	events_publish(&row);
	net_hosts_changed();
	complete(vm, OP_CREATE, 201, NULL, NULL);
	return;
dberr:
	if (db_full(vmgrd->db))
		complete(vm, OP_CREATE, 507, "no_space", "the state dir is full: "
		    "%s", db_errmsg(vmgrd->db));
	else
		complete(vm, OP_CREATE, 500, "database", "%s",
		    db_errmsg(vmgrd->db));
	remove_new_disks(vm);
drop:
	free(spec_json);
	TAILQ_REMOVE(&vmgrd->vms, vm, entry);
	vm_free(vm);
}

static void
disk_made(const char *error, int no_space, void *arg)
{
	struct vm *vm = arg;

	(void)no_space;
	if (error && !vm->create_error[0])
		snprintf(vm->create_error, sizeof(vm->create_error), "%s",
		    error);
	if (--vm->ndisks_left == 0)
		create_finish(vm);
}

void
vm_api_create(struct evhttp_request *req, json_t *body)
{
	struct spec_error err;
	char kernel[PATH_MAX], initrd[PATH_MAX], msg[512], *cmdline;
	struct vm *vm = vm_new();

	if (vm == NULL) {
		api_reply_error(req, 500, "no_memory", "out of memory");
		return;
	}
	if (spec_from_json(body, &vm->spec, &err) < 0) {
		api_reply_error(req, err.status, err.code, "%s", err.message);
		goto fail;
	}
	if (vm_find_any(vm->spec.name)) {
		api_reply_error(req, 409, "exists", "a VM named \"%s\" already "
		    "exists", vm->spec.name);
		goto fail;
	}
	struct alloc_vm a;
	vm_to_alloc(vm, &a);
	if (alloc_fits_host(&vmgrd->cap, &a, msg, sizeof(msg)) < 0) {
		api_reply_error(req, 422, "exceeds_capacity", "%s can never run "
		    "here: it %s", vm->spec.name, msg);
		goto fail;
	}
	if (resolve_boot(&vm->spec, kernel, initrd, &cmdline, msg,
	    sizeof(msg)) < 0) {
		api_reply_error(req, 422, vm->spec.image[0] ? "no_such_image" :
		    "missing_file", "%s", msg);
		goto fail;
	}
	free(cmdline);
	for (int i = 0; i < vm->spec.ndisks; i++) {
		const char *vol = vm->spec.disks[i].volume, *user;
		char first[80];
		if (vm->spec.disks[i].size > 0) {
			if (volume_exists(vol)) {
				api_reply_error(req, 409, "volume_exists", "volume "
				    "\"%s\" already exists; attach it with "
				    "{\"volume\": \"%s\"} (no size)", vol, vol);
				goto fail;
			}
			continue;
		}
		if (!volume_exists(vol)) {
			api_reply_error(req, 422, "no_such_volume", "no volume "
			    "named \"%s\" to attach; give it a size to make "
			    "one", vol);
			goto fail;
		}
		if ((user = volume_user(vol)) != NULL) {
			api_reply_error(req, 409, "volume_in_use", "volume %s "
			    "is attached to VM %s", vol, user);
			goto fail;
		}
		if (volume_clones(vol, first, sizeof(first)) > 0) {
			api_reply_error(req, 409, "volume_is_base", "volume %s "
			    "is the base of linked clones (%s) and stays "
			    "read-only; attach a clone of it instead", vol,
			    first);
			goto fail;
		}
	}
	for (int i = 0; i < vm->spec.nnics; i++) {
		struct spec_nic *nic = &vm->spec.nics[i];
		if (nic->mac[0] && mac_in_use(nic->mac, vm, i)) {
			api_reply_error(req, 409, "mac_in_use", "MAC %s is "
			    "already used", nic->mac);
			goto fail;
		}
		while (!nic->mac[0]) {
			char mac[18];
			random_mac(mac, sizeof(mac));
			if (!mac_in_use(mac, vm, -1))
				memcpy(nic->mac, mac, sizeof(mac));
		}
		for (int k = 0; k < nic->nforwards; k++) {
			const struct vm *o = forward_owner(&nic->forwards[k], vm);
			if (o) {
				api_reply_error(req, 409, "port_in_use", "host port "
				    "%s %d is already forwarded to VM %s",
				    nic->forwards[k].proto,
				    nic->forwards[k].host_port, o->spec.name);
				goto fail;
			}
		}
	}
	if (net_assign_ips(&vm->spec, msg, sizeof(msg)) < 0) {
		api_reply_error(req, 422, "unknown_network", "%s", msg);
		goto fail;
	}
	/* Its new volumes' names are taken from now on (the check is above). */
	for (int i = 0; i < vm->spec.ndisks; i++) {
		if (vm->spec.disks[i].size == 0)
			continue;
		if (volume_reserve(vm->spec.disks[i].volume, vm->spec.name) < 0) {
			for (int k = 0; k < i; k++)
				if (vm->spec.disks[k].size > 0)
					volume_unreserve(vm->spec.disks[k].volume);
			api_reply_error(req, 409, "volume_exists", "volume \"%s\" "
			    "already exists", vm->spec.disks[i].volume);
			goto fail;
		}
	}
	vm->state = VM_CREATED;
	vm->created_at = vm->state_since = now_unix_ms();
	vm->creating = 1;
	vm->busy = OP_CREATE;
	TAILQ_INSERT_TAIL(&vmgrd->vms, vm, entry);
	park(vm, req, OP_CREATE);
	if (vm->spec.ndisks == 0) {
		create_finish(vm);
		return;
	}
	/* qemu-img runs as child processes; the loop goes on meanwhile. */
	int ndisks = vm->spec.ndisks;
	vm->ndisks_left = ndisks + 1;	/* one more, dropped below */
	for (int i = 0; i < ndisks; i++) {
		if (vm->spec.disks[i].size == 0) {
			vm->ndisks_left--;
			continue;
		}
		if (volume_make_empty(vm->spec.disks[i].volume,
		    vm->spec.disks[i].size, disk_made, vm) < 0) {
			snprintf(vm->create_error, sizeof(vm->create_error),
			    "cannot run qemu-img: %s", strerror(errno));
			vm->ndisks_left--;
		}
	}
	if (--vm->ndisks_left == 0)
		create_finish(vm);	/* may free vm */
	return;
fail:
	vm_free(vm);
}

void
vm_api_delete(struct evhttp_request *req, struct vm *vm)
{
	enum vm_state next;
	char allowed[128];

	if (vm->storage_op[0]) {
		api_reply_error(req, 409, "busy", "cannot delete %s: a %s is in "
		    "progress", vm->spec.name, vm->storage_op);
		return;
	}
	if (vm->busy != OP_NONE || vm_transition(vm->state, EV_DELETE,
	    &next) < 0) {
		api_reply_error(req, 409, "invalid_transition", "cannot delete "
		    "%s: it is %s%s; stop it first (%s allows: %s)",
		    vm->spec.name, vm_state_name(vm->state),
		    vm->busy ? " and busy" : "", vm_state_name(vm->state),
		    vm_allowed_events(vm->state, allowed, sizeof(allowed)));
		return;
	}
	struct event_row row = {
		.time = now_unix_ms(),
		.vm = vm->spec.name,
		.from = vm_state_name(vm->state),
		.to = vm_state_name(VM_DELETED),
		.event = "delete",
		.reason = "",
		.actor = "api",
	};
	if (db_vm_delete(vmgrd->db, vm, &row) < 0) {
		reply_db_error(req);
		return;
	}
	fault_point("delete:after-row");
	/*
	 * The record is gone first: a crash here leaves volumes owned by no
	 * VM, which the next start removes.  Attached volumes stay.
	 */
	for (int i = 0; i < vm->spec.ndisks; i++)
		if (volume_owned_by(vm->spec.disks[i].volume, vm->spec.name))
			volume_forget(vm->spec.disks[i].volume);
	if (rm_rf(vm->dir) < 0)
		log_warn("%s: rm -r %s", __func__, vm->dir);
	log_info("%s: deleted", vm->spec.name);
	events_publish(&row);
	api_reply_json(req, 200, json_pack("{s:s, s:s}", "name", vm->spec.name,
	    "state", "deleted"));
	TAILQ_REMOVE(&vmgrd->vms, vm, entry);
	net_hosts_changed();	/* its MACs leave the DHCP servers */
	vm_free(vm);
}

/* ---- QEMU process ---------------------------------------------------- */

/* Open the existing tap device name, as QEMU would (vnet header on). */
static int
tap_open(const char *name)
{
	struct ifreq ifr;
	int fd;

	if ((fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC)) < 0)
		return -1;
	memset(&ifr, 0, sizeof(ifr));
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%.15s", name);
	if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
		int e = errno;
		close(fd);
		return errno = e, -1;
	}
	return fd;
}

int
qmp_sock_listen(const char *path)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int fd;

	if (strlen(path) >= sizeof(sun.sun_path))
		return errno = ENAMETOOLONG, -1;
	strcpy(sun.sun_path, path);
	unlink(path);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
		return -1;
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0 ||
	    listen(fd, 1) < 0) {
		int e = errno;
		close(fd);
		return errno = e, -1;
	}
	return fd;
}

int
qmp_sock_connect(const char *path)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int fd;

	if (strlen(path) >= sizeof(sun.sun_path))
		return errno = ENAMETOOLONG, -1;
	strcpy(sun.sun_path, path);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK,
	    0)) < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		int e = errno;
		close(fd);
		return errno = e, -1;
	}
	return fd;
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
 * with "cont" when QMP is up (qmp_ready).  Everything QEMU is given in its
 * run dir (sockets, logs, saved state) is made there by vmgrd and passed as
 * a descriptor; whatever fails releases all of it on one path.
 */
static int
spawn_qemu(struct vm *vm, char *err, size_t errlen)
{
	char kernel[PATH_MAX], initrd[PATH_MAX], *cmdline = NULL;
	char sock[PATH_MAX], csock[PATH_MAX], logpath[PATH_MAX];
	char pidpath[PATH_MAX], path[PATH_MAX];
	char disks[SPEC_MAX_DISKS][PATH_MAX];
	const char *diskp[SPEC_MAX_DISKS];
	char **argv = NULL, cgroups[2][PATH_MAX];
	char netsock[SPEC_MAX_NICS][PATH_MAX], taps[SPEC_MAX_NICS][16];
	const char *nets[SPEC_MAX_NICS] = { NULL };
	const char *tapp[SPEC_MAX_NICS] = { NULL };
	int tapfd[SPEC_MAX_NICS], qtapfd[SPEC_MAX_NICS];
	int fds[QEMU_FIRST_TAP_FD - 3 + SPEC_MAX_NICS], nfds;
	int lfd = -1, cfd = -1, restfd = -1, confd = -1, logfd = -1;
	int taps_up = 0, as_user = 0, rc = -1;
	struct proc_cred cred;
	pid_t pid;

	for (int i = 0; i < SPEC_MAX_NICS; i++)
		tapfd[i] = qtapfd[i] = -1;
	if (resolve_boot(&vm->spec, kernel, initrd, &cmdline, err, errlen) < 0)
		return -1;
	if (forwards_free(vm, err, errlen) < 0 ||
	    net_vm_ready(vm, err, errlen) < 0)
		goto fail;
	for (int i = 0; i < vm->spec.ndisks; i++) {
		volume_path(vm->spec.disks[i].volume, disks[i],
		    sizeof(disks[i]));
		if (access(disks[i], R_OK | W_OK) < 0) {
			snprintf(err, errlen, "disk %s: %s", disks[i],
			    strerror(errno));
			goto fail;
		}
		diskp[i] = disks[i];
	}
	/* Its run dir and its volumes, ready for the user it runs as. */
	if (priv_prepare_vm(vm, &cred, &as_user, err, errlen) < 0)
		goto fail;
	rotate(vm, "console.log");
	rotate(vm, "qemu.log");
	vm_path(vm, "qemu.pid", pidpath, sizeof(pidpath));
	unlink(pidpath);
	vm_path(vm, "qmp.sock", sock, sizeof(sock));
	vm_path(vm, "console.sock", csock, sizeof(csock));
	if ((lfd = qmp_sock_listen(sock)) < 0 ||
	    (confd = qmp_sock_listen(csock)) < 0) {
		snprintf(err, errlen, "%.300s: %s", lfd < 0 ? sock : csock,
		    strerror(errno));
		goto fail;
	}
	vm_path(vm, "console.log", path, sizeof(path));
	if ((logfd = open_private(path, O_WRONLY | O_CREAT | O_APPEND,
	    0600)) < 0) {
		snprintf(err, errlen, "%.300s: %s", path, strerror(errno));
		goto fail;
	}
	vm_path(vm, "state.sav", path, sizeof(path));
	if ((restfd = vm->restoring ? open_private(path, O_RDONLY, 0) :
	    open("/dev/null", O_RDONLY | O_CLOEXEC)) < 0) {
		snprintf(err, errlen, "%.300s: %s", path, errno == EPERM ||
		    errno == ELOOP ? "not a file of vmgrd's own; refused" :
		    strerror(errno));
		goto fail;
	}
	if (cgroup_prepare(vm, cgroups) < 0) {
		snprintf(err, errlen, "cannot create the VM's cgroup");
		goto fail;
	}
	/* NICs on vmgr networks: the switch's socket, and the guest's IPs. */
	for (int i = 0; i < vm->spec.nnics; i++) {
		int64_t id = net_id(vm->spec.nics[i].network);
		nic_sock_path(vm, i, path, sizeof(path));
		unlink(path);
		if (strcmp(vm->spec.nics[i].network, "nat") == 0 ||
		    net_nic_is_tap(vm, i))
			continue;
		if (id < 0) {
			snprintf(err, errlen, "network %s does not exist",
			    vm->spec.nics[i].network);
			goto fail;
		}
		if (strlen(path) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
			snprintf(err, errlen, "%.300s: path too long for a "
			    "socket", path);
			goto fail;
		}
		net_sock_path(id, netsock[i], sizeof(netsock[i]));
		nets[i] = netsock[i];
	}
	fds[0] = lfd;
	fds[1] = restfd;
	fds[2] = confd;
	fds[3] = logfd;
	nfds = QEMU_FIRST_TAP_FD - 3;
	taps_up = 1;
	if (net_taps_up(vm, taps, err, errlen) < 0)
		goto fail;
	/*
	 * vmgrd opens each tap and hands it over: QEMU, running as its own
	 * user, needs no access to /dev/net/tun.
	 */
	for (int i = 0; i < vm->spec.nnics; i++) {
		if (!taps[i][0])
			continue;
		tapp[i] = taps[i];
		if ((tapfd[i] = tap_open(taps[i])) < 0) {
			snprintf(err, errlen, "tap %s: %s", taps[i],
			    strerror(errno));
			goto fail;
		}
		qtapfd[i] = 3 + nfds;
		fds[nfds++] = tapfd[i];
	}
	if (fault_fail("start:after-taps")) {
		snprintf(err, errlen, "injected failure (VMGR_FAIL_AT)");
		goto fail;
	}
	char ipargs[SPEC_MAX_NICS * 48], *fullcmd = NULL;
	net_cmdline(&vm->spec, ipargs, sizeof(ipargs));
	if (ipargs[0] && asprintf(&fullcmd, "%s%s", cmdline ? cmdline : "",
	    ipargs) > 0) {
		free(cmdline);
		cmdline = fullcmd;
	}
	struct qemu_conf conf = {
		.binary = vmgrd->qemu_binary,
		.accel = vmgrd->accel,
		.vmdir = vm->dir,
		.kernel = kernel,
		.initrd = initrd[0] ? initrd : NULL,
		.cmdline = cmdline,
		.disks = diskp,
		.paused = 1,
		.incoming = vm->restoring,
		.nets = nets,
		.taps = tapp,
		.tapfds = qtapfd,
	};
	if ((argv = qemu_argv(&vm->spec, &conf)) == NULL) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	vm_path(vm, "qemu.log", logpath, sizeof(logpath));
	char *cgv[3] = { NULL, NULL, NULL };
	for (int i = 0, k = 0; i < 2; i++)
		if (cgroups[i][0])
			cgv[k++] = cgroups[i];
	struct proc_spawn sp = {
		.argv = argv,
		.logpath = logpath,
		.pidfile = pidpath,
		.fds = fds,
		.nfds = nfds,
		.cgroups = cgv,
		.cred = as_user ? &cred : NULL,
	};
	if ((pid = proc_spawn_detached(&sp)) < 0) {
		snprintf(err, errlen, "fork: %s", strerror(errno));
		goto fail;
	}
	vm->pid = pid;
	vm->legacy_layout = 0;
	fault_point("start:after-spawn");
	vm->started_at = now_unix_ms();
	vm->guest_off = vm->panicked = vm->forced = vm->stop_requested = 0;
	vm->start_cont_ok = vm->start_resumed = vm->restore_sent = 0;
	memset(vm->nic_rx_bytes, 0, sizeof(vm->nic_rx_bytes));
	memset(vm->nic_tx_bytes, 0, sizeof(vm->nic_tx_bytes));
	memset(vm->nic_rx_packets, 0, sizeof(vm->nic_rx_packets));
	memset(vm->nic_tx_packets, 0, sizeof(vm->nic_tx_packets));
	memset(vm->nic_spoofed, 0, sizeof(vm->nic_spoofed));
	vm->qemu_uid = as_user ? cred.uid : geteuid();
	net_ports_changed();
	if ((vm->watch = proc_watch_new(vmgrd->base, pid, qemu_exited, vm)) ==
	    NULL) {
		/* Unwatched, its exit would go unnoticed: give up now. */
		snprintf(err, errlen, "cannot watch QEMU: %s", strerror(errno));
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		vm->pid = 0;
		net_forget_vm(vm);
		goto fail;
	}
	/* The backlog holds our connection until QEMU accepts it. */
	if ((cfd = qmp_sock_connect(sock)) < 0 || (vm->qmp = qmp_new(vmgrd->base,
	    cfd, &vm_qmp_handlers, vm)) == NULL) {
		log_warn("%s: %s: QMP connect", __func__, vm->spec.name);
		kill(pid, SIGKILL);
	}
	taps_up = 0;	/* QEMU holds them now: they go when it does */
	log_info("%s: QEMU started, pid %d (%s%s)", vm->spec.name, (int)pid,
	    vmgrd->accel, vm->restoring ? ", restoring" : "");
	/* A QEMU that never gets ready is ended: the start fails. */
	arm(vm, START_TIMEOUT_S, kill_now);
	rc = 0;
fail:
	/* QEMU has its own copies of every descriptor it was given. */
	if (lfd >= 0)
		close(lfd);
	if (confd >= 0)
		close(confd);
	if (logfd >= 0)
		close(logfd);
	if (restfd >= 0)
		close(restfd);
	for (int i = 0; i < SPEC_MAX_NICS; i++)
		if (tapfd[i] >= 0)
			close(tapfd[i]);
	if (taps_up)
		net_taps_down(vm);
	strv_free(argv);
	free(cmdline);
	return rc;
}

/* Signal the VM's QEMU, if it has one: never kill(0, ...). */
static void
vm_kill(struct vm *vm, int sig)
{
	if (vm->pid > 0)
		kill(vm->pid, sig);
}

static void
disarm(struct vm *vm)
{
	if (vm->timer) {
		event_free(vm->timer);
		vm->timer = NULL;
	}
}

static void
arm(struct vm *vm, int seconds, void (*fn)(evutil_socket_t, short, void *))
{
	struct timeval tv = { seconds, 0 };

	disarm(vm);
	vm->timer = evtimer_new(vmgrd->base, fn, vm);
	evtimer_add(vm->timer, &tv);
}

static void
kill_now(evutil_socket_t fd, short what, void *arg)
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
static void
force_off(struct vm *vm)
{
	if (vm->pid <= 0)
		return;
	if (vm->qmp && qmp_is_ready(vm->qmp))
		qmp_command(vm->qmp, "quit", NULL, NULL, NULL);
	else
		vm_kill(vm, SIGTERM);
	fault_point("stop:after-quit");
	arm(vm, STOP_GRACE_S, kill_now);
}

static void
shutdown_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct vm *vm = arg;

	(void)fd;
	(void)what;
	log_warnx("%s: the guest did not power off in time; forcing",
	    vm->spec.name);
	vm->forced = 1;
	force_off(vm);
}

static void
remove_runtime_files(const struct vm *vm)
{
	static const char *const files[] = { "qmp.sock", "console.sock",
	    "qemu.pid", "state.new" };
	char path[PATH_MAX];

	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		vm_path(vm, files[i], path, sizeof(path));
		unlink(path);
	}
	for (int i = 0; i < vm->spec.nnics; i++) {
		nic_sock_path(vm, i, path, sizeof(path));
		unlink(path);
	}
}

/* A VM that is no longer saved has no use for its saved memory. */
static void
drop_saved_state(struct vm *vm)
{
	char path[PATH_MAX];

	vm->restoring = 0;
	vm_path(vm, "state.sav", path, sizeof(path));
	unlink(path);
}

/*
 * QEMU refused the saved state: keep it as state.sav.failed for a look,
 * and let the next start boot afresh instead of failing again.
 */
static void
quarantine_saved_state(struct vm *vm)
{
	char from[PATH_MAX], to[PATH_MAX + 8];

	vm->restoring = 0;
	vm_path(vm, "state.sav", from, sizeof(from));
	snprintf(to, sizeof(to), "%s.failed", from);
	if (rename(from, to) == 0)
		log_warnx("%s: QEMU refused the saved state; kept as %s",
		    vm->spec.name, to);
}

static void
qemu_exited(pid_t pid, int status, void *arg)
{
	struct vm *vm = arg;
	char how[128], tail[256];
	int start_failed = vm->state == VM_QUEUED;

	proc_status_str(status, how, sizeof(how));
	log_info("%s: QEMU pid %d %s", vm->spec.name, (int)pid, how);
	proc_watch_free(vm->watch);
	vm->watch = NULL;
	vm->pid = 0;
	disarm(vm);
	if (vm->reconnect) {
		event_free(vm->reconnect);
		vm->reconnect = NULL;
	}
	if (vm->qmp)
		job_qmp_gone(vm->qmp, how);
	qmp_free(vm->qmp);	/* fails its pending commands */
	vm->qmp = NULL;
	remove_runtime_files(vm);
	cgroup_remove(vm);
	net_forget_vm(vm);
	net_taps_down(vm);
	vm->slice_end = 0;
	vm->balloon_mib = vm->balloon_actual_mib = 0;
	vm->alloc_cpu = vm->alloc_memory_mib = 0;

	if (vm->busy == OP_SAVE && vm->save_ok && vm->stop_requested) {
		/* Stopped while saving: a stop is a reset, saved state too. */
		vm->save_ok = 0;
		vm->preempted = 0;
		drop_saved_state(vm);
		complete(vm, OP_SAVE, 409, "vm_stopped", "%s was stopped while "
		    "it saved", vm->spec.name);
	}
	if (vm->busy == OP_SAVE && vm->save_ok) {
		vm->busy = OP_NONE;
		vm->save_ok = 0;
		transition(vm, EV_SAVE, vm->preempted ? "scheduler" : "api",
		    "%s", vm->save_reason);
		if (vm->preempted) {
			/* Back in the queue: it comes back on its turn. */
			vm->preempted = 0;
			vm->restoring = 1;
			vm->queue_seq = ++vmgrd->queue_seq;
			transition(vm, EV_START, "scheduler", "requeued after "
			    "preemption");
		}
		complete(vm, OP_SAVE, 200, NULL, NULL);
		vm_changed();
		return;
	}
	vm->preempted = 0;
	if (start_failed && vm->stop_requested) {
		drop_saved_state(vm);	/* a stop resets, saved state too */
		transition(vm, EV_STOP, "api", "stopped while starting");
		vm->busy = OP_NONE;
		vm->stop_requested = 0;
		complete(vm, OP_START, 409, "vm_stopped", "%s was stopped while "
		    "it started", vm->spec.name);
	} else if (start_failed) {
		qemu_log_tail(vm, tail, sizeof(tail));
		transition(vm, EV_STOP, "vmgrd", "start failed: QEMU %s: %s",
		    how, tail);
		vm->busy = OP_NONE;
		complete(vm, OP_START, 500, "qemu_failed", "QEMU %s: %s", how,
		    tail);
		if (vm->restoring)
			quarantine_saved_state(vm);
	}
	if (start_failed) {
		complete(vm, OP_STOP, 200, NULL, NULL);
		vm_changed();
		return;
	}
	if (vm->stop_requested)
		transition(vm, EV_STOP, "api", "stopped");
	else if (vm->state == VM_STOPPING && vm->forced)
		transition(vm, EV_STOP, "vmgrd", "shutdown timed out; forced "
		    "off");
	else if (vm->panicked)
		transition(vm, EV_CRASH, "qemu", "guest panicked");
	else if (vm->state == VM_STOPPING || vm->guest_off)
		transition(vm, EV_GUEST_OFF, "guest", "guest powered off");
	else {
		qemu_log_tail(vm, tail, sizeof(tail));
		transition(vm, EV_CRASH, "qemu", "QEMU %s", how);
	}
	vm->busy = OP_NONE;
	vm->stop_requested = vm->forced = vm->guest_off = vm->panicked = 0;
	complete(vm, OP_STOP, 200, NULL, NULL);
	complete(vm, OP_SHUTDOWN, 200, NULL, NULL);
	complete(vm, OP_PAUSE, 409, "vm_stopped", "%s stopped meanwhile",
	    vm->spec.name);
	complete(vm, OP_RESUME, 409, "vm_stopped", "%s stopped meanwhile",
	    vm->spec.name);
	complete(vm, OP_SAVE, 409, "vm_stopped", "%s stopped meanwhile",
	    vm->spec.name);
	vm_changed();
}

/* ---- QMP ----------------------------------------------------------- */

/*
 * The guest runs once `cont` is answered and QEMU reported RESUME (on a
 * restore the event can come after the reply).
 */
static void
start_done(struct vm *vm)
{
	if (vm->busy != OP_START || vm->state != VM_QUEUED ||
	    !vm->start_cont_ok || !vm->start_resumed)
		return;
	vm->busy = OP_NONE;
	disarm(vm);
	int restored = vm->restoring;
	if (transition(vm, EV_ADMIT, "scheduler", "%s", restored ?
	    "restored from saved state" : "started") < 0) {
		complete(vm, OP_START, 500, "database", "%s",
		    db_errmsg(vmgrd->db));
		vm->stop_requested = 1;
		force_off(vm);
		return;
	}
	if (restored)
		drop_saved_state(vm);
	complete(vm, OP_START, 200, NULL, NULL);
	vm_changed();
}

static void
started(struct qmp *q, json_t *result, const char *error, void *arg)
{
	struct vm *vm = arg;

	(void)q;
	if (vm->busy != OP_START || vm->state != VM_QUEUED)
		return;
	if (result == NULL) {
		log_warnx("%s: cont: %s", vm->spec.name, error);
		vm_kill(vm, SIGKILL);	/* qemu_exited() reports it */
		return;
	}
	vm->start_cont_ok = 1;
	start_done(vm);
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
	/* The MIGRATION event "completed" lets the guest go (qmp_event). */
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
		 * before QEMU ended: finish it (qemu_exited() records it).
		 */
		vm->busy = OP_SAVE;
		vm->save_ok = 1;
		snprintf(vm->save_reason, sizeof(vm->save_reason), "saved "
		    "(finished after vmgrd restart)");
		force_off(vm);
		return;
	}
	if (vm->state == VM_RUNNING && !running)
		transition(vm, EV_PAUSE, "vmgrd", "found %s after vmgrd "
		    "restart", status ? status : "paused");
	else if (vm->state == VM_PAUSED && running)
		transition(vm, EV_RESUME, "vmgrd", "found running after vmgrd "
		    "restart");
	if (vm->preempted)
		vm_changed();	/* its turn may have come meanwhile */
}

static void
qmp_ready(struct qmp *q, void *arg)
{
	struct vm *vm = arg;

	/* Jobs a vmgrd or a link that went left behind, done but kept. */
	job_dismiss_stale(q);
	/* MIGRATION events tell when a save or a restore is done. */
	qmp_command(q, "migrate-set-capabilities", json_pack("{s:[{s:s, s:b}]}",
	    "capabilities", "capability", "events", "state", 1), NULL, NULL);
	if (vm->busy == OP_START && vm->restoring && !vm->restore_sent) {
		vm->restore_sent = 1;
		qmp_command(q, "migrate-incoming", json_pack("{s:s}", "uri",
		    "fd:" "4"), restore_begun, vm);
	} else if (vm->busy == OP_START && vm->restoring)
		qmp_command(q, "query-migrate", NULL, restore_status, vm);
	else if (vm->busy == OP_START)
		qmp_command(q, "cont", NULL, started, vm);
	else
		qmp_command(q, "query-status", NULL, reconciled, vm);
}

static void
qmp_event(struct qmp *q, const char *name, json_t *data, void *arg)
{
	struct vm *vm = arg;

	log_debug("%s: QMP event %s", vm->spec.name, name);
	job_event(q, name, data);
	if (strcmp(name, "SHUTDOWN") == 0) {
		if (json_is_true(json_object_get(data, "guest")))
			vm->guest_off = 1;
	} else if (strcmp(name, "GUEST_PANICKED") == 0) {
		vm->panicked = 1;
	} else if (strcmp(name, "STOP") == 0) {
		/*
		 * A pause we did not ask for (I/O error, ...).  A snapshot
		 * stops the guest for a moment by itself: not a pause.
		 */
		if (vm->state == VM_RUNNING && vm->busy == OP_NONE &&
		    !vm->storage_op[0] &&
		    !vm->guest_off && !vm->stop_requested)
			transition(vm, EV_PAUSE, "qemu", "paused by QEMU");
	} else if (strcmp(name, "RESUME") == 0) {
		if (vm->busy == OP_START) {
			vm->start_resumed = 1;
			start_done(vm);
		} else if (vm->state == VM_PAUSED && vm->busy == OP_NONE &&
		    !vm->storage_op[0])
			transition(vm, EV_RESUME, "qemu", "resumed by QEMU");
	} else if (strcmp(name, "BALLOON_CHANGE") == 0) {
		vm->balloon_actual_mib = (long long)json_integer_value(
		    json_object_get(data, "actual")) >> 20;
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
	if ((cfd = qmp_sock_connect(sock)) < 0 || (vm->qmp = qmp_new(vmgrd->base,
	    cfd, &vm_qmp_handlers, vm)) == NULL)
		log_warn("%s: %s: reconnect to %s", __func__, vm->spec.name,
		    sock);
}

/*
 * QMP went away while QEMU lives (a command timed out, say): the pid watch
 * still decides the VM's state; try the monitor again in a second.
 */
static void
qmp_closed(struct qmp *q, const char *why, void *arg)
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

/* ---- actions ---------------------------------------------------------- */

static int
refuse_transition(struct evhttp_request *req, struct vm *vm,
    enum vm_event ev)
{
	enum vm_state next;
	char allowed[128];

	if (vm_transition(vm->state, ev, &next) == 0)
		return 0;
	api_reply_error(req, 409, "invalid_transition", "cannot %s %s: it is "
	    "%s (%s allows: %s)", vm_event_name(ev), vm->spec.name,
	    vm_state_name(vm->state), vm_state_name(vm->state),
	    vm_allowed_events(vm->state, allowed, sizeof(allowed)));
	return -1;
}

static int
need_qmp(struct evhttp_request *req, struct vm *vm)
{
	if (vm->qmp && qmp_is_ready(vm->qmp))
		return 0;
	api_reply_error(req, 503, "qmp_unavailable", "%s: QEMU's monitor is "
	    "not connected; try again, or stop the VM", vm->spec.name);
	return -1;
}

static void
sched_resumed(struct qmp *q, json_t *result, const char *error, void *arg)
{
	struct vm *vm = arg;

	(void)q;
	if (vm->busy != OP_RESUME || !vm->preempted)
		return;
	vm->busy = OP_NONE;
	if (result == NULL) {
		log_warnx("%s: resume: %s", vm->spec.name, error);
		return;
	}
	vm->preempted = 0;
	vm->slice_end = 0;
	transition(vm, EV_RESUME, "scheduler", "its turn again (rr)");
	vm_changed();
}

/*
 * Start: into the queue, and let the scheduler decide.  Admitted at once,
 * the request is answered when the guest runs; queued, it is answered now
 * (202) with the VM's place in the queue and the reason.
 */
static void
do_start(struct evhttp_request *req, struct vm *vm)
{
	char err[256];

	if (refuse_transition(req, vm, EV_START) < 0)
		return;
	if (forwards_free(vm, err, sizeof(err)) < 0) {
		api_reply_error(req, 409, "port_in_use", "cannot start %s: %s",
		    vm->spec.name, err);
		return;
	}
	char sav[PATH_MAX];
	vm_path(vm, "state.sav", sav, sizeof(sav));
	vm->restoring = vm->state == VM_SAVED || access(sav, F_OK) == 0;
	if (transition(vm, EV_START, "api", "%s", vm->restoring ?
	    "restore requested" : "start requested") < 0) {
		reply_db_error(req);
		return;
	}
	vm->queue_seq = ++vmgrd->queue_seq;
	vm_changed();
	if (vm->busy == OP_START)
		park(vm, req, OP_START);
	else if (vm->state == VM_QUEUED)
		api_reply_json(req, 202, vm_json(vm));
	else
		api_reply_error(req, 422, "start_failed", "cannot start %s: %s",
		    vm->spec.name, vm->reason);
}

/* The scheduler's word: run this queued (or preempted) VM now. */
int
vm_admit(struct vm *vm)
{
	char err[512];

	if (vm->state == VM_PAUSED && vm->preempted) {
		if (vm->qmp == NULL || !qmp_is_ready(vm->qmp))
			return -1;
		vm->busy = OP_RESUME;
		qmp_command(vm->qmp, "cont", NULL, sched_resumed, vm);
		return 0;
	}
	vm->busy = OP_START;
	if (spawn_qemu(vm, err, sizeof(err)) < 0) {
		vm->busy = OP_NONE;
		/* Saved state is kept: the next start tries it again. */
		transition(vm, EV_STOP, "vmgrd", "start failed: %s%s", err,
		    vm->restoring ? " (the saved state is kept)" : "");
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

/* ---- save and preemption --------------------------------------------- */

static void	save_timeout(evutil_socket_t, short, void *);

static void
save_failed(struct vm *vm, const char *why)
{
	char path[PATH_MAX];
	int full = why && (strstr(why, "No space") || strstr(why, "ENOSPC") ||
	    strstr(why, "Disk quota"));

	log_warnx("%s: save failed: %s", vm->spec.name, why);
	vm_path(vm, "state.new", path, sizeof(path));
	unlink(path);
	if (vm->save_was_running && vm->qmp)
		qmp_command(vm->qmp, "cont", NULL, NULL, NULL);
	vm->busy = OP_NONE;
	vm->save_gen++;		/* a sync still running is for nothing */
	disarm(vm);
	vm_changed();		/* its memory limit back to normal */
	/* Don't try again at once: the disk will not have emptied. */
	if (vm->preempted) {
		vm->preempted = 0;
		vm->slice_end = now_mono() + vmgrd->quantum_s;
	}
	complete(vm, OP_SAVE, full ? 507 : 500, full ? "no_space" : "save_failed",
	    "cannot save %s: %s; it keeps running", vm->spec.name, why);
}

/* Who a sync(1) run is for: the VM may be gone by the time it ends. */
struct save_ticket {
	int64_t		id;
	unsigned	gen;
};


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
	/* The state is on disk: QEMU can go, and qemu_exited() records it. */
	fault_point("save:after-state");
	vm->save_ok = 1;
	force_off(vm);
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

static void
migration_event(struct vm *vm, const char *status)
{
	char path[PATH_MAX];

	if (status == NULL)
		return;
	if (vm->busy == OP_START && vm->restoring) {
		if (strcmp(status, "completed") == 0)
			qmp_command(vm->qmp, "cont", NULL, started, vm);
		else if (strcmp(status, "failed") == 0)
			vm_kill(vm, SIGKILL);	/* start failed */
		return;
	}
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
save_begin(struct vm *vm, const char *reason)
{
	vm->busy = OP_SAVE;
	vm->save_ok = 0;
	vm->save_gen++;
	vm->save_was_running = vm->state == VM_RUNNING;
	snprintf(vm->save_reason, sizeof(vm->save_reason), "%s", reason);
	/* Room in its memory limit for the state file's page cache. */
	vm->limit_memory_mib += vm->spec.memory_mib;
	cgroup_apply(vm);
	arm(vm, SAVE_TIMEOUT_S, save_timeout);
	if (vm->save_was_running)
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

static void
do_save(struct evhttp_request *req, struct vm *vm)
{
	if (refuse_transition(req, vm, EV_SAVE) < 0 || need_qmp(req, vm) < 0)
		return;
	if (vm->preempted) {
		api_reply_error(req, 409, "invalid_transition", "%s is paused by "
		    "the scheduler; it is not the user's to save", vm->spec.name);
		return;
	}
	park(vm, req, OP_SAVE);
	save_begin(vm, "saved by user");
}

static void
preempted(struct qmp *q, json_t *result, const char *error, void *arg)
{
	struct vm *vm = arg;

	(void)q;
	if (vm->busy != OP_PAUSE || !vm->preempted)
		return;
	vm->busy = OP_NONE;
	if (result == NULL) {
		log_warnx("%s: preempt: %s", vm->spec.name, error);
		vm->preempted = 0;
		return;
	}
	vm->queue_seq = ++vmgrd->queue_seq;
	vm->slice_end = 0;
	transition(vm, EV_PREEMPT, "scheduler", "preempted (rr): CPU");
	vm_changed();
}

/* The scheduler takes the CPU (pause) or the memory (save) of vm. */
void
vm_preempt(struct vm *vm, int by_memory)
{
	if (vm->qmp == NULL || !qmp_is_ready(vm->qmp) || vm->storage_op[0])
		return;
	vm->preempted = 1;
	vm->slice_end = 0;
	if (by_memory) {
		save_begin(vm, "preempted (rr): memory");
		return;
	}
	vm->busy = OP_PAUSE;
	qmp_command(vm->qmp, "stop", NULL, preempted, vm);
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
		complete(vm, op, vm->pid ? 504 : 409, "qmp_failed", "%s %s: %s",
		    pause ? "pause" : "resume", vm->spec.name, error);
		return;
	}
	fault_point(pause ? "pause:after-stop" : "resume:after-cont");
	if (transition(vm, pause ? EV_PAUSE : EV_RESUME, "api", "%s",
	    pause ? "paused by user" : "resumed by user") < 0) {
		complete(vm, op, 500, "database", "%s", db_errmsg(vmgrd->db));
		return;
	}
	complete(vm, op, 200, NULL, NULL);
}

static void
do_pause_resume(struct evhttp_request *req, struct vm *vm, int pause)
{
	if (refuse_transition(req, vm, pause ? EV_PAUSE : EV_RESUME) < 0 ||
	    need_qmp(req, vm) < 0)
		return;
	vm->busy = pause ? OP_PAUSE : OP_RESUME;
	park(vm, req, vm->busy);
	qmp_command(vm->qmp, pause ? "stop" : "cont", NULL, paused_or_resumed,
	    vm);
}

static void
do_shutdown(struct evhttp_request *req, struct vm *vm, json_t *body)
{
	static const char *const keys[] = { "timeout_s", "wait", NULL };
	long long timeout = vmgrd->shutdown_timeout_s;
	json_t *wait = body ? json_object_get(body, "wait") : NULL;

	if (api_body_keys(req, body, keys) < 0 ||
	    api_body_int(req, body, "timeout_s", 0, 86400, &timeout) < 0)
		return;
	if (wait && !json_is_boolean(wait)) {
		api_reply_error(req, 422, "invalid_value",
		    "wait must be true or false");
		return;
	}
	if (refuse_transition(req, vm, EV_SHUTDOWN) < 0 ||
	    need_qmp(req, vm) < 0)
		return;
	int was_paused = vm->state == VM_PAUSED;
	if (transition(vm, EV_SHUTDOWN, "api", "ACPI power button, %llds to "
	    "power off", timeout) < 0) {
		reply_db_error(req);
		return;
	}
	/* A paused guest cannot see the button: let it run to act on it. */
	if (was_paused)
		qmp_command(vm->qmp, "cont", NULL, NULL, NULL);
	qmp_command(vm->qmp, "system_powerdown", NULL, NULL, NULL);
	fault_point("shutdown:after-button");
	arm(vm, (int)timeout, shutdown_timeout);
	if (wait && json_is_false(wait))
		api_reply_json(req, 202, vm_json(vm));
	else
		park(vm, req, OP_SHUTDOWN);
}

static void
do_stop(struct evhttp_request *req, struct vm *vm)
{
	if (refuse_transition(req, vm, EV_STOP) < 0)
		return;
	if (vm->pid <= 0) {
		/* queued, saved or crashed: no QEMU, only the record changes. */
		if (transition(vm, EV_STOP, "api", "%s", vm->state ==
		    VM_QUEUED ? "taken out of the queue" : "reset by user") < 0) {
			reply_db_error(req);
			return;
		}
		drop_saved_state(vm);
		api_reply_json(req, 200, vm_json(vm));
		vm_changed();
		return;
	}
	vm->stop_requested = 1;
	park(vm, req, OP_STOP);
	force_off(vm);
}

void
vm_api_action(struct evhttp_request *req, struct vm *vm, const char *action,
    json_t *body)
{
	static const char *const no_keys[] = { NULL };

	if (strcmp(action, "start") && strcmp(action, "pause") &&
	    strcmp(action, "resume") && strcmp(action, "shutdown") &&
	    strcmp(action, "stop") && strcmp(action, "save")) {
		api_reply_error(req, 404, "unknown_action", "no action \"%s\"; "
		    "actions are start, pause, resume, shutdown, stop, save",
		    action);
		return;
	}
	if (strcmp(action, "shutdown") != 0 && api_body_keys(req, body,
	    no_keys) < 0)
		return;
	/* Disk work ends only on its own; pausing a backup is harmless. */
	if (vm->storage_op[0] && !(strcmp(vm->storage_op, "backup") == 0 &&
	    (strcmp(action, "pause") == 0 || strcmp(action, "resume") == 0))) {
		api_reply_error(req, 409, "busy", "%s is busy (%s in progress); "
		    "try again when it has finished", vm->spec.name,
		    vm->storage_op);
		return;
	}
	/* Stop always goes through; anything else waits its turn. */
	if (vm->busy != OP_NONE && strcmp(action, "stop") != 0) {
		api_reply_error(req, 409, "busy", "%s is busy (%s in progress); "
		    "try again", vm->spec.name, vm->busy == OP_START ? "start" :
		    vm->busy == OP_PAUSE ? "pause" : vm->busy == OP_RESUME ?
		    "resume" : vm->busy == OP_SAVE ? "save" : "create");
		return;
	}
	if (vm->preempted && (strcmp(action, "resume") == 0 ||
	    strcmp(action, "pause") == 0)) {
		api_reply_error(req, 409, "preempted", "%s is paused by the "
		    "scheduler (rr) and resumes on its turn", vm->spec.name);
		return;
	}
	if (strcmp(action, "start") == 0)
		do_start(req, vm);
	else if (strcmp(action, "pause") == 0)
		do_pause_resume(req, vm, 1);
	else if (strcmp(action, "resume") == 0)
		do_pause_resume(req, vm, 0);
	else if (strcmp(action, "shutdown") == 0)
		do_shutdown(req, vm, body);
	else if (strcmp(action, "save") == 0)
		do_save(req, vm);
	else
		do_stop(req, vm);
}

void
vm_api_console(struct evhttp_request *req, struct vm *vm, long tail)
{
	char path[PATH_MAX], *log;
	size_t len = 0;
	struct evbuffer *buf = evbuffer_new();
	const char *start;

	vm_path(vm, "console.log", path, sizeof(path));
	/* The log can grow large; serve its last CONSOLE_MAX bytes at most. */
	int fd = open_private(path, O_RDONLY, 0);
	if (fd < 0 && errno != ENOENT) {
		api_reply_error(req, 500, "console_log", "%s's console log "
		    "%s: %s", vm->spec.name, path, errno == EPERM ||
		    errno == ELOOP ? "not a file of vmgrd's own; refused" :
		    strerror(errno));
		evbuffer_free(buf);
		return;
	}
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
	evhttp_add_header(evhttp_request_get_output_headers(req),
	    "Content-Type", "text/plain; charset=utf-8");
	evbuffer_add(buf, start, strlen(start));
	evhttp_send_reply(req, 200, "OK", buf);
	evbuffer_free(buf);
	free(log);
}

/* ---- start-up: load and re-adopt ------------------------------------ */

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
		remove_runtime_files(vm);
		transition(vm, EV_CRASH, "vmgrd", "lost: QEMU (pid %d) is gone",
		    pid);
		return;
	}
	if ((vm->watch = proc_watch_new(vmgrd->base, vm->pid, qemu_exited,
	    vm)) == NULL) {
		log_warn("%s: %s: watch pid %d", __func__, vm->spec.name,
		    (int)vm->pid);
		return;
	}
	if (proc_uid(vm->pid, &vm->qemu_uid) < 0)
		vm->qemu_uid = (uid_t)priv_uid(vm);
	vm->legacy_layout = legacy;
	net_ports_changed();
	vm_path(vm, "qmp.sock", sock, sizeof(sock));
	if ((fd = qmp_sock_connect(sock)) < 0 || (vm->qmp = qmp_new(vmgrd->base,
	    fd, &vm_qmp_handlers, vm)) == NULL) {
		log_warn("%s: %s: QMP %s", __func__, vm->spec.name, sock);
		return;
	}
	/* A shutdown in progress gets a fresh deadline. */
	if (vm->state == VM_STOPPING)
		arm(vm, vmgrd->shutdown_timeout_s, shutdown_timeout);
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
	remove_runtime_files(vm);
	/* It keeps its place: the scheduler admits it again. */
	vm->queue_seq = ++vmgrd->queue_seq;
	vm_path(vm, "state.sav", pidfile, sizeof(pidfile));
	vm->restoring = access(pidfile, F_OK) == 0;
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
		vm->preempted = 1;
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

/* ---- PATCH: resources and scheduling of an existing VM ---------------- */

void
vm_api_patch(struct evhttp_request *req, struct vm *vm, json_t *body)
{
	static const char *const res_keys[] = { "policy", "priority", "weight",
	    "min_memory_mib", NULL };
	static const char *const sched_keys[] = { "expected_runtime_s",
	    "preemptible", NULL };
	static const char *const top_keys[] = { "vcpus", "memory_mib", NULL };
	struct vm_spec spec;
	struct spec_error err;
	struct alloc_vm a;
	const char *key;
	char msg[256], *text;
	json_t *j, *v;

	if (body == NULL || !json_is_object(body) || json_object_size(body) ==
	    0) {
		api_reply_error(req, 400, "missing_body", "PATCH needs a JSON "
		    "object of fields to change");
		return;
	}
	j = spec_to_json(&vm->spec);
	json_object_foreach(body, key, v) {
		const char *const *k;
		json_t *dst = NULL;
		for (k = res_keys; *k && !dst; k++)
			if (strcmp(*k, key) == 0)
				dst = json_object_get(j, "resources");
		for (k = sched_keys; *k && !dst; k++)
			if (strcmp(*k, key) == 0)
				dst = json_object_get(j, "schedule");
		for (k = top_keys; *k && !dst; k++)
			if (strcmp(*k, key) == 0)
				dst = j;
		if (dst == NULL) {
			json_decref(j);
			api_reply_error(req, 422, "unknown_field", "unknown or "
			    "unchangeable field \"%s\"", key);
			return;
		}
		if (dst == j && (vm->pid > 0 || vm->busy != OP_NONE ||
		    vm->state == VM_SAVED)) {
			json_decref(j);
			api_reply_error(req, 409, "vm_running", "%s of %s can "
			    "change only while it is stopped (it is %s)", key,
			    vm->spec.name, vm_state_name(vm->state));
			return;
		}
		json_object_set(dst, key, v);
	}
	if (spec_from_json(j, &spec, &err) < 0) {
		json_decref(j);
		spec_clear(&spec);
		api_reply_error(req, err.status, err.code, "%s", err.message);
		return;
	}
	json_decref(j);
	/* Keep the MACs and everything else the parse does not assign. */
	memcpy(spec.nics, vm->spec.nics, sizeof(spec.nics));
	struct vm tmp = { .spec = spec };
	vm_to_alloc(&tmp, &a);
	if (alloc_fits_host(&vmgrd->cap, &a, msg, sizeof(msg)) < 0) {
		spec_clear(&spec);
		api_reply_error(req, 422, "exceeds_capacity", "%s would never "
		    "run here: it %s", vm->spec.name, msg);
		return;
	}
	j = spec_to_json(&spec);
	text = json_dumps(j, JSON_COMPACT);
	json_decref(j);
	if (text == NULL || db_vm_update_spec(vmgrd->db, vm, text) < 0) {
		free(text);
		spec_clear(&spec);
		reply_db_error(req);
		return;
	}
	free(text);
	spec_clear(&vm->spec);
	vm->spec = spec;
	log_info("%s: resources changed: priority %d, weight %g, policy %s",
	    vm->spec.name, spec.resources.priority, spec.resources.weight,
	    spec.resources.policy);
	vm_changed();	/* new order, new division, new cgroup limits */
	api_reply_json(req, 200, vm_json(vm));
}
