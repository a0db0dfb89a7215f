/*
 * agent.c - the QEMU guest agent of each running VM: vmgrd connects to
 * the channel's socket once QMP is up, learns from QMP's VSERPORT_CHANGE
 * when the agent in the guest opens or closes its port, and keeps what it
 * tells (OS, hostname, addresses, file systems) in vm->guest, refreshed on
 * a timer.  Everything goes through qemu/qga.c: one command at a time, each
 * with a deadline, so a guest that never answers costs a timeout and never
 * holds the loop or another VM.  On top: `exec` (guest-exec, polled to its
 * end or its deadline), a password (guest-set-user-password) and the
 * shutdown by the agent.
 */
#include "daemon.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include "../lib/log.h"
#include "../lib/sock.h"
#include "../lib/util.h"
#include "../qemu/qga.h"
#include "../qemu/qmp.h"

#define PROBE_TIMEOUT_S		5	/* a sync and a ping */
#define INFO_TIMEOUT_S		5
#define REFRESH_S		10
#define PROBES_UNKNOWN		3	/* while no VSERPORT_CHANGE has said */
#define FREEZE_TIMEOUT_S	10	/* a freeze asked for by the API */
#define EXEC_OUTPUT_MAX		(1 << 20)	/* per stream, in the reply */

/* Work of the API that waits on the agent: answered exactly once. */
struct agent_op {
	TAILQ_ENTRY(agent_op)	 entry;
	struct vm		*vm;
	struct parked		*p;
	struct event		*timer;		/* exec: the next poll */
	long long		 pid;		/* exec: in the guest */
	double			 deadline;	/* exec: monotonic */
	double			 started;
	int			 interval_ms;
	int			 timeout_s;
	char			 user[SPEC_USER_MAX + 1]; /* password: whose */
};
static TAILQ_HEAD(, agent_op) ops = TAILQ_HEAD_INITIALIZER(ops);

static void	refresh(struct vm *vm, int all);
static void	thaw_timer_clear(struct vm *vm);

static struct agent_op *
op_new(struct vm *vm, struct parked *p)
{
	struct agent_op *op = calloc(1, sizeof(*op));

	if (op == NULL)
		return NULL;
	op->vm = vm;
	op->p = p;
	op->started = now_mono();
	TAILQ_INSERT_TAIL(&ops, op, entry);
	return op;
}

static void
op_free(struct agent_op *op)
{
	TAILQ_REMOVE(&ops, op, entry);
	if (op->timer)
		event_free(op->timer);
	free(op);
}

static void
op_fail(struct agent_op *op, int status, const char *code, const char *fmt,
    ...) __attribute__((format(printf, 4, 5)));

static void
op_fail(struct agent_op *op, int status, const char *code, const char *fmt,
    ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	api_answer_error(op->p, status, code, "%s", msg);
	op_free(op);
}

/* The agent's error for op: a timeout is 504; anything else status/code. */
static void
op_agent_error(struct agent_op *op, int status, const char *code,
    const char *cmd, const char *error)
{
	int late = error && strstr(error, "did not answer") != NULL;

	op_fail(op, late ? 504 : status, late ? "timeout" : code, "%s: %s", cmd,
	    error ? error : "no answer");
}

/* c parked for work on the agent: its op, or NULL with c->err set. */
static struct agent_op *
op_park(struct api_call *c)
{
	struct agent_op *op = op_new(c->vm, NULL);

	if (op == NULL || (op->p = api_park(c->req, 0)) == NULL) {
		if (op)
			op_free(op);
		api_err(&c->err, 500, "no_memory", "out of memory");
		return NULL;
	}
	return op;
}

/* Send op's command; API_WAIT, the op answered if it could not go. */
static int
op_send(struct agent_op *op, const char *cmd, json_t *args, double timeout,
    qga_reply_cb cb)
{
	if (op->vm->agent == NULL || qga_command(op->vm->agent, cmd, args,
	    timeout, 0, cb, op) < 0)
		op_fail(op, 409, "no_agent", "the guest agent of %s went away",
		    op->vm->spec.name);
	return API_WAIT;
}

int
agent_ready(const struct vm *vm)
{
	return vm->agent != NULL && vm->agent_since != 0;
}

/* 0, or -1 with a 409 no_agent saying why. */
static int
need_agent(const struct vm *vm, struct api_err *err)
{
	if (!vm->spec.agent.enabled)
		return api_err(err, 409, "no_agent", "%s has no guest agent "
		    "channel (agent.enabled is false)", vm->spec.name);
	if (vm->pid <= 0 || vm->state != VM_RUNNING)
		return api_err(err, 409, "no_agent", "%s is not running (%s)",
		    vm->spec.name, vm_state_name(vm->state));
	if (!agent_ready(vm))
		return api_err(err, 409, "no_agent", "the guest agent of %s is "
		    "not connected%s%s", vm->spec.name, vm->agent_error[0] ?
		    ": " : "", vm->agent_error);
	return 0;
}

static json_t *
guest_obj(struct vm *vm)
{
	if (vm->guest == NULL)
		vm->guest = json_object();
	return vm->guest;
}

static void
lost(struct vm *vm, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
lost(struct vm *vm, const char *fmt, ...)
{
	va_list ap;

	if (vm->agent_since != 0)
		log_info("%s: guest agent lost", vm->spec.name);
	vm->agent_since = 0;
	va_start(ap, fmt);
	vsnprintf(vm->agent_error, sizeof(vm->agent_error), fmt, ap);
	va_end(ap);
}

/* ---- what the agent tells */

static void
got_osinfo(struct qga *g, json_t *r, const char *error, void *arg)
{
	struct vm *vm = arg;

	if (g != vm->agent || r == NULL)
		return;
	json_t *os = json_object();
	static const char *const keys[][2] = { { "id", "id" }, { "name",
	    "name" }, { "pretty-name", "pretty_name" }, { "version",
	    "version" }, { "version-id", "version_id" }, { "kernel-release",
	    "kernel" }, { "machine", "machine" } };
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		json_t *v = json_object_get(r, keys[i][0]);
		if (json_is_string(v))
			json_object_set(os, keys[i][1], v);
	}
	json_object_set_new(guest_obj(vm), "os", os);
	(void)error;
}

/* guest-get-host-name's "host-name", guest-info's "version". */
static void
got_name(struct qga *g, json_t *r, const char *error, void *arg)
{
	struct vm *vm = arg;
	json_t *host = json_object_get(r, "host-name");
	json_t *version = json_object_get(r, "version");

	(void)error;
	if (g != vm->agent)
		return;
	if (json_is_string(host))
		json_object_set(guest_obj(vm), "hostname", host);
	if (json_is_string(version))
		json_object_set(guest_obj(vm), "agent_version", version);
}

static void
got_interfaces(struct qga *g, json_t *r, const char *error, void *arg)
{
	struct vm *vm = arg;
	json_t *ifs, *i, *a;
	size_t k, m;

	if (g != vm->agent)
		return;
	if (r == NULL) {
		if (error && strstr(error, "did not answer"))
			lost(vm, "%s", error);
		return;
	}
	char at[40];
	json_object_set_new(guest_obj(vm), "updated_at", json_string(
	    fmt_time_ms(now_unix_ms(), at, sizeof(at))));
	if (!json_is_array(r))
		return;
	ifs = json_array();
	json_array_foreach(r, k, i) {
		json_t *name = json_object_get(i, "name");
		if (!json_is_string(name))
			continue;
		json_t *o = json_pack("{s:O}", "name", name), *addrs = json_array();
		json_t *mac = json_object_get(i, "hardware-address");
		if (json_is_string(mac))
			json_object_set(o, "mac", mac);
		json_array_foreach(json_object_get(i, "ip-addresses"), m, a) {
			json_t *ip = json_object_get(a, "ip-address");
			json_t *type = json_object_get(a, "ip-address-type");
			json_t *prefix = json_object_get(a, "prefix");
			if (!json_is_string(ip))
				continue;
			json_array_append_new(addrs, json_pack("{s:O, s:s, s:I}",
			    "address", ip, "family", json_is_string(type) ?
			    json_string_value(type) : "?", "prefix",
			    json_is_integer(prefix) ? json_integer_value(prefix) :
			    (json_int_t)0));
		}
		json_object_set_new(o, "addresses", addrs);
		json_t *st = json_object_get(i, "statistics");
		if (json_is_object(st)) {
			json_t *rx = json_object_get(st, "rx-bytes");
			json_t *tx = json_object_get(st, "tx-bytes");
			if (json_is_integer(rx))
				json_object_set(o, "rx_bytes", rx);
			if (json_is_integer(tx))
				json_object_set(o, "tx_bytes", tx);
		}
		json_array_append_new(ifs, o);
	}
	json_object_set_new(guest_obj(vm), "interfaces", ifs);
}

static void
got_fsinfo(struct qga *g, json_t *r, const char *error, void *arg)
{
	struct vm *vm = arg;
	json_t *f, *fss;
	size_t k;

	(void)error;
	if (g != vm->agent || !json_is_array(r))
		return;
	fss = json_array();
	json_array_foreach(r, k, f) {
		json_t *mp = json_object_get(f, "mountpoint");
		json_t *type = json_object_get(f, "type");
		json_t *used = json_object_get(f, "used-bytes");
		json_t *total = json_object_get(f, "total-bytes");
		if (!json_is_string(mp))
			continue;
		json_t *o = json_pack("{s:O, s:s}", "mountpoint", mp, "type",
		    json_is_string(type) ? json_string_value(type) : "?");
		if (json_is_integer(used))
			json_object_set(o, "used_bytes", used);
		if (json_is_integer(total))
			json_object_set(o, "total_bytes", total);
		json_array_append_new(fss, o);
	}
	json_object_set_new(guest_obj(vm), "filesystems", fss);
}

/* What changes: addresses, file systems; all of it once connected. */
static void
refresh(struct vm *vm, int all)
{
	struct qga *g = vm->agent;

	if (g == NULL || vm->agent_since == 0)
		return;
	/* A refresh still waiting: a slow agent gets no pile of them. */
	if (qga_pending(g) > 0 && !all)
		return;
	if (all) {
		qga_command(g, "guest-info", NULL, INFO_TIMEOUT_S, 0, got_name,
		    vm);
		qga_command(g, "guest-get-osinfo", NULL, INFO_TIMEOUT_S, 0,
		    got_osinfo, vm);
	}
	qga_command(g, "guest-get-host-name", NULL, INFO_TIMEOUT_S, 0,
	    got_name, vm);
	qga_command(g, "guest-network-get-interfaces", NULL, INFO_TIMEOUT_S,
	    0, got_interfaces, vm);
	qga_command(g, "guest-get-fsinfo", NULL, INFO_TIMEOUT_S, 0, got_fsinfo,
	    vm);
}

static void	freeze_status(struct qga *, json_t *, const char *, void *);

static void
pinged(struct qga *g, json_t *r, const char *error, void *arg)
{
	struct vm *vm = arg;

	if (g != vm->agent)
		return;
	if (r == NULL) {
		lost(vm, "%s", error);
		return;
	}
	vm->agent_error[0] = '\0';
	vm->agent_port_open = 1;
	vm->agent_probes = 0;
	if (vm->agent_since == 0) {
		vm->agent_since = now_unix_ms();
		log_info("%s: guest agent connected", vm->spec.name);
		qga_command(g, "guest-fsfreeze-status", NULL, INFO_TIMEOUT_S, 0,
		    freeze_status, vm);
		refresh(vm, 1);
	}
}

static void
probe(struct vm *vm)
{
	if (vm->agent && qga_command(vm->agent, "guest-ping", NULL,
	    PROBE_TIMEOUT_S, 0, pinged, vm) == 0 && vm->agent_port_open < 0)
		vm->agent_probes++;
}

static void
tick(evutil_socket_t fd, short what, void *arg)
{
	struct vm *vm = arg;

	(void)fd;
	(void)what;
	if (vm->agent_since != 0 && vm->freeze == AF_THAWED)
		refresh(vm, 0);
	else if (vm->agent_since != 0)
		;	/* frozen: the agent takes only freeze commands */
	/*
	 * Not answering: ask again while the port is open, or a few times
	 * while nobody said (restored, re-adopted); never into a port the
	 * guest has closed, where the bytes would only pile up.
	 */
	else if (qga_pending(vm->agent) == 0 && (vm->agent_port_open > 0 ||
	    (vm->agent_port_open < 0 && vm->agent_probes < PROBES_UNKNOWN)))
		probe(vm);
}

static void
agent_closed(struct qga *g, const char *why, void *arg)
{
	struct vm *vm = arg;

	if (g != vm->agent)
		return;
	/* QEMU holds the socket while it runs: this is QEMU going away. */
	lost(vm, "the agent channel closed: %s", why);
}

void
agent_attach(struct vm *vm)
{
	char path[PATH_MAX];
	struct timeval tv = { REFRESH_S, 0 };
	int fd;

	if (!vm->spec.agent.enabled || vm->agent)
		return;
	vm_path(vm, "agent.sock", path, sizeof(path));
	if ((fd = sock_connect(path, SOCK_NONBLOCK)) < 0) {
		lost(vm, "no agent channel (%s)", strerror(errno));
		return;
	}
	if ((vm->agent = qga_new(vmgrd->base, fd, agent_closed, vm)) == NULL) {
		lost(vm, "out of memory");
		return;
	}
	snprintf(vm->agent_error, sizeof(vm->agent_error), "waiting for the "
	    "agent in the guest");
	if (vm->agent_timer == NULL)
		vm->agent_timer = event_new(vmgrd->base, -1, EV_PERSIST, tick,
		    vm);
	if (vm->agent_timer)
		event_add(vm->agent_timer, &tv);
	/*
	 * A fresh boot's agent opens the port, and VSERPORT_CHANGE says so.
	 * A QEMU found running after a vmgrd restart, or a guest restored
	 * from saved state, may have its agent up already, and no event
	 * will come: ask.
	 */
	vm->agent_probes = 0;
	if (vm->busy == OP_START && !vm_has(vm, VMF_RESTORING))
		vm->agent_port_open = 0;
	else {
		vm->agent_port_open = -1;
		probe(vm);
	}
}

void
agent_port(struct vm *vm, int open)
{
	vm->agent_port_open = open;
	vm->agent_probes = 0;
	if (vm->agent == NULL)
		return;
	if (open) {
		qga_desync(vm->agent);	/* a new agent: resynchronise */
		probe(vm);
	} else {
		qga_desync(vm->agent);
		lost(vm, "the guest closed the agent's port (the agent stopped, "
		    "or the guest is rebooting)");
	}
}

void
agent_detach(struct vm *vm)
{
	struct agent_op *op, *next;
	struct qga *g = vm->agent;

	vm->agent = NULL;
	vm->agent_since = 0;
	vm->agent_port_open = 0;
	vm->agent_error[0] = '\0';
	if (vm->agent_timer) {
		event_free(vm->agent_timer);
		vm->agent_timer = NULL;
	}
	thaw_timer_clear(vm);
	vm->freeze = AF_THAWED;
	/* Work waiting on the agent ends here; its callbacks see g gone. */
	for (op = TAILQ_FIRST(&ops); op; op = next) {
		next = TAILQ_NEXT(op, entry);
		if (op->vm == vm)
			op_fail(op, 409, "vm_stopped", "%s stopped meanwhile",
			    vm->spec.name);
	}
	qga_free(g);
	json_decref(vm->guest);
	vm->guest = NULL;
}

/* ---- freeze and thaw */

#define THAW_TIMEOUT_S		10
#define THAW_RETRY_S		2

static void	thaw_send(struct vm *vm);

static void
thaw_timer_clear(struct vm *vm)
{
	if (vm->thaw_timer) {
		event_free(vm->thaw_timer);
		vm->thaw_timer = NULL;
	}
}

static void
thaw_timer_set(struct vm *vm, double seconds, event_callback_fn fn)
{
	struct timeval tv = tv_of(seconds);

	thaw_timer_clear(vm);
	vm->thaw_timer = evtimer_new(vmgrd->base, fn, vm);
	if (vm->thaw_timer)
		evtimer_add(vm->thaw_timer, &tv);
}

static void
thaw_retry(evutil_socket_t fd, short what, void *arg)
{
	struct vm *vm = arg;

	(void)fd;
	(void)what;
	if (vm->freeze == AF_THAWING)
		thaw_send(vm);
}

static void
thawed(struct qga *g, json_t *r, const char *error, void *arg)
{
	struct vm *vm = arg;

	if (g != vm->agent || vm->freeze != AF_THAWING)
		return;
	if (r == NULL) {
		/*
		 * Never left frozen: again, until the agent says thawed; but
		 * not into a port the guest closed (a new agent is checked
		 * when it comes, freeze_status).
		 */
		log_warnx("%s: guest-fsfreeze-thaw: %s%s", vm->spec.name, error,
		    vm->agent_port_open ? "; trying again" : "");
		if (vm->agent_port_open)
			thaw_timer_set(vm, THAW_RETRY_S, thaw_retry);
		return;
	}
	if (vm->frozen_at > 0)
		log_info("%s: file systems thawed (%lld), %.0f ms after the "
		    "freeze was sent", vm->spec.name, (long long)
		    json_integer_value(r), (now_mono() - vm->frozen_at) * 1000);
	else
		log_info("%s: file systems thawed (%lld)", vm->spec.name,
		    (long long)json_integer_value(r));
	vm->frozen_at = 0;
	vm->freeze = AF_THAWED;
	thaw_timer_clear(vm);
}

static void
thaw_send(struct vm *vm)
{
	vm->freeze = AF_THAWING;
	if (vm->agent == NULL || qga_command(vm->agent, "guest-fsfreeze-thaw",
	    NULL, THAW_TIMEOUT_S, 0, thawed, vm) < 0)
		thaw_timer_set(vm, THAW_RETRY_S, thaw_retry);
}

void
agent_thaw(struct vm *vm, const char *reason)
{
	if (vm->freeze == AF_THAWED || vm->freeze == AF_THAWING)
		return;
	log_debug("%s: thaw: %s", vm->spec.name, reason);
	thaw_send(vm);
}

/* The window's end: whatever holds the freeze, it ends now. */
static void
window_end(evutil_socket_t fd, short what, void *arg)
{
	struct vm *vm = arg;

	(void)fd;
	(void)what;
	if (vm->freeze == AF_FREEZING || vm->freeze == AF_FROZEN) {
		log_warnx("%s: the freeze window (%.0f s) ended; thawing",
		    vm->spec.name, vm->freeze_window);
		thaw_send(vm);
	}
}

struct freeze_req {
	struct vm	*vm;
	agent_freeze_cb	 cb;
	void		*arg;
};

static void
frozen(struct qga *g, json_t *r, const char *error, void *arg)
{
	struct freeze_req *fr = arg;
	struct vm *vm = fr->vm;
	agent_freeze_cb cb = fr->cb;
	void *cbarg = fr->arg;

	free(fr);
	if (g != vm->agent) {
		cb(vm, -1, "the guest agent went away", cbarg);
		return;
	}
	if (r == NULL || vm->freeze != AF_FREEZING) {
		char why[256];
		snprintf(why, sizeof(why), "%s", r ? "the freeze window ended "
		    "first" : error);
		/* It may be half done, or done late: thaw in any case. */
		if (vm->freeze == AF_FREEZING) {
			vm->freeze = AF_FROZEN;
			thaw_send(vm);
		}
		cb(vm, -1, why, cbarg);
		return;
	}
	vm->freeze = AF_FROZEN;
	log_info("%s: file systems frozen (%lld) in %.0f ms", vm->spec.name,
	    (long long)json_integer_value(r), (now_mono() - vm->frozen_at) *
	    1000);
	cb(vm, (int)json_integer_value(r), NULL, cbarg);
}

int
agent_freeze(struct vm *vm, double timeout_s, double window_s,
    agent_freeze_cb cb, void *arg, char *why, size_t whylen)
{
	struct freeze_req *fr;

	if (!agent_ready(vm)) {
		snprintf(why, whylen, "the guest agent is not connected%s%s",
		    vm->agent_error[0] ? ": " : "", vm->agent_error);
		return -1;
	}
	/*
	 * A thaw still on its way (the last backup's) is no obstacle: the
	 * agent takes commands in order, so this freeze comes after it.
	 */
	if (vm->freeze == AF_FREEZING || vm->freeze == AF_FROZEN) {
		snprintf(why, whylen, "a freeze of %s is in progress",
		    vm->spec.name);
		return -1;
	}
	if ((fr = calloc(1, sizeof(*fr))) == NULL) {
		snprintf(why, whylen, "out of memory");
		return -1;
	}
	fr->vm = vm;
	fr->cb = cb;
	fr->arg = arg;
	if (qga_command(vm->agent, "guest-fsfreeze-freeze", NULL, timeout_s, 0,
	    frozen, fr) < 0) {
		free(fr);
		snprintf(why, whylen, "the guest agent went away");
		return -1;
	}
	vm->freeze = AF_FREEZING;
	vm->frozen_at = now_mono();
	vm->freeze_window = window_s;
	thaw_timer_set(vm, window_s, window_end);
	return 0;
}

int
agent_freeze_allowed(const struct vm *vm, int asked_not, char *reason,
    size_t len)
{
	if (vm->state != VM_RUNNING)
		snprintf(reason, len, "the VM is %s: its agent cannot freeze",
		    vm_state_name(vm->state));
	else if (asked_not || !vm->spec.agent.freeze)
		snprintf(reason, len, "freezing is off (%s)", asked_not ?
		    "no_freeze" : "agent.freeze");
	else
		return 0;
	return -1;
}

void
agent_consistency(const struct vm *vm, int n, const char *why, char *cons,
    size_t clen, char *reason, size_t rlen)
{
	snprintf(cons, clen, "%s", n >= 0 ? "filesystem" : "crash");
	if (n >= 0)
		snprintf(reason, rlen, "%d file systems frozen by the guest "
		    "agent", n);
	else {
		snprintf(reason, rlen, "the freeze failed: %.200s", why);
		log_warnx("%s: goes on crash-consistent: %s", vm->spec.name,
		    why);
	}
}

/*
 * On every (re)connection: a guest found frozen is thawed.  Its agent is
 * a new one (restarted, or vmgrd is), and whatever froze it through the
 * old one is not coming back to thaw it.
 */
static void
freeze_status(struct qga *g, json_t *r, const char *error, void *arg)
{
	struct vm *vm = arg;

	(void)error;
	if (g != vm->agent)
		return;
	/*
	 * Thawed when the agent says frozen, and also when it does not but
	 * vmgrd froze it: a new agent may not know what the old one did, and
	 * a thaw of what is not frozen is harmless.
	 */
	if (json_is_string(r) && strcmp(json_string_value(r), "frozen") == 0)
		log_warnx("%s: the guest's file systems were found frozen; "
		    "thawing", vm->spec.name);
	else if (vm->freeze != AF_THAWED)
		log_warnx("%s: the guest agent came back while its file systems "
		    "were frozen; thawing", vm->spec.name);
	else
		return;
	if (vm->freeze == AF_THAWED)
		vm->frozen_at = 0;	/* not by this vmgrd: since when unknown */
	vm->freeze = AF_FROZEN;
	thaw_send(vm);
}

static void
api_frozen(struct vm *vm, int n, const char *why, void *arg)
{
	struct agent_op *op = arg;
	char by[40];

	if (n < 0) {
		op_fail(op, strstr(why, "did not answer") ? 504 : 409, strstr(why,
		    "did not answer") ? "timeout" : "freeze_failed", "%s: %s",
		    vm->spec.name, why);
		return;
	}
	api_answer(op->p, 200, json_pack("{s:s, s:i, s:s}", "vm",
	    vm->spec.name, "frozen", n, "thaw_by", fmt_time_ms(now_unix_ms() +
	    (int64_t)(op->timeout_s * 1000), by, sizeof(by))));
	op_free(op);
}

/*
 * POST /v1/vms/NAME/freeze {"timeout_s": 60}: freeze the guest's file
 * systems for at most timeout_s (vmgrd thaws them then), for a snapshot
 * taken by other means.  POST .../thaw ends it.
 */
int
agent_api_freeze(struct api_call *c)
{
	static const char *const keys[] = { "timeout_s", NULL };
	struct vm *vm = c->vm;
	long long window = 60;
	char why[256];

	if (api_body_keys(&c->err, c->body, keys) < 0 ||
	    api_body_int(&c->err, c->body, "timeout_s", 1, 3600, &window) < 0 ||
	    need_agent(vm, &c->err) < 0)
		return API_FAIL;
	if (vm->freeze == AF_FREEZING || vm->freeze == AF_FROZEN)
		return api_err(&c->err, 409, "busy", "a freeze of %s is in "
		    "progress", vm->spec.name);
	struct agent_op *op = op_park(c);
	if (op == NULL)
		return API_FAIL;
	op->timeout_s = (int)window;
	if (agent_freeze(vm, FREEZE_TIMEOUT_S, (double)window, api_frozen, op,
	    why, sizeof(why)) < 0)
		op_fail(op, 409, "no_agent", "%s", why);
	return API_WAIT;
}

static void
api_thawed(struct qga *g, json_t *r, const char *error, void *arg)
{
	struct agent_op *op = arg;
	struct vm *vm = op->vm;

	(void)g;
	if (r == NULL) {
		op_agent_error(op, 502, "agent_error", "guest-fsfreeze-thaw",
		    error);
		return;
	}
	if (vm->freeze == AF_FROZEN || vm->freeze == AF_THAWING) {
		vm->freeze = AF_THAWED;
		thaw_timer_clear(vm);
	}
	api_answer(op->p, 200, json_pack("{s:s, s:I}", "vm", vm->spec.name,
	    "thawed", json_integer_value(r)));
	op_free(op);
}

/* An endpoint of no body that is one agent command. */
static int
one_command(struct api_call *c, const char *cmd, double timeout,
    qga_reply_cb cb)
{
	static const char *const none[] = { NULL };
	struct agent_op *op;

	if (api_body_keys(&c->err, c->body, none) < 0 ||
	    need_agent(c->vm, &c->err) < 0 || (op = op_park(c)) == NULL)
		return API_FAIL;
	return op_send(op, cmd, NULL, timeout, cb);
}

int
agent_api_thaw(struct api_call *c)
{
	return one_command(c, "guest-fsfreeze-thaw", THAW_TIMEOUT_S,
	    api_thawed);
}

/* ---- ping */

static void
api_pinged(struct qga *g, json_t *r, const char *error, void *arg)
{
	struct agent_op *op = arg;

	(void)g;
	if (r == NULL) {
		op_agent_error(op, 502, "agent_error", "guest-ping", error);
		return;
	}
	api_answer(op->p, 200, json_pack("{s:s, s:f}", "vm", op->vm->spec.name,
	    "rtt_ms", (now_mono() - op->started) * 1000));
	op_free(op);
}

/* POST /v1/vms/NAME/ping: guest-ping's round trip, through the queue. */
int
agent_api_ping(struct api_call *c)
{
	return one_command(c, "guest-ping", INFO_TIMEOUT_S, api_pinged);
}

/* ---- shutdown */

static void
shutdown_sent(struct qga *g, json_t *r, const char *error, void *arg)
{
	struct vm *vm = arg;

	(void)g;
	(void)r;
	if (error == NULL || vm->state != VM_STOPPING)
		return;
	/* It never reached the agent: the button, then, as before. */
	log_warnx("%s: guest-shutdown: %s; pressing the ACPI button",
	    vm->spec.name, error);
	vm->flags &= ~VMF_AGENT_OFF;
	if (vm->qmp)
		qmp_command(vm->qmp, "system_powerdown", NULL, NULL, NULL);
}

int
agent_shutdown(struct vm *vm)
{
	if (!agent_ready(vm) || qga_command(vm->agent, "guest-shutdown",
	    json_pack("{s:s}", "mode", "powerdown"), INFO_TIMEOUT_S,
	    QGA_NO_REPLY, shutdown_sent, vm) < 0)
		return -1;
	vm->flags |= VMF_AGENT_OFF;
	return 0;
}

/* ---- exec */

static void	exec_poll(evutil_socket_t, short, void *);

static json_t *
stream(json_t *status, const char *key, const char *trunc_key, json_t *out)
{
	const char *b = json_string_value(json_object_get(status, key));
	size_t n = 0;
	unsigned char *raw = b ? base64_decode(b, &n) : NULL;

	if (raw && n > EXEC_OUTPUT_MAX) {
		n = EXEC_OUTPUT_MAX;
		json_object_set_new(out, trunc_key, json_true());
	}
	char *enc = base64_encode(raw ? raw : (const unsigned char *)"",
	    raw ? n : 0);
	json_t *s = json_string(enc ? enc : "");

	free(raw);
	free(enc);
	return s;
}

static void
exec_status(struct qga *g, json_t *r, const char *error, void *arg)
{
	struct agent_op *op = arg;
	struct timeval tv;

	(void)g;
	if (r == NULL) {
		op_agent_error(op, 502, "agent_error", "guest-exec-status",
		    error);
		return;
	}
	if (!json_is_true(json_object_get(r, "exited"))) {
		if (now_mono() >= op->deadline) {
			op_fail(op, 504, "timeout", "the command did not end "
			    "within %d s; it goes on in the guest as pid %lld",
			    op->timeout_s, op->pid);
			return;
		}
		if (op->interval_ms < 500)
			op->interval_ms = op->interval_ms ? op->interval_ms * 2 :
			    20;
		tv.tv_sec = 0;
		tv.tv_usec = op->interval_ms * 1000;
		evtimer_add(op->timer, &tv);
		return;
	}
	json_t *out = json_object();
	json_t *code = json_object_get(r, "exitcode");
	json_t *sig = json_object_get(r, "signal");
	json_object_set_new(out, "pid", json_integer(op->pid));
	json_object_set_new(out, "exit_code", json_is_integer(code) ?
	    json_incref(code) : json_null());
	if (json_is_integer(sig))
		json_object_set(out, "signal", sig);
	json_object_set_new(out, "stdout", stream(r, "out-data",
	    "stdout_truncated", out));
	json_object_set_new(out, "stderr", stream(r, "err-data",
	    "stderr_truncated", out));
	if (json_is_true(json_object_get(r, "out-truncated")))
		json_object_set_new(out, "stdout_truncated", json_true());
	if (json_is_true(json_object_get(r, "err-truncated")))
		json_object_set_new(out, "stderr_truncated", json_true());
	json_object_set_new(out, "duration_ms", json_integer((json_int_t)
	    ((now_mono() - op->started) * 1000)));
	api_answer(op->p, 200, out);
	op_free(op);
}

static void
exec_poll(evutil_socket_t fd, short what, void *arg)
{
	struct agent_op *op = arg;
	struct vm *vm = op->vm;

	(void)fd;
	(void)what;
	if (vm->agent == NULL || qga_command(vm->agent, "guest-exec-status",
	    json_pack("{s:I}", "pid", (json_int_t)op->pid), INFO_TIMEOUT_S, 0,
	    exec_status, op) < 0)
		op_fail(op, 409, "no_agent", "the guest agent of %s went away",
		    vm->spec.name);
}

static void
exec_started(struct qga *g, json_t *r, const char *error, void *arg)
{
	struct agent_op *op = arg;
	json_t *pid = json_object_get(r, "pid");

	(void)g;
	if (r == NULL || !json_is_integer(pid)) {
		op_agent_error(op, 422, "exec_failed", "guest-exec", error ?
		    error : "no pid in the reply");
		return;
	}
	op->pid = (long long)json_integer_value(pid);
	exec_poll(-1, 0, op);
}

/*
 * POST /v1/vms/NAME/exec {"argv": [...], "input": BASE64, "env": [...],
 * "timeout_s": N}: the command's exit status and output, base64.
 */
int
agent_api_exec(struct api_call *c)
{
	static const char *const keys[] = { "argv", "input", "env",
	    "timeout_s", NULL };
	struct vm *vm = c->vm;
	json_t *argv = json_object_get(c->body, "argv"), *v;
	json_t *input = json_object_get(c->body, "input");
	json_t *env = json_object_get(c->body, "env");
	long long timeout = 60;
	size_t i;

	if (api_body_keys(&c->err, c->body, keys) < 0 ||
	    api_body_int(&c->err, c->body, "timeout_s", 1, 86400, &timeout) < 0)
		return API_FAIL;
	if (!json_is_array(argv) || json_array_size(argv) == 0 ||
	    json_array_size(argv) > 1024)
		return api_err(&c->err, 422, "invalid_value", "argv must be a "
		    "list of 1 to 1024 strings: the program and its arguments");
	json_array_foreach(argv, i, v)
		if (!json_is_string(v) || json_string_length(v) > 65536 ||
		    (i == 0 && json_string_length(v) == 0))
			return api_err(&c->err, 422, "invalid_value", "argv[%zu] "
			    "must be a string%s", i, i == 0 ? " naming the program"
			    : "");
	if (env && !json_is_array(env))
		return api_err(&c->err, 422, "invalid_value", "env must be a "
		    "list of NAME=VALUE strings");
	json_array_foreach(env, i, v)
		if (!json_is_string(v) || !strchr(json_string_value(v), '='))
			return api_err(&c->err, 422, "invalid_value", "env[%zu] "
			    "must be NAME=VALUE", i);
	size_t n;
	unsigned char *raw = NULL;
	if (input && (!json_is_string(input) || json_string_length(input) >
	    (size_t)(8 << 20) || (raw = base64_decode(json_string_value(input),
	    &n)) == NULL))
		return api_err(&c->err, 422, "invalid_value", "input must be "
		    "base64, 6 MiB at most");
	free(raw);
	if (need_agent(vm, &c->err) < 0)
		return API_FAIL;

	json_t *args = json_pack("{s:O, s:b}", "path", json_array_get(argv, 0),
	    "capture-output", 1);
	json_t *rest = json_array();
	for (i = 1; i < json_array_size(argv); i++)
		json_array_append(rest, json_array_get(argv, i));
	json_object_set_new(args, "arg", rest);
	if (env)
		json_object_set(args, "env", env);
	if (input)
		json_object_set(args, "input-data", input);

	struct agent_op *op = op_park(c);
	if (op == NULL) {
		json_decref(args);
		return API_FAIL;
	}
	if ((op->timer = evtimer_new(vmgrd->base, exec_poll, op)) == NULL) {
		json_decref(args);
		op_fail(op, 500, "no_memory", "out of memory");
		return API_WAIT;
	}
	op->timeout_s = (int)timeout;
	op->deadline = now_mono() + (double)timeout;
	return op_send(op, "guest-exec", args, INFO_TIMEOUT_S, exec_started);
}

/* ---- password */

static void
password_set(struct qga *g, json_t *r, const char *error, void *arg)
{
	struct agent_op *op = arg;

	(void)g;
	if (r == NULL) {
		op_agent_error(op, 422, "agent_error", "guest-set-user-password",
		    error);
		return;
	}
	api_answer(op->p, 200, json_pack("{s:s, s:s}", "vm", op->vm->spec.name,
	    "user", op->user));
	op_free(op);
}

/*
 * POST /v1/vms/NAME/password {"user": U, "password_hash": CRYPT} (or
 * "password": plain text, hashed by the guest): the account's password.
 */
int
agent_api_password(struct api_call *c)
{
	static const char *const keys[] = { "user", "password",
	    "password_hash", NULL };
	struct vm *vm = c->vm;
	const char *user = json_string_value(json_object_get(c->body, "user"));
	const char *plain = json_string_value(json_object_get(c->body,
	    "password"));
	const char *hash = json_string_value(json_object_get(c->body,
	    "password_hash"));

	if (api_body_keys(&c->err, c->body, keys) < 0)
		return API_FAIL;
	if (user == NULL || !spec_user_valid(user))
		return api_err(&c->err, 422, "invalid_value", "user must be a "
		    "login name (lower case letters, digits, _ and -)");
	if ((plain == NULL) == (hash == NULL))
		return api_err(&c->err, 422, "invalid_value", "give password "
		    "or password_hash, one of them");
	if (hash && !spec_password_hash_valid(hash))
		return api_err(&c->err, 422, "invalid_value", "password_hash "
		    "must be a crypt(3) hash such as $6$...");
	if (plain && (plain[0] == '\0' || strlen(plain) > 512))
		return api_err(&c->err, 422, "invalid_value", "password must be "
		    "1 to 512 characters");
	if (need_agent(vm, &c->err) < 0)
		return API_FAIL;
	const char *pw = hash ? hash : plain;
	char *b = base64_encode(pw, strlen(pw));
	struct agent_op *op = b ? op_park(c) : NULL;
	if (op == NULL) {
		free(b);
		return b ? API_FAIL : api_err(&c->err, 500, "no_memory",
		    "out of memory");
	}
	snprintf(op->user, sizeof(op->user), "%s", user);
	json_t *args = json_pack("{s:s, s:s, s:b}", "username", user,
	    "password", b, "crypted", hash != NULL);
	free(b);
	return op_send(op, "guest-set-user-password", args, INFO_TIMEOUT_S,
	    password_set);
}
