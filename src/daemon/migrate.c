/*
 * migrate.c - live migration of a VM to another vmgrd host (a remote of
 * peer.c), with its local disks, and the destination's side of it.
 *
 * The source (role "out") asks the destination (role "in") to prepare:
 * the destination makes the VM's disks, empty, starts a hidden QEMU with
 * -incoming, exports the disks over NBD and listens for the memory; both
 * streams are TLS with a pre-shared key made for this one migration.  The
 * source mirrors its disks into the exports (blockdev-mirror) until they
 * are in sync, then migrates the memory with pause-before-switchover.  At
 * pre-switchover (the guest is stopped) it completes the mirrors, records
 * "handed-over" and lets QEMU finish; then it tells the destination to
 * commit, which resumes the guest there, and forgets the VM.
 *
 * Never two copies: the destination runs the guest only on commit, and
 * the source sends commit only after its record; the source resumes only
 * before that record, or when the destination has answered an abort (it
 * then never will).  Never none: after the record the source keeps its
 * QEMU until the destination has taken the VM, and a destination whose
 * QEMU died still keeps the disks until the source says.  The tables of
 * docs/ARCHITECTURE.md say each phase and what a restart does in it.
 */
#include "migrate_int.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>

#include "../lib/log.h"
#include "../lib/util.h"
#include "../qemu/proc.h"
#include "../qemu/qmp.h"

TAILQ_HEAD(migq, mig);
static struct migq migs = TAILQ_HEAD_INITIALIZER(migs);
static int mig_closing;

static int
is_closing(void)
{
	return mig_closing;
}

static void	out_migrated(struct mig *);
static void	mig_trim(void);
static void	out_fail(struct mig *, const char *fmt, ...)
		    __attribute__((format(printf, 2, 3)));
static void	out_commit(struct mig *);
static void	in_abort(struct mig *, const char *);
static void	in_commit_record(struct mig *, struct parked *, int);
static void	mig_event(const struct mig *, const char *, const char *, ...)
		    __attribute__((format(printf, 3, 4)));
static int	set_phase(struct mig *, const char *);
static void	final_figures(struct qmp *, json_t *, const char *, void *);
static void	out_abort_peer(struct mig *);

static int
is_final(const struct mig *m)
{
	return strcmp(m->state, "running") != 0;
}

static struct mig *
mig_find(const char *id)
{
	struct mig *m;

	TAILQ_FOREACH(m, &migs, entry)
		if (strcmp(m->id, id) == 0)
			return m;
	return NULL;
}

static json_t *
mig_json(const struct mig *m)
{
	json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:I}",
	    "id", m->id, "vm", m->vm_name, "role", m->role == OUT ? "out" :
	    "in", "from", m->role == OUT ? "this host" : m->peer, "to",
	    m->role == OUT ? m->peer : "this host", "mode", m->offline ?
	    "offline" : "live",
	    "phase", m->phase, "started_at", (json_int_t)m->started_at);

	json_object_set_new(o, "state", json_string(m->state));
	if (m->finished_at)
		json_object_set_new(o, "finished_at",
		    json_integer(m->finished_at));
	if (m->error[0])
		json_object_set_new(o, "error", json_string(m->error));
	if (m->note[0])
		json_object_set_new(o, "note", json_string(m->note));
	if (m->role == IN)
		return o;
	json_object_set_new(o, "max_downtime_ms",
	    json_integer(m->max_downtime_ms));
	if (m->bandwidth)
		json_object_set_new(o, "bandwidth", json_integer(m->bandwidth));
	json_object_set_new(o, "auto_converge", json_boolean(m->auto_converge));
	json_object_set_new(o, "setup_ms", json_real(m->setup_ms));
	json_object_set_new(o, "disk_size", json_integer(m->disk_size));
	json_object_set_new(o, "disk_bytes", json_integer(m->disk_bytes));
	json_object_set_new(o, "disk_ms", json_real(m->disk_ms));
	json_object_set_new(o, "memory_bytes", json_integer(m->memory_bytes));
	json_object_set_new(o, "memory_total", json_integer(m->memory_total));
	json_object_set_new(o, "memory_remaining",
	    json_integer(m->memory_remaining));
	json_object_set_new(o, "memory_passes", json_integer(m->passes));
	json_object_set_new(o, "mbps", json_real(m->mbps));
	if (m->dirty_mibs >= 0)
		json_object_set_new(o, "dirty_rate_mibs",
		    json_real(m->dirty_mibs));
	json_object_set_new(o, "downtime_ms", json_real(m->downtime_ms));
	json_object_set_new(o, "switchover_ms", json_real(m->pause_ms));
	json_object_set_new(o, "total_ms", json_real(m->total_ms));
	return o;
}

/* Its record, as it stands.  0, or -1 (the database failed). */
static int
mig_save(struct mig *m)
{
	json_t *j = mig_json(m);
	char *doc;
	int rc;

	json_object_set_new(j, "peer_clean", json_boolean(m->peer_clean));
	json_object_set_new(j, "was_running", json_boolean(m->was_running));
	json_object_set_new(j, "peer", json_string(m->peer));
	if (m->offline)
		json_object_set_new(j, "offline", off_json(m));
	if (m->attached)
		json_object_set_new(j, "attached", json_integer(m->attached));
	doc = json_dumps(j, JSON_COMPACT);
	json_decref(j);
	if (doc == NULL)
		return -1;
	rc = db_mig_put(vmgrd->db, m->id, m->vm_name, m->role == OUT ? "out" :
	    "in", m->phase, m->started_at, doc);
	free(doc);
	return rc;
}

/* The event log: a migration's steps, under its VM's name. */
static void
mig_event(const struct mig *m, const char *event, const char *fmt, ...)
{
	char reason[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(reason, sizeof(reason), fmt, ap);
	va_end(ap);
	struct event_row row = {
		.time = now_unix_ms(),
		.vm = m->vm_name,
		.from = m->vm ? vm_state_name(m->vm->state) : NULL,
		.to = m->vm ? vm_state_name(m->vm->state) : m->role == IN ?
		    "created" : "deleted",
		.event = event,
		.reason = reason,
		.actor = "migration",
	};
	log_info("%s: %s: %s", m->vm_name, event, reason);
	/* In the event log too; a full disk loses it there, not here. */
	if (db_event_add(vmgrd->db, &row) < 0)
		log_warnx("%s: the event %s: %s", m->vm_name, event,
		    db_errmsg(vmgrd->db));
	events_publish(&row);
}

static int
set_phase(struct mig *m, const char *phase)
{
	if (phase != m->phase)
		snprintf(m->phase, sizeof(m->phase), "%s", phase);
	if (mig_save(m) == 0)
		return 0;
	log_warnx("%s: migration %s: cannot record phase %s: %s", m->vm_name,
	    m->id, phase, db_errmsg(vmgrd->db));
	return -1;
}

static void
mig_free(struct mig *m)
{
	if (m->timer)
		event_free(m->timer);
	if (m->deadline)
		event_free(m->deadline);
	proc_watch_free(m->qsd_watch);
	explicit_bzero(m->psk, sizeof(m->psk));
	free(m);
}

/* The history kept: the newest ended migrations, on each host. */
#define MIG_KEEP	200

/*
 * Forget the oldest ended migrations past MIG_KEEP.  One whose other side
 * has not heard its end yet stays (its retries need it), as does every
 * one that has not ended.
 */
static int
mig_busy(const struct mig *m)
{
	for (int i = 0; i < SPEC_MAX_DISKS; i++)
		if (m->mirrors[i].job)
			return 1;
	/*
	 * A call to the other host or a QMP command may still answer into
	 * it for a while after its end: it goes ten minutes after that.
	 */
	return !is_final(m) || m->vm || m->waiter || m->qsd_wait ||
	    (m->role == OUT && !m->peer_clean) ||
	    now_unix_ms() - m->finished_at < 600 * 1000;
}

static void
mig_trim(void)
{
	struct mig *m, *next;
	int ended = 0;

	TAILQ_FOREACH(m, &migs, entry)
		ended += is_final(m);
	for (m = TAILQ_FIRST(&migs); m && ended > MIG_KEEP; m = next) {
		next = TAILQ_NEXT(m, entry);
		if (mig_busy(m) || db_mig_delete(vmgrd->db, m->id) < 0)
			continue;
		TAILQ_REMOVE(&migs, m, entry);
		mig_free(m);
		ended--;
	}
}

static void
timer_in(struct mig *m, double s, void (*fn)(evutil_socket_t, short, void *))
{
	struct timeval tv = tv_of(s);

	if (m->timer)
		event_free(m->timer);
	m->timer = evtimer_new(vmgrd->base, fn, m);
	evtimer_add(m->timer, &tv);
}

/* ---- the pre-shared key: a file QEMU reads (tls-creds-psk dir=) */

static void
psk_dir(const struct vm *vm, char *buf, size_t len)
{
	snprintf(buf, len, "%s/qemu/mig", vm->dir);
}

static int
psk_write(const struct mig *m, uid_t uid, char *err, size_t errlen)
{
	char dir[PATH_MAX], path[PATH_MAX + 16], line[128];
	int fd, n;

	psk_dir(m->vm, dir, sizeof(dir));
	if ((mkdir(dir, 0700) < 0 && errno != EEXIST) || chown(dir, uid,
	    (gid_t)-1) < 0) {
		snprintf(err, errlen, "%.160s: %s", dir, strerror(errno));
		return -1;
	}
	snprintf(path, sizeof(path), "%s/keys.psk", dir);
	unlink(path);
	n = snprintf(line, sizeof(line), "%s:%s\n", MIG_PSK_USER, m->psk);
	if ((fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC |
	    O_NOFOLLOW, 0600)) < 0 || write(fd, line, (size_t)n) != n ||
	    fchown(fd, uid, (gid_t)-1) < 0) {
		snprintf(err, errlen, "%.160s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		explicit_bzero(line, sizeof(line));
		return -1;
	}
	explicit_bzero(line, sizeof(line));
	close(fd);
	return 0;
}

static void
psk_remove(const struct vm *vm)
{
	char dir[PATH_MAX], path[PATH_MAX + 16];

	if (vm == NULL || !vm->dir[0])
		return;
	psk_dir(vm, dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/keys.psk", dir);
	unlink(path);
	rmdir(dir);
}

/*
 * QEMU's name of one of the migration's objects, vmgr-mig-TAG-WHAT (and
 * I when i >= 0): each migration has its own, so nothing an earlier one
 * left behind can stand in its way.
 */
static void
qname(const struct mig *m, const char *what, int i, char *buf, size_t len)
{
	if (i < 0)
		snprintf(buf, len, "vmgr-mig-%s-%s", m->tag, what);
	else
		snprintf(buf, len, "vmgr-mig-%s-%s%d", m->tag, what, i);
}

static void
mig_set_id(struct mig *m, const char *id)
{
	snprintf(m->id, sizeof(m->id), "%.32s", id);
	snprintf(m->tag, sizeof(m->tag), "%.8s", id);
}

static json_t *
tls_object(const struct mig *m, const char *endpoint)
{
	char dir[PATH_MAX], id[48];

	psk_dir(m->vm, dir, sizeof(dir));
	qname(m, "tls", -1, id, sizeof(id));
	json_t *o = json_pack("{s:s, s:s, s:s, s:s}", "qom-type",
	    "tls-creds-psk", "id", id, "endpoint", endpoint, "dir", dir);
	if (strcmp(endpoint, "client") == 0)
		json_object_set_new(o, "username", json_string(MIG_PSK_USER));
	return o;
}

/* ---- the source */

/* Every QMP step: a failure fails the migration (if it is still going). */
static void
out_step(struct qmp *q, json_t *result, const char *error, void *arg)
{
	struct mig *m = arg;

	(void)q;
	if (result == NULL && !is_final(m) && strcmp(m->phase,
	    "handed-over") != 0 && strcmp(m->phase, "completing") != 0)
		out_fail(m, "QEMU: %s", error);
}

static int
out_qmp(struct mig *m, const char *cmd, json_t *args, qmp_reply_cb cb)
{
	if (m->vm == NULL || m->vm->qmp == NULL || !qmp_is_ready(m->vm->qmp)) {
		json_decref(args);
		return -1;
	}
	qmp_command(m->vm->qmp, cmd, args, cb ? cb : out_step, m);
	return 0;
}

/* A disk's NBD node goes, once no job holds it (errors ignored). */
static void
node_del(struct qmp *q, const struct mig *m, int i)
{
	char node[48];

	if (q == NULL)
		return;
	qname(m, "nbd", i, node, sizeof(node));
	qmp_command(q, "blockdev-del", json_pack("{s:s}", "node-name", node),
	    NULL, NULL);
}

static void	mirror_done(const char *, void *);

/* A cancel QEMU refused: the job is gone (or ended); so goes its node. */
static void
cancel_refused(struct qmp *q, json_t *result, const char *error, void *arg)
{
	struct mirror *mr = arg;
	char id[48];

	(void)error;
	if (result || !mr->job)
		return;
	mr->job = 0;
	job_unwatch(mr);
	qname(mr->m, "disk", mr->i, id, sizeof(id));
	qmp_command(q, "job-dismiss", json_pack("{s:s}", "id", id), NULL, NULL);
	node_del(q, mr->m, mr->i);
}

/*
 * What the source's QEMU holds for the migration goes: each mirror is
 * cancelled, and its node goes when its job has ended (mirror_done); the
 * TLS credentials and the key file go now.
 */
static void
out_unwire(struct mig *m)
{
	struct vm *vm = m->vm;
	char id[48];

	if (vm == NULL)
		return;
	psk_remove(vm);
	if (vm->qmp == NULL || m->offline)
		return;
	for (int i = 0; i < vm->spec.ndisks; i++) {
		struct mirror *mr = &m->mirrors[i];
		if (!mr->job) {
			node_del(vm->qmp, m, i);
			continue;
		}
		qname(m, "disk", i, id, sizeof(id));
		qmp_command(vm->qmp, "block-job-cancel", json_pack("{s:s, s:b}",
		    "device", id, "force", 1), cancel_refused, mr);
	}
	qmp_command(vm->qmp, "migrate-set-parameters", json_pack("{s:s}",
	    "tls-creds", ""), NULL, NULL);
	qname(m, "tls", -1, id, sizeof(id));
	qmp_command(vm->qmp, "object-del", json_pack("{s:s}", "id", id), NULL,
	    NULL);
}

/*
 * After a migration that did not happen, the guest runs again as it did.
 * QEMU resumes it itself once its migration has ended (cancelled or
 * failed); this makes sure of it, and resumes it where QEMU will not
 * (after a completed migration the destination could not take).
 */
struct resume {
	char		 name[SPEC_NAME_MAX + 1];
	int64_t		 id;	/* the VM's row: the same VM, not a new one */
	int		 tries;
};

static void	resume_check(evutil_socket_t, short, void *);

static void
resume_later(struct resume *r)
{
	struct timeval tv = { 0, 250 * 1000 };

	if (++r->tries > 40 || event_base_once(vmgrd->base, -1, EV_TIMEOUT,
	    resume_check, r, &tv) < 0) {
		log_warnx("%s: the guest did not run again after the migration",
		    r->name);
		free(r);
	}
}

static void
resume_status(struct qmp *q, json_t *result, const char *error, void *arg)
{
	struct resume *r = arg;
	const char *st = json_string_value(json_object_get(result, "status"));

	if (result == NULL) {
		log_warnx("%s: after the migration: %s", r->name, error);
		free(r);
		return;
	}
	if (st && strcmp(st, "running") == 0) {
		free(r);
		return;
	}
	if (st && (strcmp(st, "paused") == 0 || strcmp(st, "postmigrate") ==
	    0)) {
		qmp_command(q, "cont", NULL, NULL, NULL);
		free(r);
		return;
	}
	resume_later(r);	/* finish-migrate, ...: not yet */
}

static void
resume_migrated(struct qmp *q, json_t *result, const char *error, void *arg)
{
	struct resume *r = arg;
	const char *st = json_string_value(json_object_get(result, "status"));

	(void)error;
	/* No status: QEMU never began to migrate (a cancel before it). */
	if (result && (st == NULL || strcmp(st, "completed") == 0 ||
	    strcmp(st, "failed") == 0 || strcmp(st, "cancelled") == 0 ||
	    strcmp(st, "none") == 0))
		qmp_command(q, "query-status", NULL, resume_status, r);
	else if (result == NULL)
		free(r);
	else
		resume_later(r);
}

static void
resume_check(evutil_socket_t fd, short what, void *arg)
{
	struct resume *r = arg;
	struct vm *vm;

	(void)fd;
	(void)what;
	/* The VM may have gone meanwhile (stopped, deleted): look it up. */
	vm = vm_find_any(r->name);
	if (vm == NULL || vm->id != r->id || vm->qmp == NULL || vm->pid <= 0 || vm->busy !=
	    OP_NONE || vm->state != VM_RUNNING) {
		free(r);
		return;
	}
	qmp_command(vm->qmp, "query-migrate", NULL, resume_migrated, r);
}

/* The guest goes on here, as it was before the migration. */
static void
out_release(struct mig *m)
{
	struct vm *vm = m->vm;
	struct resume *r;

	if (vm == NULL)
		return;
	out_unwire(m);
	vm->busy = OP_NONE;
	vm->mig = NULL;
	m->vm = NULL;
	if (vm->qmp && m->was_running && vm->pid > 0 &&
	    (r = calloc(1, sizeof(*r))) != NULL) {
		snprintf(r->name, sizeof(r->name), "%s", vm->spec.name);
		r->id = vm->id;
		resume_later(r);
	}
	sched_kick();
}

static void
out_finish(struct mig *m, const char *state)
{
	snprintf(m->state, sizeof(m->state), "%s", state);
	m->finished_at = now_unix_ms();
	m->total_ms = (double)(m->finished_at - m->started_at);
	if (m->deadline) {
		event_free(m->deadline);
		m->deadline = NULL;
	}
	set_phase(m, m->phase);
}

/* Before the hand-over: the VM stays (or is again) here, running. */
static void
out_fail(struct mig *m, const char *fmt, ...)
{
	va_list ap;
	int cancelled;

	if (mig_closing)
		return;

	if (is_final(m))
		return;
	va_start(ap, fmt);
	vsnprintf(m->error, sizeof(m->error), fmt, ap);
	va_end(ap);
	cancelled = strcmp(m->error, "cancelled") == 0;
	if (m->vm && m->vm->qmp)
		qmp_command(m->vm->qmp, "migrate_cancel", NULL, NULL, NULL);
	out_release(m);
	out_finish(m, cancelled ? "cancelled" : "failed");
	mig_event(m, cancelled ? "migrate-cancelled" : "migrate-failed",
	    "migration to %s %s%s%s; the VM stays here", m->peer, cancelled ?
	    "cancelled" : "failed", cancelled ? "" : ": ", cancelled ? "" :
	    m->error);
	out_abort_peer(m);
}

/* ---- the source: telling the destination the end */

static void out_retry(evutil_socket_t, short, void *);

static void
abort_answered(int status, json_t *reply, const char *why, void *arg)
{
	struct mig *m = arg;

	(void)reply;
	if (status == 200 || status == 404) {
		m->peer_clean = 1;
		set_phase(m, m->phase);
		return;
	}
	log_warnx("%s: migration %s: the abort at %s: %s (%d); again in %d s",
	    m->vm_name, m->id, m->peer, why ? why : "refused", status,
	    MIG_RETRY_S);
	timer_in(m, MIG_RETRY_S, out_retry);
}

static void
out_abort_peer(struct mig *m)
{
	char path[96], err[256];

	if (m->peer_clean)
		return;
	snprintf(path, sizeof(path), "/v1/migrations/%s/abort", m->id);
	if (peer_request(m->peer, EVHTTP_REQ_POST, path, NULL,
	    MIG_CALL_TIMEOUT_S, abort_answered, m, err, sizeof(err)) < 0) {
		log_warnx("%s: migration %s: %s", m->vm_name, m->id, err);
		if (peer_exists(m->peer))
			timer_in(m, MIG_RETRY_S, out_retry);
	}
}

/* The VM is the destination's: forget it here (after QEMU has gone). */
static void
out_forget(evutil_socket_t fd, short what, void *arg)
{
	struct mig *m = arg;
	struct vm *vm = m->vm;
	char reason[300];

	(void)fd;
	(void)what;
	if (vm == NULL)
		return;
	if (vm->pid > 0) {
		vm_kill_qemu(vm);	/* its exit brings us back */
		return;
	}
	snprintf(reason, sizeof(reason), "migrated to %s", m->peer);
	psk_remove(vm);
	fault_point("migrate:out:before-forget");
	vm->mig = NULL;
	/* A volume it attached moved with it (vm_remove() takes its own). */
	for (int i = 0; i < vm->spec.ndisks; i++)
		if (vm->spec.disks[i].size == 0 && volume_exists(
		    vm->spec.disks[i].volume) && !volume_owned_by(
		    vm->spec.disks[i].volume, vm->spec.name))
			volume_forget(vm->spec.disks[i].volume);
	if (vm_remove(vm, "migrate-out", reason) < 0) {
		vm->mig = m;
		log_warnx("%s: cannot forget the migrated VM: %s", vm->spec.name,
		    db_errmsg(vmgrd->db));
		timer_in(m, MIG_RETRY_S, out_forget);
		return;
	}
	m->vm = NULL;
	out_finish(m, "completed");
}

static void
commit_answered(int status, json_t *reply, const char *why, void *arg)
{
	struct mig *m = arg;
	const char *st = json_string_value(json_object_get(reply, "vm_state"));

	if (status == 200) {
		m->peer_clean = 1;
		m->t_committed = now_mono();
		snprintf(m->vm_state_there, sizeof(m->vm_state_there), "%s",
		    st ? st : "?");
		set_phase(m, m->phase);
		/* QEMU's own figures, then this host forgets the VM. */
		if (out_qmp(m, "query-migrate", NULL, final_figures) < 0)
			out_migrated(m);
		return;
	}
	if (status == 409 && !m->qemu_dead) {
		/* It could not take the state: abort it, and go on here. */
		const char *msg = json_string_value(json_object_get(json_object_get(
		    reply, "error"), "message"));
		snprintf(m->error, sizeof(m->error), "%s could not take the VM: "
		    "%s", m->peer, msg ? msg : "refused");
		snprintf(m->phase, sizeof(m->phase), "reclaiming");
		set_phase(m, "reclaiming");
		out_abort_peer(m);
		return;
	}
	log_warnx("%s: migration %s: the commit at %s: %s (%d); again in %d s",
	    m->vm_name, m->id, m->peer, why ? why : "refused", status,
	    MIG_RETRY_S);
	timer_in(m, MIG_RETRY_S, out_retry);
}

/* After the hand-over: the destination takes the VM. */
static void
out_commit(struct mig *m)
{
	char path[96], err[256];
	json_t *body = json_pack("{s:b}", "force", m->qemu_dead);

	if (mig_closing)
		return;

	if (strcmp(m->phase, "completing") != 0)
		set_phase(m, "completing");
	fault_point("migrate:out:before-commit");
	snprintf(path, sizeof(path), "/v1/migrations/%s/commit", m->id);
	if (peer_request(m->peer, EVHTTP_REQ_POST, path, body,
	    MIG_CALL_TIMEOUT_S + MIG_COMMIT_WAIT_S, commit_answered, m, err,
	    sizeof(err)) < 0) {
		log_warnx("%s: migration %s: %s", m->vm_name, m->id, err);
		timer_in(m, MIG_RETRY_S, out_retry);
	}
	json_decref(body);
}

/*
 * An abort the destination answered, after the hand-over: it has thrown
 * its copy away, so the VM goes on here.
 */
static void
out_reclaimed(struct mig *m)
{
	char why[300];

	snprintf(why, sizeof(why), "%s", m->error);
	out_release(m);
	out_finish(m, "failed");
	mig_event(m, "migrate-failed", "%s; the VM stays here", why);
}

static void
out_retry(evutil_socket_t fd, short what, void *arg)
{
	struct mig *m = arg;

	(void)fd;
	(void)what;
	if (strcmp(m->phase, "completing") == 0 && !m->peer_clean)
		out_commit(m);
	else if (strcmp(m->phase, "reclaiming") == 0 && m->peer_clean)
		out_reclaimed(m);
	else if (!m->peer_clean && is_final(m))
		out_abort_peer(m);
	else if (strcmp(m->phase, "reclaiming") == 0)
		out_abort_peer(m);
}

/* ---- the source: its QEMU's progress */

/*
 * Pre-copy that goes round without getting anywhere: after a few passes
 * what is left still takes longer to send than the downtime allows.
 * Said once, in the record and the event log (QEMU's own figures).
 */
static void
not_converging(struct mig *m, json_t *ram)
{
	double link = m->mbps / 8;	/* MB/s */
	double rate = json_number_value(json_object_get(ram,
	    "dirty-pages-rate")) * json_number_value(json_object_get(ram,
	    "page-size")) / 1048576;
	double left = (double)m->memory_remaining / 1048576;

	if (m->passes < 5 || link <= 0 || left / link * 1000 <=
	    m->max_downtime_ms || strstr(m->note, "not converging"))
		return;
	snprintf(m->note, sizeof(m->note), "pre-copy is not converging: after "
	    "%lld passes %.0f MiB are still left (the guest dirties about "
	    "%.0f MiB/s, the link moves about %.0f MiB/s)%s", m->passes, left,
	    rate, link, m->auto_converge ? "; auto-converge is slowing the "
	    "guest" : "; --auto-converge would slow the guest until it does");
	mig_event(m, "migrate-warning", "%s", m->note);
}

static void
figures(struct qmp *q, json_t *r, const char *error, void *arg)
{
	struct mig *m = arg;
	json_t *ram = json_object_get(r, "ram");

	(void)q;
	(void)error;
	if (r == NULL)
		return;
	if (json_object_get(r, "downtime"))
		m->downtime_ms = json_number_value(json_object_get(r,
		    "downtime"));
	if (ram) {
		m->memory_bytes = (long long)json_number_value(json_object_get(
		    ram, "transferred"));
		m->memory_total = (long long)json_number_value(json_object_get(
		    ram, "total"));
		m->memory_remaining = (long long)json_number_value(
		    json_object_get(ram, "remaining"));
		m->passes = (long long)json_number_value(json_object_get(ram,
		    "dirty-sync-count"));
		m->mbps = json_number_value(json_object_get(ram, "mbps"));
		not_converging(m, ram);
	}
}

static void	jobs_seen(struct qmp *, json_t *, const char *, void *);

/* While disks or memory are copied: their figures, twice a second. */
static void
progress(evutil_socket_t fd, short what, void *arg)
{
	struct mig *m = arg;
	int disks;

	(void)fd;
	(void)what;
	if (is_final(m) || m->vm == NULL)
		return;
	if ((disks = strcmp(m->phase, "disks") == 0) == 0 &&
	    strcmp(m->phase, "memory") != 0)
		return;
	out_qmp(m, disks ? "query-block-jobs" : "query-migrate", NULL,
	    disks ? jobs_seen : figures);
	timer_in(m, 0.5, progress);
}

static void
memory_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct mig *m = arg;

	(void)fd;
	(void)what;
	if (strcmp(m->phase, "memory") == 0)
		out_fail(m, "the memory did not converge in %lld s (dirty rate "
		    "%.0f MiB/s, %lld passes, %lld MiB left); try "
		    "--auto-converge, a larger --max-downtime, or more "
		    "--bandwidth", m->timeout_s, m->dirty_mibs, m->passes,
		    m->memory_remaining >> 20);
}

static void
migrate_sent(struct qmp *q, json_t *result, const char *error, void *arg)
{
	struct mig *m = arg;

	(void)q;
	if (result == NULL) {
		out_fail(m, "migrate: %s", error);
		return;
	}
	struct timeval tv = { m->timeout_s, 0 };
	m->deadline = evtimer_new(vmgrd->base, memory_deadline, m);
	evtimer_add(m->deadline, &tv);
	timer_in(m, 0.5, progress);
}

static void
start_memory(struct mig *m)
{
	char uri[300], tls[48];

	if (mig_closing)
		return;
	json_t *caps = json_pack("[{s:s, s:b}, {s:s, s:b}, {s:s, s:b}]",
	    "capability", "events", "state", 1,
	    "capability", "pause-before-switchover", "state", 1,
	    "capability", "auto-converge", "state", m->auto_converge);
	/*
	 * Every parameter is set each time: QEMU keeps them from one
	 * migration to the next.  No cap means none (QEMU's default is
	 * 128 MiB/s).
	 */
	qname(m, "tls", -1, tls, sizeof(tls));
	json_t *params = json_pack("{s:s, s:I, s:I}", "tls-creds", tls,
	    "downtime-limit", (json_int_t)m->max_downtime_ms, "max-bandwidth",
	    (json_int_t)(m->bandwidth ? m->bandwidth : 1LL << 40));
	set_phase(m, "memory");
	fault_point("migrate:out:memory");
	m->t_memory = now_mono();
	out_qmp(m, "migrate-set-capabilities", json_pack("{s:o}",
	    "capabilities", caps), NULL);
	out_qmp(m, "migrate-set-parameters", params, NULL);
	snprintf(uri, sizeof(uri), strchr(m->host, ':') ? "tcp:[%s]:%d" :
	    "tcp:%s:%d", m->host, m->mig_port);
	if (out_qmp(m, "migrate", json_pack("{s:s}", "uri", uri),
	    migrate_sent) < 0)
		out_fail(m, "QEMU's monitor is not connected");
}

static void	dirty_measured(evutil_socket_t, short, void *);

static void
dirty_rate(struct qmp *q, json_t *r, const char *error, void *arg)
{
	struct mig *m = arg;
	double link = m->bandwidth ? (double)m->bandwidth / 1048576 : 0;

	(void)q;
	(void)error;
	if (is_final(m))
		return;
	/* Still measuring (the disks were quicker): a moment more. */
	if (r && strcmp(json_string_value(json_object_get(r, "status")) ?
	    json_string_value(json_object_get(r, "status")) : "",
	    "measuring") == 0 && ++m->figure_tries < 30) {
		timer_in(m, 0.05, dirty_measured);
		return;
	}
	m->figure_tries = 0;
	if (r && json_object_get(r, "dirty-rate"))
		m->dirty_mibs = json_number_value(json_object_get(r,
		    "dirty-rate"));
	/* The disks' copy says what the link moves, when no cap is set. */
	if (link == 0 && m->disk_ms > 0 && m->disk_bytes > (64 << 20))
		link = (double)m->disk_bytes / 1048576 / (m->disk_ms / 1000);
	if (m->dirty_mibs >= 0 && link > 0 && m->dirty_mibs > link * 0.8 &&
	    !m->auto_converge) {
		snprintf(m->note, sizeof(m->note), "the guest dirties %.0f MiB/s "
		    "and the link moves about %.0f MiB/s: pre-copy may not "
		    "converge (--auto-converge would slow the guest until it "
		    "does)", m->dirty_mibs, link);
		mig_event(m, "migrate-warning", "%s", m->note);
	}
	start_memory(m);
}

static void
dirty_measured(evutil_socket_t fd, short what, void *arg)
{
	struct mig *m = arg;

	(void)fd;
	(void)what;
	if (!is_final(m) && out_qmp(m, "query-dirty-rate", NULL, dirty_rate) <
	    0)
		out_fail(m, "QEMU's monitor is not connected");
}

/*
 * The guest's dirty rate is measured (one second) from the start, while
 * the destination prepares and the disks are copied, so that the memory
 * waits for it as little as can be.
 */
static void
dirty_started(struct qmp *q, json_t *result, const char *error, void *arg)
{
	struct mig *m = arg;

	(void)q;
	if (result == NULL)
		log_info("%s: calc-dirty-rate: %s", m->vm_name, error);
	else
		m->t_dirty = now_mono();
}

/* Every disk is in sync: measure how fast the guest dirties memory. */
static void
disks_ready(struct mig *m)
{

	if (mig_closing)
		return;
	m->disk_ms = (now_mono() - m->t_disks) * 1000;
	mig_event(m, "migrate-disks", "%lld MiB of disk in sync at %s in %.1f s",
	    m->disk_bytes >> 20, m->peer, m->disk_ms / 1000);
	if (!m->was_running || m->t_dirty == 0) {
		start_memory(m);
		return;
	}
	double left = m->t_dirty + 1.0 - now_mono();
	timer_in(m, left > 0 ? left : 0, dirty_measured);
}

/* The disks' figures: bytes copied so far (jobs count what they redo). */
static void
disk_sum(struct mig *m)
{
	long long done = 0;

	for (int i = 0; m->vm && i < m->vm->spec.ndisks; i++)
		done += m->mirrors[i].offset;
	m->disk_bytes = done;
}

/* A mirror ended: at the switch-over (cancel: complete, no pivot) or not. */
static void
mirror_done(const char *error, void *arg)
{
	struct mirror *mr = arg;
	struct mig *m = mr->m;

	if (mr->job)
		node_del(mr->q, m, mr->i);	/* the job has let go of it */
	mr->job = 0;
	if (mig_closing || is_final(m))
		return;
	if (strcmp(m->phase, "switchover") != 0) {
		out_fail(m, "the copy of a disk stopped: %s", error ? error :
		    "ended early");
		return;
	}
	if (error) {
		out_fail(m, "a disk's copy failed at the switch-over: %s", error);
		return;
	}
	if (--m->jobs_left > 0)
		return;
	/* The disks there are whole and the guest is stopped: hand over. */
	fault_point("migrate:out:before-handover");
	if (set_phase(m, "handed-over") < 0) {
		snprintf(m->phase, sizeof(m->phase), "switchover");
		/* Not recorded: it cannot be handed over. */
		out_fail(m, "cannot record the hand-over: %s",
		    db_errmsg(vmgrd->db));
		return;
	}
	if (m->deadline) {
		event_free(m->deadline);
		m->deadline = NULL;
	}
	fault_point("migrate:out:after-handover");
	out_qmp(m, "migrate-continue", json_pack("{s:s}", "state",
	    "pre-switchover"), NULL);
}

static void
switchover_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct mig *m = arg;

	(void)fd;
	(void)what;
	if (strcmp(m->phase, "switchover") == 0)
		out_fail(m, "the disks' copies did not complete in %d s at the "
		    "switch-over", MIG_SWITCHOVER_S);
}

/* An offline move's files are all there: hand over, then commit. */
static void
out_copied(struct mig *m)
{
	if (mig_closing || is_final(m))
		return;
	m->disk_ms = (now_mono() - m->t_disks) * 1000;
	mig_event(m, "migrate-disks", "%.1f MiB in %d file%s copied to %s in "
	    "%.1f s", (double)m->disk_bytes / 1048576, m->nfiles, m->nfiles ==
	    1 ? "" : "s", m->peer, m->disk_ms / 1000);
	fault_point("migrate:out:before-handover");
	if (set_phase(m, "handed-over") < 0) {
		snprintf(m->phase, sizeof(m->phase), "disks");
		out_fail(m, "cannot record the hand-over: %s",
		    db_errmsg(vmgrd->db));
		return;
	}
	fault_point("migrate:out:after-handover");
	out_commit(m);
}

/* QEMU stopped the guest before the last of its memory: complete disks. */
static void
switchover(struct mig *m)
{
	struct timeval tv = { MIG_SWITCHOVER_S, 0 };
	char id[48];

	if (mig_closing)
		return;

	set_phase(m, "switchover");
	fault_point("migrate:out:switchover");
	/* The guest is stopped: that cannot last for ever. */
	if (m->deadline)
		event_free(m->deadline);
	m->deadline = evtimer_new(vmgrd->base, switchover_deadline, m);
	evtimer_add(m->deadline, &tv);
	m->jobs_left = m->vm->spec.ndisks;
	if (m->jobs_left == 0) {
		m->jobs_left = 1;
		m->mirrors[0].m = m;
		mirror_done(NULL, &m->mirrors[0]);
		return;
	}
	for (int i = 0; i < m->vm->spec.ndisks; i++) {
		qname(m, "disk", i, id, sizeof(id));
		out_qmp(m, "block-job-cancel", json_pack("{s:s, s:b}", "device",
		    id, "force", 0), NULL);
	}
}

/* Committed there: say what it cost, and forget the VM here. */
static void
out_migrated(struct mig *m)
{
	/*
	 * What the guest saw: QEMU's downtime (its stop here to the end of
	 * the stream) and the commit's round trip, which ends when it runs
	 * there.
	 */
	if (m->t_completed > 0 && m->t_committed >= m->t_completed)
		m->pause_ms = m->downtime_ms + (m->t_committed -
		    m->t_completed) * 1000;
	if (m->offline)
		mig_event(m, "migrated", "now on %s (%s): %.1f MiB of files in "
		    "%.1f s", m->peer, m->vm_state_there, (double)m->disk_bytes /
		    1048576, now_mono() - m->t0);
	else
		mig_event(m, "migrated", "now on %s (%s): downtime %.0f ms "
		    "(%.0f ms until it ran there), %lld MiB of disk and %lld "
		    "MiB of memory in %.1f s", m->peer, m->vm_state_there,
		    m->downtime_ms, m->pause_ms, m->disk_bytes >> 20,
		    m->memory_bytes >> 20, now_mono() - m->t0);
	out_forget(-1, 0, m);
}

static void
figures_again(evutil_socket_t fd, short what, void *arg)
{
	struct mig *m = arg;

	(void)fd;
	(void)what;
	if (out_qmp(m, "query-migrate", NULL, final_figures) < 0)
		out_migrated(m);
}

/*
 * QEMU sets its downtime a moment after it says "completed" (its
 * migration thread, then its main loop): ask again for up to a second.
 */
static void
final_figures(struct qmp *q, json_t *r, const char *error, void *arg)
{
	struct mig *m = arg;

	figures(q, r, error, arg);
	if (is_final(m) || m->vm == NULL)
		return;
	if (r && json_object_get(r, "downtime") == NULL &&
	    ++m->figure_tries < 20) {
		timer_in(m, 0.05, figures_again);
		return;
	}
	out_migrated(m);
}

/*
 * A job's figures (an event's data or query-block-jobs' entry), when it
 * is one of this migration's mirrors: its disk's index, or -1.
 */
static int
mirror_seen(struct mig *m, json_t *job)
{
	const char *dev = json_string_value(json_object_get(job, "device"));
	char prefix[48];
	int i;

	qname(m, "disk", -1, prefix, sizeof(prefix));
	if (dev == NULL || strncmp(dev, prefix, strlen(prefix)) != 0 ||
	    m->vm == NULL || (i = atoi(dev + strlen(prefix))) < 0 ||
	    i >= m->vm->spec.ndisks)
		return -1;
	m->mirrors[i].offset = (long long)json_integer_value(json_object_get(job,
	    "offset"));
	m->mirrors[i].len = (long long)json_integer_value(json_object_get(job,
	    "len"));
	disk_sum(m);
	return i;
}

static void
out_event(struct mig *m, const char *name, json_t *data)
{
	const char *st = json_string_value(json_object_get(data, "status"));

	if ((strcmp(name, "BLOCK_JOB_READY") == 0 || strcmp(name,
	    "BLOCK_JOB_COMPLETED") == 0) && mirror_seen(m, data) >= 0) {
		if (strcmp(name, "BLOCK_JOB_READY") == 0 && strcmp(m->phase,
		    "disks") == 0 && --m->jobs_left == 0)
			disks_ready(m);
		return;
	}
	if (strcmp(name, "MIGRATION") != 0 || st == NULL)
		return;
	if (strcmp(st, "pre-switchover") == 0 && strcmp(m->phase, "memory") ==
	    0)
		switchover(m);
	else if (strcmp(st, "completed") == 0 && strcmp(m->phase,
	    "handed-over") == 0) {
		/* The guest waits, stopped on both hosts: commit first. */
		m->t_completed = now_mono();
		out_commit(m);
	}
	else if (strcmp(st, "failed") == 0 || strcmp(st, "cancelled") == 0) {
		if (strcmp(m->phase, "handed-over") == 0)
			out_commit(m);	/* it says whether it has the VM */
		else
			out_fail(m, "QEMU's migration %s", st);
	}
}

/* The disks' progress, while they are copied. */
static void
jobs_seen(struct qmp *q, json_t *r, const char *error, void *arg)
{
	size_t k;
	json_t *j;

	(void)q;
	(void)error;
	json_array_foreach(r, k, j)
		mirror_seen(arg, j);
}

/* The destination is ready: copy the disks into its exports. */
static void
start_disks(struct mig *m)
{
	char err[256], id[48], node[48], tls[48], exp[16];
	struct vm *vm = m->vm;

	if (mig_closing)
		return;

	if (psk_write(m, m->vm->qemu_uid, err, sizeof(err)) < 0) {
		out_fail(m, "%s", err);
		return;
	}
	set_phase(m, "disks");
	fault_point("migrate:out:disks");
	m->t_disks = now_mono();
	m->setup_ms = (m->t_disks - m->t0) * 1000;
	out_qmp(m, "object-add", tls_object(m, "client"), NULL);
	qname(m, "tls", -1, tls, sizeof(tls));
	m->jobs_left = vm->spec.ndisks;
	for (int i = 0; i < vm->spec.ndisks; i++) {
		struct mirror *mr = &m->mirrors[i];
		char port[8];
		qname(m, "nbd", i, node, sizeof(node));
		qname(m, "disk", i, id, sizeof(id));
		snprintf(exp, sizeof(exp), "disk%d", i);
		snprintf(port, sizeof(port), "%d", m->nbd_port);
		out_qmp(m, "blockdev-add", json_pack("{s:s, s:s, s:{s:s, s:s, "
		    "s:s}, s:s, s:s}", "driver", "nbd", "node-name", node,
		    "server", "type", "inet", "host", m->host, "port", port,
		    "export", exp, "tls-creds", tls), NULL);
		out_qmp(m, "blockdev-mirror", json_pack("{s:s, s:s, s:s, s:s, "
		    "s:b}", "job-id", id, "device", exp,
		    "target", node, "sync", "full", "auto-dismiss", 0), NULL);
		mr->m = m;
		mr->i = i;
		mr->job = 1;
		mr->q = vm->qmp;
		job_watch(vm->qmp, id, mirror_done, mr);
	}
	if (vm->spec.ndisks == 0)
		disks_ready(m);
	else
		timer_in(m, 0.5, progress);
}

static void
prepared(int status, json_t *reply, const char *why, void *arg)
{
	struct mig *m = arg;
	json_t *err = json_object_get(reply, "error");

	if (is_final(m))
		return;
	if (status == 0) {
		out_fail(m, "%s does not answer: %s", m->peer, why);
		return;
	}
	if (status != 201) {
		/*
		 * An answer: the destination has made nothing, or has undone
		 * what it made before it answered.
		 */
		m->peer_clean = 1;
		const char *msg = json_string_value(json_object_get(err,
		    "message"));
		const char *code = json_string_value(json_object_get(err,
		    "code"));
		out_fail(m, "%s refused it (%d %s): %s", m->peer, status,
		    code ? code : "", msg ? msg : "no reason given");
		return;
	}
	m->nbd_port = (int)json_integer_value(json_object_get(reply,
	    "nbd_port"));
	m->mig_port = (int)json_integer_value(json_object_get(reply, "port"));
	if (m->nbd_port <= 0 || (m->mig_port <= 0 && !m->offline)) {
		out_fail(m, "%s answered without its ports", m->peer);
		return;
	}
	if (m->offline)
		off_copy(m);
	else
		start_disks(m);
}

/* ---- the source: the API */

static int
hex_key(char *buf, size_t len)
{
	unsigned char r[32];

	if (getrandom(r, sizeof(r), 0) != sizeof(r) || len < 65)
		return -1;
	for (size_t i = 0; i < sizeof(r); i++)
		snprintf(buf + 2 * i, 3, "%02x", r[i]);
	explicit_bzero(r, sizeof(r));
	return 0;
}

/* What a VM must be (and not have) to move live. */
static int
can_move(const struct vm *vm, int offline, struct api_err *e)
{
	int live = vm->state == VM_RUNNING || vm->state == VM_PAUSED;

	if (!live && vm->state != VM_CREATED && vm->state != VM_SAVED &&
	    vm->state != VM_CRASHED)
		return api_err(e, 409, "invalid_state", "%s is %s: a running or "
		    "paused VM moves live, a stopped or saved one offline",
		    vm->spec.name, vm_state_name(vm->state));
	if (live && offline)
		return api_err(e, 409, "invalid_state", "%s is %s: it moves "
		    "live (stop or save it first to move it offline)",
		    vm->spec.name, vm_state_name(vm->state));
	if (vm->busy != OP_NONE || vm->storage)
		return api_err(e, 409, "busy", "%s is busy (%s in progress)",
		    vm->spec.name, vm->storage ? vm_storage_name(vm->storage) :
		    vm->busy == OP_MIGRATE ? "a migration" : "an operation");
	if (backup_busy(vm))
		return api_err(e, 409, "busy", "%s has a backup running",
		    vm->spec.name);
	if (vm_has(vm, VMF_PREEMPTED))
		return api_err(e, 409, "preempted", "%s is paused by the "
		    "scheduler; it moves once it runs", vm->spec.name);
	if (vm->spec.cdrom)
		return api_err(e, 409, "has_cdrom", "%s has a cdrom inserted "
		    "(a file of this host): eject it first", vm->spec.name);
	if (!live)
		return 0;	/* off_plan() says what its files allow */
	if (vm->qmp == NULL || !qmp_is_ready(vm->qmp))
		return api_err(e, 503, "qmp_unavailable", "%s: QEMU's monitor "
		    "is not connected", vm->spec.name);
	if (firmware_uefi(&vm->spec))
		return api_err(e, 409, "uefi", "%s boots through UEFI: its "
		    "variable store does not move live yet (stop or save it, "
		    "and it moves offline)", vm->spec.name);
	for (int i = 0; i < vm->spec.ndisks; i++) {
		char path[PATH_MAX], err[256];
		struct qcow2_header h;
		int nsnaps = 0;
		volume_path(vm->spec.disks[i].volume, path, sizeof(path));
		if (qcow2_read_info(path, &h, NULL, 0, &nsnaps, NULL, 0, NULL,
		    err, sizeof(err)) < 0)
			return api_err(e, 500, "bad_image", "%s", err);
		if (nsnaps > 0 || h.nb_snapshots > 0)
			return api_err(e, 409, "has_snapshots", "%s has "
			    "snapshots, which a live move cannot carry: stop "
			    "it and it moves offline with them, or delete them "
			    "(vmgr snapshot list %s)", vm->spec.name,
			    vm->spec.name);
	}
	return 0;
}

/* The spec the destination makes the VM of: each disk at its size. */
static json_t *
spec_for_peer(const struct vm *vm, long long *size, struct api_err *e)
{
	json_t *spec = spec_to_json(&vm->spec);
	json_t *disks = json_object_get(spec, "disks"), *d;
	size_t i;

	json_array_foreach(disks, i, d) {
		char path[PATH_MAX], err[256];
		struct qcow2_header h;
		volume_path(vm->spec.disks[i].volume, path, sizeof(path));
		if (qcow2_read_info(path, &h, NULL, 0, NULL, NULL, 0, NULL, err,
		    sizeof(err)) < 0) {
			json_decref(spec);
			api_err(e, 500, "bad_image", "%s", err);
			return NULL;
		}
		json_object_del(d, "image");
		json_object_del(d, "size_mib");
		json_object_set_new(d, "size", json_integer((json_int_t)h.size));
		*size += (long long)h.size;
	}
	return spec;
}

static long long
opt_int(json_t *body, const char *key, long long dflt)
{
	json_t *v = json_object_get(body, key);

	return v ? (long long)json_number_value(v) : dflt;
}

int
mig_api_start(struct api_call *c)
{
	static const char *const keys[] = { "to", "max_downtime_ms",
	    "bandwidth", "auto_converge", "timeout_s", "postcopy", "offline",
	    NULL };
	struct vm *vm = c->vm;
	const char *to, *host;
	long long dt, bw, tmo;
	struct mig *m;
	char err[256];
	json_t *body, *spec;

	if (api_body_keys(&c->err, c->body, keys) < 0)
		return API_FAIL;
	to = json_string_value(json_object_get(c->body, "to"));
	if (to == NULL)
		return api_err(&c->err, 422, "invalid_value", "\"to\": the remote "
		    "to move %s to (vmgr remote list)", vm->spec.name);
	if (!peer_exists(to) || (host = peer_host(to)) == NULL)
		return api_err(&c->err, 422, "no_such_remote", "no remote named "
		    "\"%s\" (vmgr remote add)", to);
	if (json_is_true(json_object_get(c->body, "postcopy")))
		return api_err(&c->err, 422, "unsupported", "post-copy is "
		    "refused: it splits the guest's memory between the hosts "
		    "until it ends (a cut link loses the VM), and QEMU, as the "
		    "VM's own user, cannot use userfaultfd; use --auto-converge");
	if (json_object_get(c->body, "offline") &&
	    !json_is_boolean(json_object_get(c->body, "offline")))
		return api_err(&c->err, 422, "invalid_value", "offline: true or "
		    "false");
	if (api_body_int(&c->err, c->body, "max_downtime_ms", 1, 60000, &dt) <
	    0 || api_body_int(&c->err, c->body, "bandwidth", 0, 1LL << 40,
	    &bw) < 0 || api_body_int(&c->err, c->body, "timeout_s", 1, 86400,
	    &tmo) < 0)
		return API_FAIL;
	if (json_object_get(c->body, "auto_converge") &&
	    !json_is_boolean(json_object_get(c->body, "auto_converge")))
		return api_err(&c->err, 422, "invalid_value", "auto_converge: "
		    "true or false");
	int offline = vm->state != VM_RUNNING && vm->state != VM_PAUSED;
	if (can_move(vm, json_is_true(json_object_get(c->body, "offline")),
	    &c->err) < 0)
		return API_FAIL;
	long long disk_size = 0;
	if ((spec = spec_for_peer(vm, &disk_size, &c->err)) == NULL)
		return API_FAIL;
	if ((m = calloc(1, sizeof(*m))) == NULL) {
		json_decref(spec);
		return api_err(&c->err, 500, "no_memory", "out of memory");
	}
	char idbuf[65];
	if (hex_key(m->psk, sizeof(m->psk)) < 0 || hex_key(idbuf,
	    sizeof(idbuf)) < 0) {
		json_decref(spec);
		free(m);
		return api_err(&c->err, 500, "internal", "no random bytes");
	}
	idbuf[32] = '\0';
	mig_set_id(m, idbuf);
	m->role = OUT;
	m->vm = vm;
	m->disk_size = disk_size;
	m->offline = offline;
	if (offline && off_plan(m, vm, &c->err) < 0) {
		json_decref(spec);
		free(m);
		return API_FAIL;
	}
	snprintf(m->vm_name, sizeof(m->vm_name), "%s", vm->spec.name);
	snprintf(m->peer, sizeof(m->peer), "%s", to);
	snprintf(m->host, sizeof(m->host), "%s", host);
	snprintf(m->state, sizeof(m->state), "running");
	m->max_downtime_ms = opt_int(c->body, "max_downtime_ms", 300);
	m->bandwidth = opt_int(c->body, "bandwidth", 0);
	m->timeout_s = opt_int(c->body, "timeout_s", MIG_DEFAULT_TIMEOUT_S);
	m->auto_converge = json_is_true(json_object_get(c->body,
	    "auto_converge"));
	m->was_running = vm->state == VM_RUNNING;
	m->dirty_mibs = -1;
	m->started_at = now_unix_ms();
	m->t0 = now_mono();
	snprintf(m->phase, sizeof(m->phase), "preparing");
	if (mig_save(m) < 0) {
		json_decref(spec);
		free(m);
		return api_err(&c->err, 500, "database", "%s",
		    db_errmsg(vmgrd->db));
	}
	mig_trim();
	TAILQ_INSERT_TAIL(&migs, m, entry);
	vm->busy = OP_MIGRATE;
	vm->mig = m;
	sched_kick();
	body = json_pack("{s:s, s:o, s:b, s:s, s:s, s:s}", "id", m->id,
	    "spec", spec, "running", m->was_running, "host", host, "psk", m->psk,
	    "from", host_id());
	char hn[64] = "";
	gethostname(hn, sizeof(hn) - 1);
	json_object_set_new(body, "from_name", json_string(hn));
	/* Volumes it attaches stay free of it there too (not deleted with it). */
	json_t *att = json_array();
	for (int i = 0; i < vm->spec.ndisks; i++)
		if (vm->spec.disks[i].size == 0)
			json_array_append_new(att, json_integer(i));
	json_object_set_new(body, "attached", att);
	if (offline) {
		json_object_set_new(body, "offline", off_json(m));
		mig_event(m, "migrate-start", "offline migration to %s (%d "
		    "file%s, %.1f MiB)", to, m->nfiles, m->nfiles == 1 ? "" :
		    "s", (double)m->disk_size / 1048576);
	} else
		mig_event(m, "migrate-start", "live migration to %s (max "
		    "downtime %lld ms%s)", to, m->max_downtime_ms,
		    m->auto_converge ? ", auto-converge" : "");
	if (m->was_running)
		out_qmp(m, "calc-dirty-rate", json_pack("{s:i}", "calc-time", 1),
		    dirty_started);
	fault_point("migrate:out:preparing");
	if (peer_request(to, EVHTTP_REQ_POST, "/v1/migrations", body,
	    MIG_PREPARE_TIMEOUT_S, prepared, m, err, sizeof(err)) < 0)
		out_fail(m, "%s", err);
	json_decref(body);
	return api_ok(c, 202, mig_json(m));
}

/* ---- the destination */

static void
in_forget_vm(struct mig *m, const char *why)
{
	struct vm *vm = m->vm;

	if (vm == NULL)
		return;
	vm->mig = NULL;
	m->vm = NULL;
	if (vm_remove(vm, "migrate-aborted", why) < 0)
		log_warnx("%s: cannot remove the arrival: %s", m->vm_name,
		    db_errmsg(vmgrd->db));
}

/* The arrival is given up: its QEMU, disks and record go. */
static void
in_abort(struct mig *m, const char *why)
{

	if (mig_closing)
		return;
	if (m->offline)
		off_discard(m);
	if (m->vm && m->vm->pid > 0) {
		/* The first reason is the one that counts. */
		if (!m->error[0])
			snprintf(m->error, sizeof(m->error), "%s", why);
		snprintf(m->state, sizeof(m->state), "aborting");
		vm_kill_qemu(m->vm);	/* in_exited() goes on */
		return;
	}
	in_forget_vm(m, why);
	snprintf(m->state, sizeof(m->state), "failed");
	if (!m->error[0])
		snprintf(m->error, sizeof(m->error), "%s", why);
	m->finished_at = now_unix_ms();
	set_phase(m, "aborted");
	if (m->waiter) {
		if (m->waiter->tag == 'p')
			api_answer_error(m->waiter, 500, "prepare_failed", "%s",
			    why);
		else
			api_answer(m->waiter, 200, mig_json(m));
		m->waiter = NULL;
	}
}

static void
in_step(struct qmp *q, json_t *result, const char *error, void *arg)
{
	struct mig *m = arg;

	(void)q;
	if (result == NULL && strcmp(m->phase, "preparing") == 0 &&
	    strcmp(m->state, "running") == 0) {
		char why[300];
		snprintf(why, sizeof(why), "QEMU: %s", error);
		in_abort(m, why);
	}
}

static void
in_listening(struct qmp *q, json_t *r, const char *error, void *arg)
{
	struct mig *m = arg;
	json_t *sa = json_array_get(json_object_get(r, "socket-address"), 0);
	const char *port = json_string_value(json_object_get(sa, "port"));

	(void)q;
	if (mig_closing || strcmp(m->state, "running") != 0)
		return;
	if (port == NULL) {
		in_abort(m, error ? error : "QEMU does not say its port");
		return;
	}
	m->mig_port = atoi(port);
	set_phase(m, "prepared");
	fault_point("migrate:in:prepared");
	if (m->waiter)
		api_answer(m->waiter, 201, json_pack("{s:s, s:i, s:i}", "id",
		    m->id, "nbd_port", m->nbd_port, "port", m->mig_port));
	m->waiter = NULL;
}

/* A listening TCP socket on host (or any address), its port in *port. */
static int
listen_on(const char *host, int *port)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
	    .ai_flags = AI_NUMERICHOST | AI_PASSIVE }, *ai = NULL;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	int fd = -1;

	if (getaddrinfo(host, "0", &hints, &ai) != 0 || (fd = socket(
	    ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
	    bind(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
		if (fd >= 0)
			close(fd);
		fd = -1;
		if (ai)
			freeaddrinfo(ai);
		ai = NULL;
		/* Not one of ours by that name (NAT, a proxy): any address. */
		struct sockaddr_in6 any = { .sin6_family = AF_INET6 };
		if ((fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
		    bind(fd, (struct sockaddr *)&any, sizeof(any)) < 0) {
			if (fd >= 0)
				close(fd);
			return -1;
		}
	}
	if (ai)
		freeaddrinfo(ai);
	if (listen(fd, 8) < 0 || getsockname(fd, (struct sockaddr *)&ss,
	    &sl) < 0) {
		close(fd);
		return -1;
	}
	*port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->
	    sin6_port : ((struct sockaddr_in *)&ss)->sin_port);
	return fd;
}

static void	in_fd_given(struct qmp *, json_t *, const char *, void *);

/* The hidden QEMU is up: TLS, the NBD exports, the memory's port. */
static void
in_ready(struct mig *m)
{
	struct vm *vm = m->vm;
	char err[256], tls[48], fdname[48];
	int fd;

	if (strcmp(m->phase, "prepared") == 0) {
		/* After a restart: has the memory come meanwhile? */
		qmp_command(vm->qmp, "migrate-set-capabilities", json_pack(
		    "{s:[{s:s, s:b}]}", "capabilities", "capability", "events",
		    "state", 1), NULL, NULL);
		return;
	}
	if (psk_write(m, m->vm->qemu_uid, err, sizeof(err)) < 0) {
		in_abort(m, err);
		return;
	}
	qname(m, "tls", -1, tls, sizeof(tls));
	qname(m, "nbd", -1, fdname, sizeof(fdname));
	qmp_command(vm->qmp, "object-add", tls_object(m, "server"), in_step, m);
	qmp_command(vm->qmp, "migrate-set-capabilities", json_pack(
	    "{s:[{s:s, s:b}]}", "capabilities", "capability", "events", "state",
	    1), in_step, m);
	qmp_command(vm->qmp, "migrate-set-parameters", json_pack("{s:s}",
	    "tls-creds", tls), in_step, m);
	if ((fd = listen_on(m->host, &m->nbd_port)) < 0) {
		snprintf(err, sizeof(err), "cannot listen for NBD: %s",
		    strerror(errno));
		in_abort(m, err);
		return;
	}
	/*
	 * QEMU keeps a passed descriptor only until its next read: nothing
	 * else goes out before getfd is answered.
	 */
	if (qmp_command_fd(vm->qmp, "getfd", json_pack("{s:s}", "fdname",
	    fdname), fd, in_fd_given, m) < 0)
	{
		char why[128];
		snprintf(why, sizeof(why), "cannot pass QEMU its NBD socket: %s",
		    strerror(errno));
		in_abort(m, why);
	}
	close(fd);
}

static void
in_fd_given(struct qmp *q, json_t *result, const char *error, void *arg)
{
	struct mig *m = arg;
	struct vm *vm = m->vm;
	char uri[300], tls[48], fdname[48];

	in_step(q, result, error, arg);
	if (result == NULL || mig_closing || vm == NULL || strcmp(m->state,
	    "running") != 0)
		return;
	qname(m, "tls", -1, tls, sizeof(tls));
	qname(m, "nbd", -1, fdname, sizeof(fdname));
	qmp_command(vm->qmp, "nbd-server-start", json_pack("{s:{s:s, s:{s:s}}, "
	    "s:s}", "addr", "type", "fd", "data", "str", fdname,
	    "tls-creds", tls), in_step, m);
	for (int i = 0; i < vm->spec.ndisks; i++) {
		char node[16], id[48];
		snprintf(node, sizeof(node), "disk%d", i);
		qname(m, "disk", i, id, sizeof(id));
		qmp_command(vm->qmp, "block-export-add", json_pack("{s:s, s:s, "
		    "s:s, s:b, s:s}", "type", "nbd", "id", id, "node-name", node,
		    "writable", 1, "name", node), in_step, m);
	}
	snprintf(uri, sizeof(uri), strchr(m->host, ':') ? "tcp:[%s]:0" :
	    "tcp:%s:0", m->host);
	/* A host that is not ours by that name: any address. */
	{
		int tfd, p;
		if ((tfd = listen_on(m->host, &p)) >= 0) {
			struct sockaddr_storage ss;
			socklen_t sl = sizeof(ss);
			if (getsockname(tfd, (struct sockaddr *)&ss, &sl) == 0 &&
			    ss.ss_family == AF_INET6 && strchr(m->host, ':') ==
			    NULL && strcmp(m->host, "::") != 0) {
				struct addrinfo h2 = { .ai_flags = AI_NUMERICHOST },
				    *a2 = NULL;
				if (getaddrinfo(m->host, NULL, &h2, &a2) != 0 ||
				    a2->ai_family != AF_INET6)
					snprintf(uri, sizeof(uri), "tcp:[::]:0");
				if (a2)
					freeaddrinfo(a2);
			}
			close(tfd);
		}
	}
	qmp_command(vm->qmp, "migrate-incoming", json_pack("{s:s}", "uri", uri),
	    in_step, m);
	qmp_command(vm->qmp, "query-migrate", NULL, in_listening, m);
}

static void
in_made(struct vm *vm, const char *error, void *arg)
{
	struct mig *m = arg;
	char err[300];

	if (vm == NULL) {
		if (!is_final(m))
			in_abort(m, error);
		return;
	}
	if (is_final(m)) {
		/* Aborted while its disks were being made: they go now. */
		if (vm_remove(vm, "migrate-aborted", m->error) < 0)
			log_warnx("%s: cannot remove the arrival: %s", m->vm_name,
			    db_errmsg(vmgrd->db));
		return;
	}
	m->vm = vm;
	vm->mig = m;
	fault_point("migrate:in:disks-made");
	if (m->offline) {
		off_serve(m);
		return;
	}
	if (vm_spawn_incoming(vm, err, sizeof(err)) < 0) {
		in_abort(m, err);
		return;
	}
	/* in_ready() goes on once its QMP is up. */
}

static void
prepare_gone(struct parked *p)
{
	struct mig *m = p->arg;

	/* The source gave up waiting: it will abort; nothing to answer. */
	api_drop(p);
	if (m->waiter == p)
		m->waiter = NULL;
}

int
mig_api_incoming(struct api_call *c)
{
	static const char *const keys[] = { "id", "spec", "running", "host",
	    "psk", "from", "from_name", "offline", "attached", NULL };
	const char *id, *host, *psk, *from, *from_name;
	json_t *spec;
	struct mig *m;
	struct vm tmp;
	struct alloc_vm a;
	struct spec_error se;
	char why[512];

	if (api_body_keys(&c->err, c->body, keys) < 0)
		return API_FAIL;
	id = json_string_value(json_object_get(c->body, "id"));
	host = json_string_value(json_object_get(c->body, "host"));
	psk = json_string_value(json_object_get(c->body, "psk"));
	from = json_string_value(json_object_get(c->body, "from"));
	from_name = json_string_value(json_object_get(c->body, "from_name"));
	spec = json_object_get(c->body, "spec");
	if (id == NULL || strlen(id) != 32 || strspn(id, "0123456789abcdef") !=
	    32 || host == NULL || strlen(host) >= sizeof(m->host) || psk ==
	    NULL || strlen(psk) != 64 || strspn(psk, "0123456789abcdef") != 64 ||
	    from == NULL || !json_is_object(spec))
		return api_err(&c->err, 422, "invalid_value", "a migration needs "
		    "id (32 hex digits), spec, host, psk (64 hex digits) and "
		    "from");
	/* It goes into QEMU's URIs and options: an address or a name only. */
	if (host[0] == '\0' || strspn(host, "abcdefghijklmnopqrstuvwxyz"
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.:-") != strlen(host))
		return api_err(&c->err, 422, "invalid_value", "host: an address "
		    "or a host name");
	if (strcmp(from, host_id()) == 0)
		return api_err(&c->err, 422, "migrate_to_self", "this is the "
		    "VM's own host");
	if (mig_find(id))
		return api_err(&c->err, 409, "exists", "migration %s exists", id);
	memset(&tmp, 0, sizeof(tmp));
	if (spec_from_json(spec, &tmp.spec, &se) < 0)
		return api_err(&c->err, se.status, se.code, "%s", se.message);
	vm_to_alloc(&tmp, &a);
	spec_clear(&tmp.spec);
	/* A stopped or saved VM takes room when it starts, not now. */
	if (json_object_get(c->body, "offline") == NULL && sched_room(&a, why,
	    sizeof(why)) < 0)
		return api_err(&c->err, 409, "no_room", "no room here now: %s",
		    why);
	if ((m = calloc(1, sizeof(*m))) == NULL)
		return api_err(&c->err, 500, "no_memory", "out of memory");
	if (json_object_get(c->body, "offline")) {
		int rc = off_parse(m, json_object_get(c->body, "offline"), 1,
		    why, sizeof(why));
		if (rc < 0) {
			free(m);
			return api_err(&c->err, rc == -2 ? 507 : 422, rc == -2 ?
			    "no_space" : "invalid_value", "%s", why);
		}
	}
	mig_set_id(m, id);
	m->role = IN;
	snprintf(m->vm_name, sizeof(m->vm_name), "%s",
	    json_string_value(json_object_get(spec, "name")));
	snprintf(m->peer, sizeof(m->peer), "%s", from_name && *from_name ?
	    from_name : from);
	snprintf(m->host, sizeof(m->host), "%s", host);
	snprintf(m->psk, sizeof(m->psk), "%s", psk);
	snprintf(m->state, sizeof(m->state), "running");
	snprintf(m->phase, sizeof(m->phase), "preparing");
	m->was_running = json_is_true(json_object_get(c->body, "running"));
	m->started_at = now_unix_ms();
	m->dirty_mibs = -1;
	json_t *att = json_object_get(c->body, "attached"), *v;
	size_t k;
	json_array_foreach(att, k, v) {
		double d = json_number_value(v);
		if (d >= 0 && d < SPEC_MAX_DISKS && d == (int)d)
			m->attached |= 1u << (int)d;
	}
	if ((m->waiter = api_park(c->req, 'p')) == NULL) {
		free(m);
		return api_err(&c->err, 500, "no_memory", "out of memory");
	}
	m->waiter->arg = m;
	m->waiter->gone = prepare_gone;
	/*
	 * Recorded first: a restart from here aborts it, and the VM may be
	 * made (and the prepare answered) before vm_create_incoming() returns.
	 */
	mig_trim();
	TAILQ_INSERT_TAIL(&migs, m, entry);
	set_phase(m, "preparing");
	mig_event(m, "migrate-in", "arriving from %s", m->peer);
	if (vm_create_incoming(spec, m->peer, m->offline ? off_make_mask(m) :
	    ~0u, m->offline ? m->arrive : VM_PAUSED, in_made, m, &c->err) < 0) {
		/* Refused: said in its record too. */
		api_unpark(m->waiter);
		m->waiter = NULL;
		snprintf(m->state, sizeof(m->state), "failed");
		snprintf(m->error, sizeof(m->error), "refused: %.280s", c->err.msg);
		m->finished_at = now_unix_ms();
		set_phase(m, "aborted");
		return API_FAIL;
	}
	return API_WAIT;
}

static void	in_unwire(struct mig *, struct vm *);

/*
 * The volumes it attached there (not its own) are attached here too: no
 * longer the VM's, its spec names them without a size, as there.
 */
static void
in_disown(const struct mig *m, struct vm *vm)
{
	int changed = 0;

	for (int i = 0; i < vm->spec.ndisks; i++)
		if (m->attached & (1u << i)) {
			if (volume_register(vm->spec.disks[i].volume, NULL) < 0)
				log_warnx("%s: volume %s: %s", vm->spec.name,
				    vm->spec.disks[i].volume,
				    db_errmsg(vmgrd->db));
			vm->spec.disks[i].size = 0;
			changed = 1;
		}
	if (!changed)
		return;
	json_t *sj = spec_to_json(&vm->spec);
	char *doc = json_dumps(sj, JSON_COMPACT);
	json_decref(sj);
	if (doc == NULL || db_vm_update_spec(vmgrd->db, vm, doc) < 0)
		log_warnx("%s: its spec: %s", vm->spec.name,
		    db_errmsg(vmgrd->db));
	free(doc);
}

/*
 * Commit, second half: the guest runs here (or stays paused, or stopped
 * when its memory did not come); the record says the VM is this host's.
 */
static void
in_commit_record(struct mig *m, struct parked *p, int how)
{
	struct vm *vm = m->vm;

	fault_point("migrate:in:before-record");
	snprintf(m->state, sizeof(m->state), "completed");
	m->finished_at = now_unix_ms();
	if (set_phase(m, "done") < 0) {
		/* The source asks again; cont is harmless twice. */
		snprintf(m->state, sizeof(m->state), "running");
		snprintf(m->phase, sizeof(m->phase), "prepared");
		api_answer_error(p, 500, "database", "%s", db_errmsg(vmgrd->db));
		return;
	}
	in_disown(m, vm);
	fault_point("migrate:in:committed");
	vm->mig = NULL;
	m->vm = NULL;
	psk_remove(vm);
	in_unwire(m, vm);
	vm_arrived(vm, how, m->peer);
	mig_event(m, "migrated", "arrived from %s%s", m->peer, how >= 0 ? "" :
	    " without its memory (stopped; its disks are whole)");
	api_answer(p, 200, json_pack("{s:s, s:s}", "id", m->id, "vm_state",
	    vm_state_name(vm->state)));
}

struct cont_wait {
	struct mig	*m;
	struct parked	*p;
};

static void
in_running(struct qmp *q, json_t *result, const char *error, void *arg)
{
	struct cont_wait *cw = arg;
	struct mig *m = cw->m;
	struct parked *p = cw->p;

	(void)q;
	free(cw);
	if (mig_closing)
		return;
	if (result == NULL || m->vm == NULL) {
		/* It never ran here: the source may take it back (abort). */
		api_answer_error(p, 409, "cannot_run", "the guest cannot run "
		    "here: %s", error ? error : "its QEMU ended");
		return;
	}
	in_commit_record(m, p, 1);
}

/*
 * Commit: the VM is this host's from now on.  The guest runs first and
 * the record follows, so that a crash between them leaves a running guest
 * whose source still asks for the commit (it never aborts after asking):
 * the commit again finds the memory complete and records it.
 */
static void
in_commit(struct mig *m, int force)
{
	struct vm *vm = m->vm;
	struct parked *p = m->waiter;
	struct cont_wait *cw;

	if (mig_closing)
		return;

	m->waiter = NULL;
	if (m->offline) {
		off_commit(m, p);
		return;
	}
	if (m->incoming <= 0 && !force) {
		api_answer_error(p, 409, "incoming_failed", "the memory did not "
		    "arrive whole here%s", vm && vm->pid > 0 ? "" :
		    " (its QEMU ended)");
		return;
	}
	if (m->incoming <= 0 || vm->pid <= 0 || vm->qmp == NULL) {
		in_commit_record(m, p, -1);	/* the disks alone */
		return;
	}
	if (!m->was_running) {
		in_commit_record(m, p, 0);
		return;
	}
	if ((cw = calloc(1, sizeof(*cw))) == NULL) {
		api_answer_error(p, 500, "no_memory", "out of memory");
		return;
	}
	cw->m = m;
	cw->p = p;
	qmp_command(vm->qmp, "cont", NULL, in_running, cw);
}

static void
commit_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct mig *m = arg;

	(void)fd;
	(void)what;
	if (m->waiter && m->waiter->tag == 'c')
		in_commit(m, 0);
}

static void
in_event(struct mig *m, const char *name, json_t *data)
{
	const char *st = json_string_value(json_object_get(data, "status"));

	if (strcmp(name, "MIGRATION") != 0 || st == NULL)
		return;
	if (strcmp(st, "completed") == 0)
		m->incoming = 1;
	else if (strcmp(st, "failed") == 0)
		m->incoming = -1;
	else
		return;
	if (m->waiter && m->waiter->tag == 'c')
		in_commit(m, 0);
}

static void
in_status(struct qmp *q, json_t *r, const char *error, void *arg)
{
	(void)q;
	(void)error;
	in_event(arg, "MIGRATION", r);
}

static void
in_aborted_later(evutil_socket_t fd, short what, void *arg)
{
	struct mig *m = arg;

	(void)fd;
	(void)what;
	snprintf(m->state, sizeof(m->state), "running");
	in_abort(m, m->error[0] ? m->error : "its QEMU ended");
}

static void
in_exited(struct mig *m)
{
	struct timeval now = { 0, 0 };

	m->incoming = m->incoming > 0 ? 1 : -1;
	if (strcmp(m->state, "aborting") == 0 || strcmp(m->phase,
	    "preparing") == 0) {
		/* The VM goes, once the VM layer is done with its exit. */
		event_base_once(vmgrd->base, -1, EV_TIMEOUT, in_aborted_later, m,
		    &now);
		return;
	}
	/* Its disks stay until the source says (it may have handed over). */
	if (m->waiter && m->waiter->tag == 'c')
		in_commit(m, 0);
}

/* ---- the VM layer's hooks */

/*
 * After a restart past the hand-over, QEMU's migration is where vmgrd
 * left it.  Its end (the MIGRATION event) commits as ever.
 */
static void
restart_status(struct qmp *q, json_t *r, const char *error, void *arg)
{
	struct mig *m = arg;
	const char *st = json_string_value(json_object_get(r, "status"));

	(void)q;
	(void)error;
	if (is_final(m) || m->vm == NULL)
		return;
	if (st && strcmp(st, "pre-switchover") == 0)
		/* Handed over, so promised: let QEMU finish. */
		out_qmp(m, "migrate-continue", json_pack("{s:s}", "state",
		    "pre-switchover"), NULL);
	else if (st && (strcmp(st, "active") == 0 || strcmp(st, "device") ==
	    0 || strcmp(st, "setup") == 0))
		;	/* its MIGRATION event comes */
	else {
		/* completed, failed, ...: the destination says if it has it. */
		if (st && strcmp(st, "completed") == 0)
			m->t_completed = now_mono();
		out_commit(m);
	}
}

static void
hook_ready(struct vm *vm)
{
	struct mig *m = vm->mig;

	if (m == NULL)
		return;
	if (m->role == IN) {
		in_ready(m);
		qmp_command(vm->qmp, "query-migrate", NULL, in_status, m);
		return;
	}
	/* The source after a vmgrd restart: see migrate_load(). */
	if (m->peer_clean && strcmp(m->phase, "completing") == 0)
		out_forget(-1, 0, m);	/* committed there already */
	else if (strcmp(m->phase, "handed-over") == 0 || strcmp(m->phase,
	    "completing") == 0)
		out_qmp(m, "query-migrate", NULL, restart_status);
	else if (strcmp(m->phase, "reclaiming") == 0)
		out_abort_peer(m);
	else {
		/*
		 * Its mirrors may still run (or have ended, not dismissed):
		 * watched again, each is cancelled or cleared as ever.
		 */
		for (int i = 0; strcmp(m->phase, "preparing") != 0 &&
		    i < vm->spec.ndisks; i++) {
			struct mirror *mr = &m->mirrors[i];
			char id[48];
			qname(m, "disk", i, id, sizeof(id));
			mr->m = m;
			mr->i = i;
			mr->job = 1;
			mr->q = vm->qmp;
			job_watch(vm->qmp, id, mirror_done, mr);
		}
		out_fail(m, "vmgrd restarted during the migration");
	}
}

static void
hook_event(struct vm *vm, const char *name, json_t *data)
{
	struct mig *m = vm->mig;

	if (m == NULL)
		return;
	if (m->role == IN)
		in_event(m, name, data);
	else if (!is_final(m))
		out_event(m, name, data);
}

static void
hook_exited(struct vm *vm, const char *how)
{
	struct mig *m = vm->mig;
	struct timeval now = { 0, 0 };

	if (m == NULL) {
		vm->busy = OP_NONE;
		return;
	}
	m->qemu_dead = 1;
	if (m->role == IN) {
		in_exited(m);
		return;
	}
	if (m->peer_clean && strcmp(m->phase, "completing") == 0) {
		/* Migrated: forget it, once we are out of the VM layer. */
		event_base_once(vmgrd->base, -1, EV_TIMEOUT, out_forget, m, &now);
		return;
	}
	if (strcmp(m->phase, "handed-over") == 0 || strcmp(m->phase,
	    "completing") == 0) {
		out_commit(m);	/* with force: the destination has the disks */
		return;
	}
	if (strcmp(m->phase, "reclaiming") == 0)
		vm->busy = OP_NONE;	/* it crashed here; the abort goes on */
	else
		out_fail(m, "its QEMU ended here (%s)", how);
}

/*
 * What an arrival leaves in its QEMU (the NBD server, whose exports hold
 * the disks writable, and the TLS credentials) goes when it commits; a
 * vmgrd that died between the commit's record and that leaves it to its
 * next start, which clears it in the QEMU it adopts (errors ignored).
 */
static void
in_unwire(struct mig *m, struct vm *vm)
{
	char tls[48];

	if (vm->qmp == NULL || vm->pid <= 0)
		return;
	qmp_command(vm->qmp, "nbd-server-stop", NULL, NULL, NULL);
	qmp_command(vm->qmp, "migrate-set-parameters", json_pack("{s:s}",
	    "tls-creds", ""), NULL, NULL);
	qname(m, "tls", -1, tls, sizeof(tls));
	qmp_command(vm->qmp, "object-del", json_pack("{s:s}", "id", tls), NULL,
	    NULL);
}

static void
hook_adopted(struct vm *vm)
{
	struct mig *m, *last = NULL;

	TAILQ_FOREACH(m, &migs, entry)
		if (m->role == IN && strcmp(m->vm_name, vm->spec.name) == 0)
			last = m;
	/* Its QEMU is the one that arrived (not one started since). */
	if (last && strcmp(last->phase, "done") == 0 && vm->started_at <=
	    last->finished_at)
		in_unwire(last, vm);
}

static void
hook_json(const struct vm *vm, json_t *o)
{
	const struct mig *m = vm->mig;

	if (m && m->role == OUT)
		json_object_set_new(o, "migration", mig_json(m));
}

/* ---- the API, both sides */

int
mig_api_list(struct api_call *c)
{
	json_t *a = json_array();
	struct mig *m;

	TAILQ_FOREACH(m, &migs, entry)
		json_array_append_new(a, mig_json(m));
	return api_ok(c, 200, a);
}

int
mig_api_get(struct api_call *c)
{
	struct mig *m = mig_find(c->route.arg[0]);

	if (m == NULL)
		return api_err(&c->err, 404, "no_such_migration", "no migration "
		    "%s", c->route.arg[0]);
	return api_ok(c, 200, mig_json(m));
}

int
mig_api_action(struct api_call *c)
{
	static const char *const keys[] = { "force", NULL };
	struct mig *m = mig_find(c->route.arg[0]);
	const char *a = c->route.arg[1];

	if (m == NULL)
		return api_err(&c->err, 404, "no_such_migration", "no migration "
		    "%s", c->route.arg[0]);
	if (api_body_keys(&c->err, c->body, keys) < 0)
		return API_FAIL;
	if (strcmp(a, "cancel") == 0) {
		if (m->role != OUT)
			return api_err(&c->err, 409, "wrong_side", "cancel it on "
			    "its source, %s", m->peer);
		if (is_final(m))
			return api_err(&c->err, 409, "finished", "migration %s "
			    "has ended (%s)", m->id, m->state);
		if (strcmp(m->phase, "handed-over") == 0 || strcmp(m->phase,
		    "completing") == 0 || strcmp(m->phase, "reclaiming") == 0)
			return api_err(&c->err, 409, "too_late", "%s has been "
			    "handed over to %s; it is being completed",
			    m->vm_name, m->peer);
		out_fail(m, "cancelled");
		return api_ok(c, 200, mig_json(m));
	}
	if (m->role != IN)
		return api_err(&c->err, 404, "unknown_action", "a source takes "
		    "cancel");
	if (strcmp(a, "commit") == 0) {
		if (strcmp(m->phase, "done") == 0) {
			/* Asked again (its answer was lost): the same answer. */
			struct vm *v = vm_find_any(m->vm_name);
			return api_ok(c, 200, json_pack("{s:s, s:s}", "id", m->id,
			    "vm_state", v ? vm_state_name(v->state) : "?"));
		}
		if (strcmp(m->phase, "prepared") != 0 || m->waiter)
			return api_err(&c->err, 409, "invalid_state", "migration "
			    "%s is %s", m->id, m->phase);
		if ((m->waiter = api_park(c->req, 'c')) == NULL)
			return api_err(&c->err, 500, "no_memory", "out of memory");
		if (m->incoming != 0 || m->offline || json_is_true(
		    json_object_get(c->body, "force")))
			in_commit(m, json_is_true(json_object_get(c->body,
			    "force")));
		else
			timer_in(m, MIG_COMMIT_WAIT_S, commit_timeout);
		return API_WAIT;
	}
	if (strcmp(a, "abort") == 0) {
		if (strcmp(m->phase, "done") == 0)
			return api_err(&c->err, 409, "committed", "migration %s "
			    "has committed: the VM is this host's", m->id);
		if (strcmp(m->phase, "aborted") == 0)
			return api_ok(c, 200, mig_json(m));
		if (m->waiter && m->waiter->tag == 'p') {
			/* The source gave up before it heard we were ready. */
			api_answer_error(m->waiter, 409, "aborted", "migration "
			    "%s was aborted by its source", m->id);
			m->waiter = NULL;
		}
		if (m->waiter)
			return api_err(&c->err, 409, "busy", "migration %s is "
			    "busy", m->id);
		if ((m->waiter = api_park(c->req, 'a')) == NULL)
			return api_err(&c->err, 500, "no_memory", "out of memory");
		in_abort(m, "aborted by its source");
		return API_WAIT;
	}
	return api_err(&c->err, 404, "unknown_action", "no action \"%s\"; "
	    "actions are cancel (on the source), commit and abort", a);
}

/* ---- restarts */

static int
load_one(const char *id, const char *vm, const char *role, const char *phase,
    int64_t started_at, const char *doc, void *arg)
{
	json_t *j = json_loads(doc, 0, NULL);
	struct mig *m = calloc(1, sizeof(*m));

	(void)arg;
	if (m == NULL) {
		json_decref(j);
		return -1;
	}
	mig_set_id(m, id);
	snprintf(m->vm_name, sizeof(m->vm_name), "%s", vm);
	m->role = strcmp(role, "in") == 0 ? IN : OUT;
	snprintf(m->phase, sizeof(m->phase), "%s", phase);
	m->started_at = started_at;
#define S(f, k)	snprintf(m->f, sizeof(m->f), "%s", json_string_value( \
	json_object_get(j, k)) ? json_string_value(json_object_get(j, k)) : "")
#define N(f, k)	m->f = json_number_value(json_object_get(j, k))
	S(peer, "peer");
	S(state, "state");
	S(error, "error");
	S(note, "note");
	N(finished_at, "finished_at");
	N(max_downtime_ms, "max_downtime_ms");
	N(bandwidth, "bandwidth");
	N(setup_ms, "setup_ms");
	N(disk_ms, "disk_ms");
	N(total_ms, "total_ms");
	N(downtime_ms, "downtime_ms");
	N(disk_bytes, "disk_bytes");
	N(disk_size, "disk_size");
	N(pause_ms, "switchover_ms");
	N(memory_bytes, "memory_bytes");
	N(memory_total, "memory_total");
	N(passes, "memory_passes");
	N(mbps, "mbps");
	m->dirty_mibs = json_object_get(j, "dirty_rate_mibs") ?
	    json_number_value(json_object_get(j, "dirty_rate_mibs")) : -1;
#undef S
#undef N
	m->auto_converge = json_is_true(json_object_get(j, "auto_converge"));
	m->peer_clean = json_is_true(json_object_get(j, "peer_clean"));
	m->was_running = json_is_true(json_object_get(j, "was_running"));
	m->timeout_s = MIG_DEFAULT_TIMEOUT_S;
	m->t0 = now_mono();
	m->attached = (unsigned)json_number_value(json_object_get(j,
	    "attached"));
	if (json_object_get(j, "offline")) {
		char err[256];
		if (off_parse(m, json_object_get(j, "offline"), 0, err,
		    sizeof(err)) < 0)
			log_warnx("migration %s: %s", m->id, err);
	}
	json_decref(j);
	if (!m->state[0])
		snprintf(m->state, sizeof(m->state), "running");
	TAILQ_INSERT_TAIL(&migs, m, entry);
	return 0;
}

/* One migration not ended when vmgrd stopped: go on from its phase. */
static void
resume_one(struct mig *m)
{
	struct vm *vm = vm_find_any(m->vm_name);

	if (m->role == IN) {
		if (strcmp(m->phase, "done") == 0 || is_final(m))
			return;
		if (m->offline)
			off_restarted(m);	/* its files wait, unserved */
		m->vm = vm;
		if (vm) {
			vm->mig = m;
			vm->flags |= VMF_INCOMING;
			vm->busy = OP_MIGRATE;
			if (vm->pid <= 0)
				m->incoming = -1;
		}
		if (strcmp(m->phase, "preparing") == 0 || vm == NULL) {
			in_abort(m, "vmgrd restarted before the arrival was "
			    "ready");
			return;
		}
		log_info("%s: arriving from %s: waits for its source's word",
		    m->vm_name, m->peer);
		return;
	}
	if (is_final(m)) {
		if (!m->peer_clean)
			out_abort_peer(m);
		return;
	}
	m->vm = vm;
	if (vm == NULL) {
		/* Forgotten here already: it was committed there. */
		m->peer_clean = 1;
		out_finish(m, "completed");
		return;
	}
	vm->mig = m;
	vm->busy = OP_MIGRATE;
	if (m->offline) {
		/* Its copies died with vmgrd: they are whole, or begin anew. */
		if (strcmp(m->phase, "handed-over") == 0 || strcmp(m->phase,
		    "completing") == 0)
			out_commit(m);
		else
			out_fail(m, "vmgrd restarted during the migration");
		return;
	}
	m->qemu_dead = vm->pid <= 0;
	if (m->qemu_dead)
		hook_exited(vm, "gone after a vmgrd restart");
	/* Else hook_ready() goes on once its QMP is up. */
}

int
migrate_load(void)
{
	static const struct vm_mig_hooks h = {
		.ready = hook_ready,
		.event = hook_event,
		.exited = hook_exited,
		.json = hook_json,
		.adopted = hook_adopted,
	};
	struct mig *m, *next;

	static const struct mig_up up = {
		.closing = is_closing,
		.is_final = is_final,
		.set_phase = set_phase,
		.mig_event = mig_event,
		.timer_in = timer_in,
		.qname = qname,
		.psk_write = psk_write,
		.psk_dir = psk_dir,
		.listen_on = listen_on,
		.out_fail = out_fail,
		.out_copied = out_copied,
		.in_abort = in_abort,
		.in_commit_record = in_commit_record,
	};

	vm_set_mig_hooks(&h);
	off_init(&up);
	if (db_mig_foreach(vmgrd->db, load_one, NULL) < 0)
		return -1;
	for (m = TAILQ_FIRST(&migs); m; m = next) {
		next = TAILQ_NEXT(m, entry);
		resume_one(m);
	}
	return 0;
}

void
migrate_stop(void)
{
	struct mig *m;

	mig_closing = 1;
	TAILQ_FOREACH(m, &migs, entry)
		if (m->waiter) {
			api_answer_error(m->waiter, 503, "shutting_down",
			    "vmgrd is stopping");
			m->waiter = NULL;
		}
}

void
migrate_close(void)
{
	struct mig *m;

	while ((m = TAILQ_FIRST(&migs)) != NULL) {
		TAILQ_REMOVE(&migs, m, entry);
		for (int i = 0; i < SPEC_MAX_DISKS; i++)
			job_unwatch(&m->mirrors[i]);
		mig_free(m);
	}
}

/*
 * For /metrics: {"count": [{role, state, n}...], "last": {figures of the
 * last migration out that completed} or absent}.
 */
json_t *
migrate_metrics(void)
{
	static const char *const states[] = { "running", "completed",
	    "failed", "cancelled", NULL };
	long long n[2][4] = { { 0 } };
	const struct mig *m, *last = NULL;
	json_t *count = json_array(), *o;

	TAILQ_FOREACH(m, &migs, entry) {
		for (int k = 0; states[k]; k++)
			if (strcmp(m->state, states[k]) == 0 ||
			    (k == 2 && strcmp(m->state, "aborting") == 0))
				n[m->role][k]++;
		if (m->role == OUT && strcmp(m->state, "completed") == 0)
			last = m;
	}
	for (int r = 0; r < 2; r++)
		for (int k = 0; states[k]; k++)
			json_array_append_new(count, json_pack("{s:s, s:s, s:I}",
			    "role", r == OUT ? "out" : "in", "state", states[k],
			    "n", (json_int_t)n[r][k]));
	o = json_pack("{s:o}", "count", count);
	if (last)
		json_object_set_new(o, "last", json_pack("{s:s, s:f, s:f, s:f, "
		    "s:I, s:I}", "vm", last->vm_name, "downtime_ms",
		    last->downtime_ms, "switchover_ms", last->pause_ms,
		    "total_ms", last->total_ms, "disk_bytes",
		    (json_int_t)last->disk_bytes, "memory_bytes",
		    (json_int_t)last->memory_bytes));
	return o;
}
