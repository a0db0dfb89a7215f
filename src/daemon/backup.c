/*
 * backup.c - backups of a VM's disks, the catalog of them, and the work
 * on them: verify, restore, delete and prune.
 *
 * A backup is made by QEMU's own block jobs, whether the VM runs or not:
 * for a running VM its QEMU does it live; for a stopped one vmgrd starts
 * qemu-storage-daemon on the disks and drives the same jobs through QMP.
 * A full backup is one transaction of, per disk, a new persistent dirty
 * bitmap named after the backup and a blockdev-backup (sync=full) into a
 * fresh qcow2.  An incremental copies only the clusters that bitmap (of
 * the previous backup) marks into a qcow2 whose backing file is the
 * previous backup's, so plain qemu-img restores a chain.  The bitmaps live
 * in the disks' qcow2 files, so they survive VM and vmgrd restarts.
 *
 * A backup is written into ID.partial/, then hashed, described by
 * manifest.json (written atomically) and renamed to ID/; its catalog row
 * says "running" until then, so a crash leaves nothing that looks whole.
 */
#include "daemon.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/keyvalq_struct.h>

#include "../lib/log.h"
#include "../lib/sock.h"
#include "../lib/util.h"
#include "../qemu/proc.h"
#include "../qemu/qmp.h"

#define BACKUP_FORMAT	1
#define MANIFEST	"manifest.json"
#define MANIFEST_MAX	(4 << 20)
#define TICK_MS		250

struct bjob;

struct backup {
	TAILQ_ENTRY(backup)	 entry;
	int64_t			 id;
	char			 vm[SPEC_NAME_MAX + 1];
	char			 kind[16];	/* "full", "incremental" */
	int64_t			 parent;	/* 0: none */
	char			 dir[640];	/* store (<= 512) / vm / id */
	char			 state[16];	/* running, complete, failed */
	char			 error[512];	/* when failed */
	int64_t			 created_at;
	int64_t			 finished_at;
	int64_t			 size_bytes;
	int64_t			 verified_at;
	int			 verify_ok;	/* -1 never, 0 failed, 1 ok */
	int			 busy;		/* verify, restore or prune */
	struct bjob		*job;		/* while running */
	uint64_t		 done_bytes;	/* progress, while running */
	uint64_t		 total_bytes;
};
TAILQ_HEAD(backupq, backup);

static struct backupq backups = TAILQ_HEAD_INITIALIZER(backups);

/* The work of making one backup. */
struct bjob {
	struct backup		*b;
	struct vm		*vm;
	struct parked		*p;		/* ?wait=1, or NULL */
	pid_t			 vm_pid;	/* live: the QEMU it began on */
	int			 own;		/* a storage daemon of ours */
	struct qmp		*qsd;		/* its QMP link */
	pid_t			 qsd_pid;
	uid_t			 qsd_uid;	/* who it runs as: 0 for root */
	gid_t			 qsd_gid;
	struct proc_watch	*qsd_watch;
	int			 ndisks;
	char			 partial[660];
	char			 parent_dir[660];
	char			 new_bitmap[32];
	char			 prev_bitmap[32];
	uint64_t		 disk_size[SPEC_MAX_DISKS];
	/* other vmgr bitmaps found on each disk: dropped after success */
	char			 stale[SPEC_MAX_DISKS][4][QCOW2_NAME_MAX + 1];
	/* The target files, opened by vmgrd once qemu-img has made them. */
	int			 tfd[SPEC_MAX_DISKS];
	char			 sha256[SPEC_MAX_DISKS][65];
	int			 left;		/* replies or jobs outstanding */
	int			 nodes;		/* targets added to QEMU */
	int			 started;	/* the transaction went through */
	struct event		*tick;
	char			 error[512];
	int			 status;	/* HTTP status of the failure */
	int			 step;		/* ST_*: the step in progress */
	int64_t			 fdset[SPEC_MAX_DISKS];	/* add-fd's, or -1 */
	struct fdslot {
		struct bjob	*bj;
		int		 d;
	}			 fdslot[SPEC_MAX_DISKS];
	uint64_t		 speed;		/* bytes/s for all disks, 0 = no limit */
	int			 tick_pending;	/* a query-jobs is out */
	double			 t_start, t_copied;	/* monotonic s */
	int			 dead;		/* freed when it returns */
};

static void	bjob_step(struct bjob *);
static void	bjob_fail(struct bjob *, int status, const char *fmt, ...)
		    __attribute__((format(printf, 3, 4)));

/* ---- the catalog ---------------------------------------------------------- */

static struct backup *
backup_find(int64_t id)
{
	struct backup *b;

	TAILQ_FOREACH(b, &backups, entry)
		if (b->id == id)
			return b;
	return NULL;
}

/* The newest complete backup of vm, or NULL. */
static struct backup *
backup_latest(const char *vm)
{
	struct backup *b, *latest = NULL;

	TAILQ_FOREACH(b, &backups, entry)
		if (strcmp(b->vm, vm) == 0 && strcmp(b->state, "complete") == 0)
			latest = b;
	return latest;
}

static int
backup_children(const struct backup *parent)
{
	struct backup *b;
	int n = 0;

	TAILQ_FOREACH(b, &backups, entry)
		if (b->parent == parent->id && strcmp(b->state, "failed") != 0)
			n++;
	return n;
}

static void
backup_row(const struct backup *b, struct backup_row *r)
{
	*r = (struct backup_row){
		.id = b->id, .vm = b->vm, .kind = b->kind, .parent = b->parent,
		.dir = b->dir, .state = b->state, .created_at = b->created_at,
		.finished_at = b->finished_at, .size_bytes = b->size_bytes,
		.verified_at = b->verified_at, .verify_ok = b->verify_ok,
	};
}

static int
backup_save(const struct backup *b)
{
	struct backup_row r;

	backup_row(b, &r);
	return db_backup_update(vmgrd->db, &r);
}

static void
backup_free(struct backup *b)
{
	if (b == NULL)
		return;
	TAILQ_REMOVE(&backups, b, entry);
	free(b);
}

int
backup_busy(const struct vm *vm)
{
	struct backup *b;

	TAILQ_FOREACH(b, &backups, entry)
		if (b->job && b->job->vm == vm)
			return 1;
	return 0;
}

static json_t *
manifest_read(const struct backup *b, char *err, size_t errlen)
{
	char path[PATH_MAX + 32];
	json_error_t jerr;
	json_t *m;

	snprintf(path, sizeof(path), "%s/" MANIFEST, b->dir);
	if ((m = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr)) == NULL) {
		snprintf(err, errlen, "%.200s: %.50s", path, access(path, F_OK) ?
		    strerror(errno) : jerr.text);
		return NULL;
	}
	if (!json_is_object(m) || json_integer_value(json_object_get(m,
	    "format")) != BACKUP_FORMAT || !json_is_array(json_object_get(m,
	    "disks"))) {
		snprintf(err, errlen, "%.200s: not a vmgr backup manifest of format "
		    "%d", path, BACKUP_FORMAT);
		json_decref(m);
		return NULL;
	}
	return m;
}

static json_t *
backup_json(const struct backup *b, int detail)
{
	json_t *o = json_pack("{s:I, s:s, s:s, s:o, s:s, s:s, s:I, s:I, s:I}",
	    "id", (json_int_t)b->id, "vm", b->vm, "kind", b->kind, "parent",
	    b->parent ? json_integer(b->parent) : json_null(), "state",
	    b->state, "dir", b->dir, "created_at", (json_int_t)b->created_at,
	    "finished_at", (json_int_t)b->finished_at, "size_bytes",
	    (json_int_t)b->size_bytes);

	json_object_set_new(o, "verified", b->verify_ok < 0 ? json_null() :
	    json_boolean(b->verify_ok));
	json_object_set_new(o, "verified_at", json_integer(b->verified_at));
	if (b->error[0])
		json_object_set_new(o, "error", json_string(b->error));
	if (b->job)
		json_object_set_new(o, "progress", json_pack("{s:I, s:I, s:f}",
		    "done_bytes", (json_int_t)b->done_bytes, "total_bytes",
		    (json_int_t)b->total_bytes, "percent", b->total_bytes ?
		    100.0 * (double)b->done_bytes / (double)b->total_bytes :
		    0.0));
	if (detail && strcmp(b->state, "complete") == 0) {
		char err[256];
		json_t *m = manifest_read(b, err, sizeof(err));
		if (m) {
			json_object_set(o, "disks", json_object_get(m, "disks"));
			json_object_set(o, "spec", json_object_get(m, "spec"));
			json_object_set(o, "qemu_version", json_object_get(m,
			    "qemu_version"));
			if (json_object_get(m, "timing"))
				json_object_set(o, "timing", json_object_get(m,
				    "timing"));
			json_decref(m);
		} else
			json_object_set_new(o, "manifest_error",
			    json_string(err));
	}
	return o;
}

/* ---- making a backup: QMP ----------------------------------------------- */

/*
 * The QMP link for the next command: our storage daemon's, or the VM's as
 * it is now.  The VM's link is the VM's to free (when QEMU exits, or its
 * monitor is reconnected), so it is looked up each time and never kept;
 * and only while the QEMU the backup began on still runs.
 */
static struct qmp *
bjob_qmp(const struct bjob *bj)
{
	const struct vm *vm = bj->vm;

	if (bj->own)
		return bj->qsd;
	if (vm->pid <= 0 || vm->pid != bj->vm_pid || vm->qmp == NULL ||
	    !qmp_is_ready(vm->qmp))
		return NULL;
	return vm->qmp;
}

static void
bjob_free(struct bjob *bj)
{
	if (bj->tick) {
		event_free(bj->tick);
		bj->tick = NULL;
	}
	for (int d = 0; d < SPEC_MAX_DISKS; d++)
		if (bj->tfd[d] >= 0) {
			close(bj->tfd[d]);
			bj->tfd[d] = -1;
		}
	if (bj->tick_pending) {
		bj->dead = 1;	/* the reply frees it */
		return;
	}
	free(bj);
}

static void
bjob_tick_reply(struct qmp *q, json_t *result, const char *error, void *arg)
{
	struct bjob *bj = arg;
	uint64_t done = 0, total = 0;
	char prefix[48];
	size_t i;
	json_t *j;

	(void)q;
	bj->tick_pending = 0;
	if (bj->dead) {
		free(bj);
		return;
	}
	if (error)
		return;
	snprintf(prefix, sizeof(prefix), "vmgr-bk%lld-", (long long)bj->b->id);
	json_array_foreach(result, i, j) {
		const char *id = json_string_value(json_object_get(j, "id"));
		if (id == NULL || strncmp(id, prefix, strlen(prefix)) != 0)
			continue;
		done += (uint64_t)json_integer_value(json_object_get(j,
		    "current-progress"));
		total += (uint64_t)json_integer_value(json_object_get(j,
		    "total-progress"));
	}
	if (total) {
		bj->b->done_bytes = done;
		bj->b->total_bytes = total;
	}
}

static void
bjob_tick(evutil_socket_t fd, short what, void *arg)
{
	struct bjob *bj = arg;
	struct qmp *q = bjob_qmp(bj);

	(void)fd;
	(void)what;
	if (!bj->tick_pending && q && qmp_command(q, "query-jobs", NULL,
	    bjob_tick_reply, bj) == 0)
		bj->tick_pending = 1;
}

/*
 * The steps of a backup, each named for what it does.  bjob_step() starts
 * the work of bj->step; when its replies and jobs are all in (bj->left
 * reaches 0) the next step begins.  After a failure the steps up to
 * ST_JOBS do nothing; ST_CLOSE and ST_QUIT always clean up.
 */
enum {
	ST_TARGETS,	/* qemu-img create the target files */
	ST_OPEN,	/* open them: vmgrd's descriptors from here on */
	ST_CONNECT,	/* a storage daemon of ours, for a stopped VM */
	ST_BITMAPS,	/* query-named-block-nodes: the bitmaps there */
	ST_FDS,		/* hand the targets to the VM's QEMU (add-fd) */
	ST_NODES,	/* blockdev-add them */
	ST_JOBS,	/* the transaction, then the jobs run */
	ST_CLOSE,	/* blockdev-del the targets, sort out the bitmaps */
	ST_QUIT,	/* stop our storage daemon, if any */
	ST_SYNC,	/* fsync and hash the targets, off the loop */
	ST_COMMIT,	/* the manifest, the rename, the catalog */
};

/* One more reply or job counted down; the next step when all are in. */
static void
bjob_settle(struct bjob *bj)
{
	if (--bj->left == 0) {
		bj->step++;
		bjob_step(bj);
	}
}

/* The first error of the backup itself; the clean-up's are only logged. */
static void
bjob_error(struct bjob *bj, const char *error)
{
	if (bj->step >= ST_CLOSE)
		log_warnx("%s: backup %lld, clean-up: %s", bj->vm->spec.name,
		    (long long)bj->b->id, error);
	else if (!bj->error[0])
		snprintf(bj->error, sizeof(bj->error), "%.500s", error);
}

static void
bjob_reply(struct qmp *q, json_t *result, const char *error, void *arg)
{
	struct bjob *bj = arg;

	(void)q;
	(void)result;
	if (error)
		bjob_error(bj, error);
	bjob_settle(bj);
}

/* Send a command counted in bj->left; one that cannot go counts down. */
static void
bjob_cmd(struct bjob *bj, const char *cmd, json_t *args)
{
	struct qmp *q = bjob_qmp(bj);

	bj->left++;
	if (q == NULL || qmp_command(q, cmd, args, bjob_reply, bj) < 0) {
		if (q == NULL)
			json_decref(args);
		bjob_error(bj, "QEMU is gone");
		bj->left--;
	}
}

static void
bjob_job_done(const char *error, void *arg)
{
	struct bjob *bj = arg;

	if (error && !bj->error[0]) {
		snprintf(bj->error, sizeof(bj->error), "%.500s", error);
		if (strstr(error, "No space") || strstr(error, "Disk quota"))
			bj->status = 507;
	}
	bjob_settle(bj);
}

static void
bjob_bitmaps(struct qmp *q, json_t *result, const char *error, void *arg)
{
	struct bjob *bj = arg;
	size_t i, k;
	json_t *node, *bm;

	(void)q;
	if (error) {
		bjob_error(bj, error);
		bjob_settle(bj);
		return;
	}
	for (int d = 0; d < bj->ndisks; d++) {
		char name[16];
		int found = 0, nstale = 0;
		snprintf(name, sizeof(name), "disk%d", d);
		json_array_foreach(result, i, node) {
			const char *nn = json_string_value(json_object_get(node,
			    "node-name"));
			if (nn == NULL || strcmp(nn, name) != 0)
				continue;
			json_array_foreach(json_object_get(node, "dirty-bitmaps"),
			    k, bm) {
				const char *bn = json_string_value(json_object_get(bm,
				    "name"));
				if (bn == NULL || strncmp(bn, "vmgr-", 5) != 0)
					continue;
				if (bj->prev_bitmap[0] &&
				    strcmp(bn, bj->prev_bitmap) == 0) {
					found = !json_is_true(json_object_get(bm,
					    "inconsistent")) && json_is_true(
					    json_object_get(bm, "recording"));
				}
				if (nstale < 4)
					snprintf(bj->stale[d][nstale++],
					    sizeof(bj->stale[d][0]), "%s", bn);
			}
		}
		if (bj->prev_bitmap[0] && !found && !bj->error[0]) {
			snprintf(bj->error, sizeof(bj->error), "the changes to "
			    "%s since backup %lld were not tracked to the end "
			    "(its bitmap %s is missing or inconsistent, as after "
			    "QEMU was killed or the disk was restored); take a "
			    "full backup", bj->vm->spec.disks[d].volume,
			    (long long)bj->b->parent, bj->prev_bitmap);
			bj->status = 409;
		}
	}
	bjob_settle(bj);
}

/* add-fd answered: arg points into the bjob's fdset[]. */
static void
bjob_fd_added(struct qmp *q, json_t *result, const char *error, void *arg)
{
	struct fdslot *slot = arg;
	struct bjob *bj = slot->bj;

	(void)q;
	if (error == NULL)
		bj->fdset[slot->d] = json_integer_value(json_object_get(result,
		    "fdset-id"));
	else {
		char msg[512];
		snprintf(msg, sizeof(msg), "add-fd: %.400s", error);
		bjob_error(bj, msg);
	}
	bjob_settle(bj);
}

/* A refused transaction started no job: its watches go, with their counts. */
static void
bjob_transacted(struct qmp *q, json_t *result, const char *error, void *arg)
{
	struct bjob *bj = arg;

	(void)q;
	(void)result;
	if (error) {
		bj->left -= job_unwatch(bj);
		bjob_error(bj, error);
	} else
		bj->started = 1;
	bjob_settle(bj);
}

static void
target_made(int status, const char *output, void *arg)
{
	struct bjob *bj = arg;

	if (status != 0 && !bj->error[0]) {
		snprintf(bj->error, sizeof(bj->error), "qemu-img: %.480s",
		    output);
		bj->error[strcspn(bj->error, "\n")] = '\0';
		if (strstr(output, "No space"))
			bj->status = 507;
	}
	bjob_settle(bj);
}

static void
target_path(const struct bjob *bj, int d, char *buf, size_t len)
{
	snprintf(buf, len, "%s/disk%d.qcow2", bj->partial, d);
}

/* The targets are on disk (fsync) and hashed. */
static void
bjob_synced(const char *why, const struct fdwork_result *res, void *arg)
{
	struct bjob *bj = arg;

	for (int d = 0; d < bj->ndisks && !bj->error[0]; d++) {
		if (why || res[d].error) {
			snprintf(bj->error, sizeof(bj->error), "disk%d.qcow2: "
			    "%s", d, why ? why : strerror(res[d].error));
			if (!why && res[d].error == ENOSPC)
				bj->status = 507;
		} else
			memcpy(bj->sha256[d], res[d].sha256, 65);
	}
	bjob_settle(bj);
}

static void
qsd_exited(pid_t pid, int status, void *arg)
{
	struct bjob *bj = arg;
	char how[128], msg[512];

	(void)pid;
	proc_watch_free(bj->qsd_watch);
	bj->qsd_watch = NULL;
	bj->qsd_pid = 0;
	if (bj->step < ST_QUIT) {
		/* It died under us; its QMP link fails what is pending. */
		char path[PATH_MAX], tail[256];
		proc_status_str(status, how, sizeof(how));
		snprintf(path, sizeof(path), "%s/qsd.log", bj->vm->dir);
		if (last_line(path, tail, sizeof(tail)) < 0)
			tail[0] = '\0';
		snprintf(msg, sizeof(msg), "the storage daemon %s%s%.300s", how,
		    tail[0] ? ": " : "", tail);
		/* Its own words say better why it did not answer. */
		if (strncmp(bj->error, "the storage daemon did not answer", 33)
		    == 0)
			bj->error[0] = '\0';
		bjob_error(bj, msg);
		return;
	}
	bjob_settle(bj);
}

static void
qsd_ready(struct qmp *q, void *arg)
{
	(void)q;
	bjob_settle(arg);
}

static void
qsd_event(struct qmp *q, const char *name, json_t *data, void *arg)
{
	(void)arg;
	job_event(q, name, data);
}

static void
qsd_closed(struct qmp *q, const char *why, void *arg)
{
	struct bjob *bj = arg;

	job_qmp_gone(q, why);
	if (bj->step == ST_CONNECT) {
		char msg[512];
		snprintf(msg, sizeof(msg), "the storage daemon did not answer: "
		    "%.400s", why);
		bjob_error(bj, msg);
		bjob_settle(bj);
	}
}

static const struct qmp_handlers qsd_handlers = {
	.ready = qsd_ready,
	.event = qsd_event,
	.closed = qsd_closed,
};

/* The targets become uid's (the storage daemon's), or root's again. */
static void
lend_targets(struct bjob *bj, uid_t uid, gid_t gid)
{
	char msg[300];

	for (int d = 0; d < bj->ndisks; d++)
		if (bj->tfd[d] >= 0 && fchown(bj->tfd[d], uid, gid) < 0) {
			snprintf(msg, sizeof(msg), "disk%d.qcow2: %s", d,
			    strerror(errno));
			bjob_error(bj, msg);
		}
}

/*
 * Start qemu-storage-daemon on the VM's disks, with its QMP on fd 3 and
 * the target files on fds 4 and up (it opens them as /dev/fd/N).  As root
 * it runs as the VM's own user (priv.c), like the VM's QEMU: the target
 * files are lent to that user, the directory they are in never is, and
 * its log and pid file are vmgrd's, in the VM's run dir.
 */
static int
qsd_spawn(struct bjob *bj)
{
	char sock[PATH_MAX], logp[PATH_MAX], pidf[PATH_MAX];
	char *argv[8 + 2 * SPEC_MAX_DISKS] = { 0 };
	char *dumps[SPEC_MAX_DISKS] = { 0 };
	int fds[1 + SPEC_MAX_DISKS];
	struct proc_cred cred;
	int lfd, cfd, n = 0, rc = -1, as_user = 0;

	if (priv_prepare_vm(bj->vm, &cred, &as_user, bj->error,
	    sizeof(bj->error)) < 0)
		return -1;
	if (as_user) {
		bj->qsd_uid = cred.uid;
		bj->qsd_gid = cred.gid;
		lend_targets(bj, cred.uid, cred.gid);
		if (bj->error[0])
			return -1;
	}
	snprintf(sock, sizeof(sock), "%s/qsd.sock", bj->vm->dir);
	snprintf(logp, sizeof(logp), "%s/qsd.log", bj->vm->dir);
	snprintf(pidf, sizeof(pidf), "%s/qsd.pid", bj->vm->dir);
	unlink(logp);
	if ((lfd = sock_bind(sock, SOCK_STREAM, 1, 0)) < 0) {
		snprintf(bj->error, sizeof(bj->error), "%.300s: %s", sock,
		    strerror(errno));
		return -1;
	}
	fds[0] = lfd;
	argv[n++] = "qemu-storage-daemon";
	argv[n++] = "--chardev";
	argv[n++] = "socket,id=mon,fd=3,server=on,wait=off";
	argv[n++] = "--monitor";
	argv[n++] = "chardev=mon";
	for (int d = 0; d < bj->ndisks; d++) {
		char path[PATH_MAX], node[16];
		json_t *o;
		volume_path(bj->vm->spec.disks[d].volume, path, sizeof(path));
		snprintf(node, sizeof(node), "disk%d", d);
		o = json_pack("{s:s, s:s, s:{s:s, s:s}}", "driver", "qcow2",
		    "node-name", node, "file", "driver", "file", "filename", path);
		dumps[d] = json_dumps(o, JSON_COMPACT);
		json_decref(o);
		argv[n++] = "--blockdev";
		argv[n++] = dumps[d];
		fds[1 + d] = bj->tfd[d];
	}
	struct proc_spawn sp = {
		.argv = argv,
		.logpath = logp,
		.pidfile = pidf,
		.fds = fds,
		.nfds = 1 + bj->ndisks,
		.cred = as_user ? &cred : NULL,
	};
	if ((bj->qsd_pid = proc_spawn_detached(&sp)) < 0) {
		snprintf(bj->error, sizeof(bj->error), "cannot start "
		    "qemu-storage-daemon: %s", strerror(errno));
		bj->qsd_pid = 0;
		goto out;
	}
	bj->own = 1;
	bj->qsd_watch = proc_watch_new(vmgrd->base, bj->qsd_pid, qsd_exited,
	    bj);
	if ((cfd = sock_connect(sock, SOCK_NONBLOCK)) < 0 ||
	    (bj->qsd = qmp_new(vmgrd->base, cfd, &qsd_handlers, bj)) == NULL) {
		snprintf(bj->error, sizeof(bj->error), "cannot connect to the "
		    "storage daemon: %s", strerror(errno));
		goto out;
	}
	rc = 0;
out:
	close(lfd);
	for (int d = 0; d < bj->ndisks; d++)
		free(dumps[d]);
	return rc;
}

static void
bjob_finish(struct bjob *bj)
{
	struct backup *b = bj->b;
	struct vm *vm = bj->vm;

	vm->storage_op[0] = '\0';
	b->job = NULL;
	if (bj->error[0]) {
		log_warnx("%s: backup %lld failed: %s", vm->spec.name,
		    (long long)b->id, bj->error);
		rm_rf(bj->partial);
		if (db_backup_delete(vmgrd->db, b->id) < 0)
			log_warnx("%s: %s", __func__, db_errmsg(vmgrd->db));
		snprintf(b->state, sizeof(b->state), "failed");
		snprintf(b->error, sizeof(b->error), "%s", bj->error);
		api_answer_error(bj->p, bj->status ? bj->status : 500,
		    bj->status == 507 ? "no_space" : bj->status == 409 ?
		    "incremental_impossible" : "backup_failed", "backup of %s "
		    "failed: %s", vm->spec.name, bj->error);
	} else {
		log_info("%s: backup %lld complete (%s, %lld bytes)",
		    vm->spec.name, (long long)b->id, b->kind,
		    (long long)b->size_bytes);
		api_answer(bj->p, 201, backup_json(b, 1));
	}
	bjob_free(bj);
}

/* The manifest, written into the partial directory, then the rename. */
static int
bjob_commit(struct bjob *bj)
{
	struct backup *b = bj->b;
	char man[PATH_MAX + 32];
	json_t *m, *disks = json_array();
	int64_t total = 0;
	struct stat st;

	for (int d = 0; d < bj->ndisks; d++) {
		if (fstat(bj->tfd[d], &st) < 0) {
			snprintf(bj->error, sizeof(bj->error), "disk%d.qcow2: %s",
			    d, strerror(errno));
			json_decref(disks);
			return -1;
		}
		total += (int64_t)st.st_size;
		char file[32];
		snprintf(file, sizeof(file), "disk%d.qcow2", d);
		json_array_append_new(disks, json_pack("{s:i, s:s, s:s, s:I, "
		    "s:I, s:s}", "index", d, "volume",
		    bj->vm->spec.disks[d].volume, "file", file, "virtual_size",
		    (json_int_t)bj->disk_size[d], "size", (json_int_t)st.st_size,
		    "sha256", bj->sha256[d]));
	}
	b->finished_at = now_unix_ms();
	b->size_bytes = total;
	double now = now_mono();
	m = json_pack("{s:i, s:I, s:s, s:s, s:o, s:I, s:I, s:s, s:o, s:o, "
	    "s:I, s:{s:I, s:I}}", "format", BACKUP_FORMAT, "id", (json_int_t)b->id, "vm",
	    b->vm, "kind", b->kind, "parent", b->parent ?
	    json_integer(b->parent) : json_null(), "created_at",
	    (json_int_t)b->created_at, "finished_at",
	    (json_int_t)b->finished_at, "qemu_version", vmgrd->qemu_version,
	    "spec", spec_to_json(&bj->vm->spec), "disks", disks, "size_bytes",
	    (json_int_t)total, "timing", "copy_ms", (json_int_t)((bj->t_copied -
	    bj->t_start) * 1000), "hash_ms", (json_int_t)((now - bj->t_copied) *
	    1000));
	char *text = json_dumps(m, JSON_INDENT(2) | JSON_SORT_KEYS);
	json_decref(m);
	snprintf(man, sizeof(man), "%s/" MANIFEST, bj->partial);
	if (text == NULL || write_file_atomic(man, text, strlen(text),
	    0600) < 0) {
		snprintf(bj->error, sizeof(bj->error), "cannot write %.300s: %s",
		    man, strerror(errno));
		if (errno == ENOSPC)
			bj->status = 507;
		free(text);
		return -1;
	}
	free(text);
	fault_point("backup:after-manifest");
	/* The files and the manifest are on disk: the rename commits. */
	if (rename(bj->partial, b->dir) < 0) {
		snprintf(bj->error, sizeof(bj->error), "rename %.300s: %s",
		    bj->partial, strerror(errno));
		return -1;
	}
	if (fsync_dir_of(b->dir) < 0)
		log_warn("%s: fsync the directory of %s", __func__, b->dir);
	fault_point("backup:after-rename");
	snprintf(b->state, sizeof(b->state), "complete");
	if (backup_save(b) < 0) {
		/* Not in the catalog: nothing of it may stay. */
		snprintf(bj->error, sizeof(bj->error), "cannot record the "
		    "backup: %s", db_errmsg(vmgrd->db));
		if (db_full(vmgrd->db))
			bj->status = 507;
		rename(b->dir, bj->partial);
		return -1;
	}
	return 0;
}

static void
bjob_step(struct bjob *bj)
{
	char path[PATH_MAX];

	bj->left = 1;		/* held while this step sends its work */
	switch (bj->step) {
	case ST_TARGETS:
		if (bj->error[0])
			break;
		for (int d = 0; d < bj->ndisks; d++) {
			char size[32], backing[PATH_MAX + 32];
			target_path(bj, d, path, sizeof(path));
			snprintf(size, sizeof(size), "%llu",
			    (unsigned long long)bj->disk_size[d]);
			snprintf(backing, sizeof(backing), "%s/disk%d.qcow2",
			    bj->parent_dir, d);
			/*
			 * A full backup's clusters are large: fewer metadata
			 * writes.  An incremental's must be the bitmap's
			 * granularity (64 KiB): it is written with its backing
			 * file closed, so a larger cluster partly written would
			 * read zeros, not the previous backup, around the change.
			 */
			char *full[] = { vmgrd->qemu_img, "create", "-q", "-f",
			    "qcow2", "-o", "cluster_size=2M", path, size, NULL };
			char *incr[] = { vmgrd->qemu_img, "create", "-q", "-f",
			    "qcow2", "-o", "cluster_size=64k", "-u", "-b", backing,
			    "-F", "qcow2", path, size, NULL };
			bj->left++;
			if (proc_run(vmgrd->base, bj->b->parent ? incr : full,
			    target_made, bj) < 0) {
				bj->left--;
				snprintf(bj->error, sizeof(bj->error), "cannot "
				    "run qemu-img: %s", strerror(errno));
			}
		}
		break;
	case ST_OPEN:
		/*
		 * From here on the targets are vmgrd's descriptors: QEMU and the
		 * storage daemon get them so, the hashes read them, and no
		 * name is looked up again in a directory another user had.
		 */
		for (int d = 0; d < bj->ndisks && !bj->error[0]; d++) {
			target_path(bj, d, path, sizeof(path));
			if ((bj->tfd[d] = open_private(path, O_RDWR, 0)) < 0)
				snprintf(bj->error, sizeof(bj->error), "%.300s: "
				    "%s", path, strerror(errno));
		}
		break;
	case ST_CONNECT:
		if (bj->error[0])
			break;
		if (!bj->own) {
			if (bjob_qmp(bj) == NULL)
				bjob_error(bj, "QEMU is gone");
			break;
		}
		/* A stopped VM: a storage daemon of our own opens its disks. */
		bj->left++;	/* its QMP greeting */
		if (qsd_spawn(bj) == 0)
			break;
		bj->left--;
		if (bj->qsd_pid > 0)
			kill(bj->qsd_pid, SIGKILL);	/* its exit is waited for */
		if (!bj->error[0])
			bjob_error(bj, "cannot start the storage daemon");
		break;
	case ST_BITMAPS: {
		struct qmp *q = bjob_qmp(bj);
		if (bj->error[0])
			break;
		bj->left++;
		if (q == NULL || qmp_command(q, "query-named-block-nodes",
		    json_pack("{s:b}", "flat", 1), bjob_bitmaps, bj) < 0) {
			bj->left--;
			bjob_error(bj, "QEMU is gone");
		}
		break;
	}
	case ST_FDS:
		if (bj->error[0] || bj->own)
			break;
		/*
		 * The VM's QEMU may run as a user who cannot reach the store:
		 * it gets the files as descriptors, through fd sets.
		 */
		for (int d = 0; d < bj->ndisks; d++) {
			struct qmp *fq = bjob_qmp(bj);
			bj->left++;
			bj->fdslot[d].bj = bj;
			bj->fdslot[d].d = d;
			if (fq == NULL || qmp_command_fd(fq, "add-fd", NULL,
			    bj->tfd[d], bjob_fd_added, &bj->fdslot[d]) < 0) {
				bj->left--;
				bjob_error(bj, "QEMU is gone");
				break;
			}
		}
		break;
	case ST_NODES:
		if (bj->error[0])
			break;
		for (int d = 0; d < bj->ndisks; d++) {
			char node[48];
			if (bj->own)	/* the storage daemon's fd 4 and up */
				snprintf(path, sizeof(path), "/dev/fd/%d", 4 + d);
			else
				snprintf(path, sizeof(path), "/dev/fdset/%lld",
				    (long long)bj->fdset[d]);
			snprintf(node, sizeof(node), "vmgr-bk%lld-t%d",
			    (long long)bj->b->id, d);
			/* backing null: the previous backup stays closed. */
			bjob_cmd(bj, "blockdev-add", json_pack("{s:s, s:s, "
			    "s:{s:s, s:s}, s:n}", "driver", "qcow2", "node-name",
			    node, "file", "driver", "file", "filename", path,
			    "backing"));
			bj->nodes++;
		}
		break;
	case ST_JOBS: {
		struct qmp *jq = bjob_qmp(bj);
		if (bj->error[0])
			break;
		if (jq == NULL) {
			bjob_error(bj, "QEMU is gone");
			break;
		}
		json_t *actions = json_array();
		for (int d = 0; d < bj->ndisks; d++) {
			char node[16], target[48], id[48];
			snprintf(node, sizeof(node), "disk%d", d);
			snprintf(target, sizeof(target), "vmgr-bk%lld-t%d",
			    (long long)bj->b->id, d);
			snprintf(id, sizeof(id), "vmgr-bk%lld-%d",
			    (long long)bj->b->id, d);
			json_array_append_new(actions, json_pack("{s:s, s:{s:s, "
			    "s:s, s:b}}", "type", "block-dirty-bitmap-add", "data",
			    "node", node, "name", bj->new_bitmap, "persistent", 1));
			/*
			 * copy_file_range: the kernel copies within a filesystem
			 * (QEMU falls back to read/write across them); 2.5 to 4
			 * times faster here than QEMU's default.
			 */
			json_t *data = json_pack("{s:s, s:s, s:s, s:s, s:b, s:{s:b, "
			    "s:I}}", "job-id", id, "device", node, "target", target,
			    "sync", bj->b->parent ? "bitmap" : "full",
			    "auto-dismiss", 0, "x-perf", "use-copy-range", 1,
			    "max-chunk", (json_int_t)16 << 20);
			if (bj->speed)
				json_object_set_new(data, "speed", json_integer(
				    (json_int_t)(bj->speed / (uint64_t)bj->ndisks)));
			if (bj->b->parent) {
				/* "never": the bitmap stays until we drop it. */
				json_object_set_new(data, "bitmap",
				    json_string(bj->prev_bitmap));
				json_object_set_new(data, "bitmap-mode",
				    json_string("never"));
			}
			json_array_append_new(actions, json_pack("{s:s, s:o}",
			    "type", "blockdev-backup", "data", data));
			job_watch(jq, id, bjob_job_done, bj);
			bj->left++;
		}
		/* The transaction's own reply counts as one more. */
		bj->left++;
		if (qmp_command(jq, "transaction", json_pack("{s:o}",
		    "actions", actions), bjob_transacted, bj) < 0) {
			bj->left -= 1 + job_unwatch(bj);
			bjob_error(bj, "QEMU is gone");
			break;
		}
		struct timeval tv = { 0, TICK_MS * 1000 };
		bj->tick = event_new(vmgrd->base, -1, EV_PERSIST, bjob_tick, bj);
		event_add(bj->tick, &tv);
		break;
	}
	case ST_CLOSE:
		fault_point("backup:after-jobs");
		if (bj->tick) {
			event_free(bj->tick);
			bj->tick = NULL;
		}
		for (int d = 0; d < bj->nodes; d++) {
			char node[48];
			snprintf(node, sizeof(node), "vmgr-bk%lld-t%d",
			    (long long)bj->b->id, d);
			bjob_cmd(bj, "blockdev-del", json_pack("{s:s}",
			    "node-name", node));
		}
		for (int d = 0; d < bj->ndisks; d++)
			if (bj->fdset[d] >= 0)
				bjob_cmd(bj, "remove-fd", json_pack("{s:I}",
				    "fdset-id", (json_int_t)bj->fdset[d]));
		for (int d = 0; d < bj->ndisks; d++) {
			char node[16];
			snprintf(node, sizeof(node), "disk%d", d);
			if (bj->error[0]) {
				if (bj->started)
					bjob_cmd(bj, "block-dirty-bitmap-remove",
					    json_pack("{s:s, s:s}", "node", node,
					    "name", bj->new_bitmap));
				continue;
			}
			for (int k = 0; k < 4 && bj->stale[d][k][0]; k++)
				bjob_cmd(bj, "block-dirty-bitmap-remove",
				    json_pack("{s:s, s:s}", "node", node, "name",
				    bj->stale[d][k]));
		}
		break;
	case ST_QUIT:
		bj->t_copied = now_mono();
		if (bj->own && bj->qsd_pid > 0) {
			/* quit stores the bitmaps; its exit counts down. */
			bj->left++;
			if (bj->qsd == NULL || qmp_command(bj->qsd, "quit", NULL,
			    NULL, NULL) < 0)
				kill(bj->qsd_pid, SIGTERM);
		}
		break;
	case ST_SYNC:
		if (bj->own && bj->qsd) {
			qmp_free(bj->qsd);
			bj->qsd = NULL;
		}
		if (bj->qsd_uid)	/* its daemon is gone: back to root */
			lend_targets(bj, 0, 0);
		if (bj->error[0])
			break;
		bj->left++;
		if (fdwork_start(bj->tfd, bj->ndisks, FDWORK_SYNC | FDWORK_HASH,
		    bjob_synced, bj) < 0) {
			bj->left--;
			snprintf(bj->error, sizeof(bj->error), "cannot hash the "
			    "files: %s", strerror(errno));
		}
		break;
	case ST_COMMIT:
		if (!bj->error[0])
			bjob_commit(bj);
		bjob_finish(bj);
		return;
	default:
		return;
	}
	bjob_settle(bj);
}

/* ---- starting a backup ----------------------------------------------------- */

static void
bjob_fail(struct bjob *bj, int status, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(bj->error, sizeof(bj->error), fmt, ap);
	va_end(ap);
	bj->status = status;
}

/* The directory a new backup of vm goes to, under store. */
static int
backup_dirs(const char *store, const char *vm, int64_t id, char *dir,
    size_t len)
{
	char parent[PATH_MAX];

	snprintf(parent, sizeof(parent), "%.512s/%s", store, vm);
	if (mkdir_p(parent, 0700) < 0)
		return -1;
	if ((size_t)snprintf(dir, len, "%s/%lld", parent, (long long)id) >=
	    len - 16)
		return errno = ENAMETOOLONG, -1;
	return 0;
}

/* The previous backup's directory as its files' backing path: relative
 * when both live side by side, so a store can be moved whole. */
static void
parent_ref(const struct backup *b, const struct backup *parent, char *buf,
    size_t len)
{
	const char *bs = strrchr(b->dir, '/'), *ps = strrchr(parent->dir, '/');

	if (bs && ps && bs - b->dir == ps - parent->dir &&
	    strncmp(b->dir, parent->dir, (size_t)(bs - b->dir)) == 0)
		snprintf(buf, len, "..%s", ps);
	else
		snprintf(buf, len, "%s", parent->dir);
}

static void
backup_create(struct evhttp_request *req, json_t *body, int wait)
{
	static const char *const keys[] = { "vm", "incremental", "store",
	    "bwlimit_mib", NULL };
	long long bwlimit = 0;
	const char *name = json_string_value(json_object_get(body, "vm"));
	const char *store = json_string_value(json_object_get(body, "store"));
	json_t *jinc = json_object_get(body, "incremental");
	json_t *jstore = json_object_get(body, "store");
	char defstore[PATH_MAX], err[256];
	struct backup *b, *parent = NULL;
	struct bjob *bj;
	struct vm *vm;
	int live;

	if (api_body_keys(req, body, keys) < 0 || api_body_int(req, body,
	    "bwlimit_mib", 1, 1 << 20, &bwlimit) < 0)
		return;
	if (name == NULL) {
		api_reply_error(req, 422, "missing_field", "vm is required");
		return;
	}
	if (jinc && !json_is_boolean(jinc)) {
		api_reply_error(req, 422, "invalid_value", "incremental must be "
		    "true or false");
		return;
	}
	if (jstore && (store == NULL || store[0] != '/' ||
	    strlen(store) > 512 || strstr(store, "/../") ||
	    strcmp(store + strlen(store) - (strlen(store) > 2 ? 3 : 0),
	    "/..") == 0)) {
		api_reply_error(req, 422, "invalid_value", "store must be an "
		    "absolute directory path without ..");
		return;
	}
	if (!spec_name_valid(name) || (vm = vm_find(name)) == NULL) {
		api_reply_error(req, 404, "no_such_vm", "no VM named \"%.64s\"",
		    name);
		return;
	}
	if (vm->spec.ndisks == 0) {
		api_reply_error(req, 422, "no_disks", "%s has no disks to back "
		    "up", name);
		return;
	}
	if (vm->storage_op[0] || vm->busy != OP_NONE) {
		api_reply_error(req, 409, "busy", "%s is busy (%s in progress); "
		    "one backup of a VM at a time", name, vm->storage_op[0] ?
		    vm->storage_op : "a lifecycle operation");
		return;
	}
	live = vm->state == VM_RUNNING || vm->state == VM_PAUSED;
	if (vm->state == VM_QUEUED || vm->state == VM_STOPPING ||
	    (live && (vm->qmp == NULL || !qmp_is_ready(vm->qmp)))) {
		api_reply_error(req, 409, "invalid_state", "%s is %s; back it up "
		    "when it runs or is stopped", name, vm_state_name(vm->state));
		return;
	}
	if (json_is_true(jinc)) {
		if ((parent = backup_latest(name)) == NULL) {
			api_reply_error(req, 409, "incremental_impossible", "%s has "
			    "no backup yet to build on; take a full backup first",
			    name);
			return;
		}
		char perr[256];
		json_t *m = manifest_read(parent, perr, sizeof(perr));
		size_t n = m ? json_array_size(json_object_get(m, "disks")) : 0;
		json_decref(m);
		if (n != (size_t)vm->spec.ndisks) {
			api_reply_error(req, 409, "incremental_impossible", "%s "
			    "has %d disks and its last backup %lld %s; take a "
			    "full backup", name, vm->spec.ndisks,
			    (long long)parent->id, m ? "has a different number" :
			    perr);
			return;
		}
	}
	if (store == NULL) {
		snprintf(defstore, sizeof(defstore), "%s/backups",
		    vmgrd->state_dir);
		store = defstore;
	}
	if ((b = calloc(1, sizeof(*b))) == NULL ||
	    (bj = calloc(1, sizeof(*bj))) == NULL) {
		free(b);
		api_reply_error(req, 500, "no_memory", "out of memory");
		return;
	}
	snprintf(b->vm, sizeof(b->vm), "%s", name);
	snprintf(b->kind, sizeof(b->kind), parent ? "incremental" : "full");
	snprintf(b->state, sizeof(b->state), "running");
	/*
	 * No directory until the id is known: a crash between the insert
	 * and the update leaves a row with nothing to remove (found by the
	 * random kills: the row held the store, and the clean-up at start
	 * removed every backup in it).
	 */
	b->dir[0] = '\0';
	b->parent = parent ? parent->id : 0;
	b->created_at = now_unix_ms();
	b->verify_ok = -1;
	struct backup_row row;
	backup_row(b, &row);
	if (db_backup_insert(vmgrd->db, &row, &b->id) < 0) {
		api_reply_error(req, db_full(vmgrd->db) ? 507 : 500, db_full(
		    vmgrd->db) ? "no_space" : "database", "cannot record the "
		    "backup: %s", db_errmsg(vmgrd->db));
		free(b);
		free(bj);
		return;
	}
	fault_point("backup:after-insert");
	if (backup_dirs(store, name, b->id, b->dir, sizeof(b->dir)) < 0 ||
	    backup_save(b) < 0) {
		snprintf(err, sizeof(err), "%.200s: %s", store, strerror(errno));
		db_backup_delete(vmgrd->db, b->id);
		api_reply_error(req, errno == ENOSPC ? 507 : 422, errno ==
		    ENOSPC ? "no_space" : "bad_store", "cannot use the store "
		    "%s", err);
		free(b);
		free(bj);
		return;
	}
	TAILQ_INSERT_TAIL(&backups, b, entry);
	b->job = bj;
	bj->b = b;
	bj->vm = vm;
	bj->vm_pid = live ? vm->pid : 0;
	bj->own = !live;
	bj->ndisks = vm->spec.ndisks;
	for (int d = 0; d < SPEC_MAX_DISKS; d++) {
		bj->fdset[d] = -1;
		bj->tfd[d] = -1;
	}
	bj->speed = (uint64_t)bwlimit << 20;
	snprintf(bj->partial, sizeof(bj->partial), "%s.partial", b->dir);
	snprintf(bj->new_bitmap, sizeof(bj->new_bitmap), "vmgr-%lld",
	    (long long)b->id);
	if (parent) {
		snprintf(bj->prev_bitmap, sizeof(bj->prev_bitmap), "vmgr-%lld",
		    (long long)parent->id);
		parent_ref(b, parent, bj->parent_dir, sizeof(bj->parent_dir));
	}
	snprintf(vm->storage_op, sizeof(vm->storage_op), "backup");
	for (int d = 0; d < bj->ndisks; d++) {
		char path[PATH_MAX];
		struct qcow2_header h;
		volume_path(vm->spec.disks[d].volume, path, sizeof(path));
		if (qcow2_read_info(path, &h, NULL, 0, NULL, NULL, 0, NULL, err,
		    sizeof(err)) < 0)
			bjob_fail(bj, 500, "%s", err);
		bj->disk_size[d] = h.size;
	}
	if (mkdir(bj->partial, 0700) < 0 && !bj->error[0])
		bjob_fail(bj, errno == ENOSPC ? 507 : 500, "mkdir %s: %s",
		    bj->partial, strerror(errno));
	log_info("%s: %s backup %lld begins into %s", name, b->kind,
	    (long long)b->id, b->dir);
	if (wait)
		bj->p = api_park(req, 0);
	else
		api_reply_json(req, 202, backup_json(b, 0));
	bj->step = ST_TARGETS;
	bj->t_start = now_mono();
	bjob_step(bj);
}

/* ---- verify ------------------------------------------------------------------ */

/* A file of a backup chain, as its manifest describes it. */
struct vfile {
	int64_t		 backup;
	int		 disk;
	char		 path[PATH_MAX];
	char		 sha256[65];
	int		 slot;		/* its result in the hashing, or -1 */
	int		 ok;
	char		 error[256];
};

/* Work over a backup and the chain it stands on: verify or restore. */
struct vjob {
	struct backup	*b;
	struct parked	*p;
	int		 restore;	/* verify first, then restore */
	int		 check;		/* run qemu-img check too */
	int		 nfiles, next;
	struct vfile	*files;
	int		 ndisks;	/* of b */
	json_t		*manifest;	/* of b */
	char		 error[512];
	/* restore */
	char		 as[SPEC_NAME_MAX + 1];
	int		 in_place;
	char		 volumes[SPEC_MAX_DISKS][SPEC_NAME_MAX + 1];
	int		 reserved;	/* the new volumes' names are ours */
	int		 marked;	/* we set the VM's storage_op */
	int		 left;
};

static void	restore_begin(struct vjob *);

/* The chain of b, newest first, into vj->files; -1 with vj->error. */
static int
chain_files(struct vjob *vj)
{
	struct backup *c = vj->b;
	int depth = 0;

	for (; c; c = c->parent ? backup_find(c->parent) : NULL) {
		char err[256];
		json_t *m, *d;
		size_t i;

		if (strcmp(c->state, "complete") != 0 || ++depth > 10000) {
			snprintf(vj->error, sizeof(vj->error), "backup %lld in "
			    "the chain is not complete", (long long)c->id);
			return -1;
		}
		if ((m = manifest_read(c, err, sizeof(err))) == NULL) {
			snprintf(vj->error, sizeof(vj->error), "backup %lld: %s",
			    (long long)c->id, err);
			return -1;
		}
		json_array_foreach(json_object_get(m, "disks"), i, d) {
			const char *file = json_string_value(json_object_get(d,
			    "file"));
			const char *sha = json_string_value(json_object_get(d,
			    "sha256"));
			struct vfile *f, *nf = realloc(vj->files,
			    (size_t)(vj->nfiles + 1) * sizeof(*vj->files));
			if (nf == NULL || !file || !sha || strchr(file, '/') ||
			    strlen(sha) != 64) {
				if (nf)
					vj->files = nf;
				snprintf(vj->error, sizeof(vj->error), "backup "
				    "%lld: bad manifest entry", (long long)c->id);
				json_decref(m);
				return -1;
			}
			vj->files = nf;
			f = &vj->files[vj->nfiles++];
			memset(f, 0, sizeof(*f));
			f->backup = c->id;
			f->disk = (int)i;
			snprintf(f->path, sizeof(f->path), "%.3900s/%.100s",
			    c->dir, file);
			snprintf(f->sha256, sizeof(f->sha256), "%s", sha);
		}
		if (c == vj->b) {
			vj->ndisks = (int)json_array_size(json_object_get(m,
			    "disks"));
			vj->manifest = m;
		} else
			json_decref(m);
		if (c->parent && backup_find(c->parent) == NULL) {
			snprintf(vj->error, sizeof(vj->error), "backup %lld "
			    "builds on backup %lld, which is gone",
			    (long long)c->id, (long long)c->parent);
			return -1;
		}
	}
	return 0;
}

static void
vjob_free(struct vjob *vj)
{
	struct vm *vm;

	if (vj->marked && (vm = vm_find(vj->as)) != NULL)
		vm->storage_op[0] = '\0';
	for (int d = 0; vj->reserved && d < vj->ndisks; d++)
		volume_unreserve(vj->volumes[d]);
	if (vj->b)
		vj->b->busy = 0;
	free(vj->files);
	json_decref(vj->manifest);
	free(vj);
}

static json_t *
verify_json(const struct vjob *vj, int ok)
{
	json_t *files = json_array();

	for (int i = 0; i < vj->nfiles; i++) {
		const struct vfile *f = &vj->files[i];
		json_t *o = json_pack("{s:I, s:i, s:s, s:b}", "backup",
		    (json_int_t)f->backup, "disk", f->disk, "path", f->path, "ok",
		    f->ok);
		if (f->error[0])
			json_object_set_new(o, "error", json_string(f->error));
		json_array_append_new(files, o);
	}
	return json_pack("{s:I, s:b, s:o}", "id", (json_int_t)vj->b->id, "ok",
	    ok, "files", files);
}

static void
verify_done(struct vjob *vj)
{
	struct backup *b = vj->b;
	int ok = !vj->error[0];

	for (int i = 0; i < vj->nfiles; i++)
		ok &= vj->files[i].ok;
	if (vj->restore) {
		if (!ok) {
			const struct vfile *bad = NULL;
			for (int i = 0; i < vj->nfiles && !bad; i++)
				if (!vj->files[i].ok)
					bad = &vj->files[i];
			api_answer_error(vj->p, 422, "backup_damaged",
			    "backup %lld cannot be restored: %s%s%s; nothing "
			    "was restored", (long long)b->id, bad ? bad->path :
			    vj->error, bad ? ": " : "", bad ? bad->error : "");
			vjob_free(vj);
			return;
		}
		restore_begin(vj);
		return;
	}
	b->verified_at = now_unix_ms();
	b->verify_ok = ok;
	if (backup_save(b) < 0)
		log_warnx("%s: %s", __func__, db_errmsg(vmgrd->db));
	log_info("backup %lld: verify %s", (long long)b->id, ok ? "passed" :
	    "FAILED");
	json_t *o = verify_json(vj, ok);
	if (vj->error[0])
		json_object_set_new(o, "error", json_string(vj->error));
	api_answer(vj->p, 200, o);
	vjob_free(vj);
}

static void	verify_next_check(struct vjob *);

static void
checked(int status, const char *output, void *arg)
{
	struct vjob *vj = arg;
	struct vfile *f = &vj->files[vj->next++];

	if (status != 0 && f->ok) {
		f->ok = 0;
		snprintf(f->error, sizeof(f->error), "qemu-img check: %.200s",
		    output);
		f->error[strcspn(f->error, "\n")] = '\0';
	}
	verify_next_check(vj);
}

static void
verify_next_check(struct vjob *vj)
{
	while (vj->next < vj->nfiles && !vj->files[vj->next].ok)
		vj->next++;
	if (!vj->check || vj->next >= vj->nfiles) {
		verify_done(vj);
		return;
	}
	/*
	 * Its QEMU or storage daemon wrote the file: it must be plain before
	 * root's qemu-img opens it, and then it is opened alone.
	 */
	struct vfile *f = &vj->files[vj->next];
	const char *chain[] = { f->path, NULL };
	char err[400], *json;
	if (img_check(f->path, "", err, sizeof(err)) < 0) {
		f->ok = 0;
		snprintf(f->error, sizeof(f->error), "%.250s", err);
		vj->next++;
		verify_next_check(vj);
		return;
	}
	if ((json = img_json("qcow2", chain)) == NULL) {
		snprintf(vj->error, sizeof(vj->error), "out of memory");
		verify_done(vj);
		return;
	}
	char *argv[] = { vmgrd->qemu_img, "check", "-q", json, NULL };
	if (proc_run(vmgrd->base, argv, checked, vj) < 0) {
		snprintf(vj->error, sizeof(vj->error), "cannot run qemu-img");
		verify_done(vj);
	}
	free(json);
}

static void
verify_hashed(const char *why, const struct fdwork_result *res, void *arg)
{
	struct vjob *vj = arg;

	for (int i = 0; i < vj->nfiles; i++) {
		struct vfile *f = &vj->files[i];
		const struct fdwork_result *r = f->slot >= 0 ? &res[f->slot] :
		    NULL;
		if (r == NULL)
			continue;	/* it could not be opened: said so */
		if (why)
			snprintf(f->error, sizeof(f->error), "%s", why);
		else if (r->error)
			snprintf(f->error, sizeof(f->error), "cannot be read: %s",
			    strerror(r->error));
		else if (strcmp(r->sha256, f->sha256) != 0)
			snprintf(f->error, sizeof(f->error), "checksum mismatch "
			    "(sha256 %.16s..., the manifest says %.16s...)",
			    r->sha256, f->sha256);
		else
			f->ok = 1;
	}
	vj->next = 0;
	verify_next_check(vj);
}

/*
 * Hash every file of the chain in one go (off the loop), then check each.
 * Each is opened here, never through a link, and must be a plain file.
 */
static void
verify_begin(struct vjob *vj)
{
	int *fds = calloc((size_t)vj->nfiles + 1, sizeof(*fds)), n = 0;

	for (int i = 0; fds && i < vj->nfiles; i++) {
		struct vfile *f = &vj->files[i];
		if ((fds[n] = open_private(f->path, O_RDONLY, 0)) < 0) {
			f->slot = -1;
			snprintf(f->error, sizeof(f->error), "%s", errno ==
			    EPERM || errno == ELOOP ? "not a plain file (a "
			    "link?); refused" : strerror(errno));
			continue;
		}
		f->slot = n++;
	}
	if (fds == NULL || fdwork_start(fds, n, FDWORK_HASH, verify_hashed,
	    vj) < 0) {
		snprintf(vj->error, sizeof(vj->error), "cannot hash the files: "
		    "%s", strerror(errno));
		verify_done(vj);
	}
	for (int i = 0; fds && i < n; i++)
		close(fds[i]);
	free(fds);
}

static struct vjob *
vjob_new(struct evhttp_request *req, struct backup *b)
{
	struct vjob *vj;

	if (strcmp(b->state, "complete") != 0) {
		api_reply_error(req, 409, "invalid_state", "backup %lld is %s",
		    (long long)b->id, b->state);
		return NULL;
	}
	if (b->busy) {
		api_reply_error(req, 409, "busy", "backup %lld is busy (verify, "
		    "restore or prune in progress)", (long long)b->id);
		return NULL;
	}
	if ((vj = calloc(1, sizeof(*vj))) == NULL) {
		api_reply_error(req, 500, "no_memory", "out of memory");
		return NULL;
	}
	vj->b = b;
	if (chain_files(vj) < 0) {
		api_reply_error(req, 422, "backup_damaged", "%s", vj->error);
		vj->b = NULL;
		vjob_free(vj);
		return NULL;
	}
	if ((vj->p = api_park(req, 0)) == NULL) {
		api_reply_error(req, 500, "no_memory", "out of memory");
		vj->b = NULL;
		vjob_free(vj);
		return NULL;
	}
	b->busy = 1;
	return vj;
}

/* ---- restore ------------------------------------------------------------------ */

static void
restore_fail(struct vjob *vj, int status, const char *code, const char *msg)
{
	char path[PATH_MAX + 16];

	for (int d = 0; d < vj->ndisks; d++) {
		if (!vj->volumes[d][0])
			continue;
		volume_path(vj->volumes[d], path, sizeof(path) - 16);
		strcat(path, ".partial");
		unlink(path);
	}
	api_answer_error(vj->p, status, code, "restore of backup %lld "
	    "failed: %s; nothing was changed", (long long)vj->b->id, msg);
	vjob_free(vj);
}

/* Every disk is converted: put them in place, then make or free the VM. */
static void
restore_commit(struct vjob *vj)
{
	char path[PATH_MAX], partial[PATH_MAX + 16];
	struct vm *vm;

	if (vj->error[0]) {
		restore_fail(vj, strstr(vj->error, "No space") ? 507 : 500,
		    strstr(vj->error, "No space") ? "no_space" :
		    "restore_failed", vj->error);
		return;
	}
	if (!vj->in_place)
		for (int d = 0; d < vj->ndisks; d++)
			if (volume_register(vj->volumes[d], vj->as) < 0) {
				for (int k = 0; k < d; k++)
					volume_forget(vj->volumes[k]);
				restore_fail(vj, 500, "database",
				    db_errmsg(vmgrd->db));
				return;
			}
	/* Each file is on disk already (volume_make): the renames commit. */
	for (int d = 0; d < vj->ndisks; d++) {
		volume_path(vj->volumes[d], path, sizeof(path));
		snprintf(partial, sizeof(partial), "%s.partial", path);
		if (rename(partial, path) < 0)
			log_warn("%s: rename %s", __func__, partial);
	}
	if (vj->ndisks > 0 && fsync_dir_of(path) < 0)
		log_warn("%s: fsync the directory of %s", __func__, path);
	vj->reserved = 0;
	if (vj->in_place) {
		vm = vm_find(vj->as);
		log_info("%s: disks restored from backup %lld", vj->as,
		    (long long)vj->b->id);
		api_answer(vj->p, 200, vm ? vm_json(vm) :
		    json_object());
		vjob_free(vj);
		return;
	}
	/* A new VM from the backup's spec, with the new volumes attached. */
	json_t *spec = json_deep_copy(json_object_get(vj->manifest, "spec"));
	json_t *disks = json_array(), *nic;
	size_t i;
	json_object_set_new(spec, "name", json_string(vj->as));
	for (int d = 0; d < vj->ndisks; d++)
		json_array_append_new(disks, json_pack("{s:s}", "volume",
		    vj->volumes[d]));
	json_object_set_new(spec, "disks", disks);
	/* Its own MACs and addresses; host ports stay with the original. */
	json_array_foreach(json_object_get(spec, "nics"), i, nic) {
		json_object_del(nic, "mac");
		json_object_del(nic, "ip");
		json_object_del(nic, "forwards");
	}
	if (vm_find_any(vj->as)) {
		for (int d = 0; d < vj->ndisks; d++)
			volume_forget(vj->volumes[d]);
		api_answer_error(vj->p, 409, "exists", "a VM named %s was "
		    "made meanwhile; nothing was restored", vj->as);
		vjob_free(vj);
		return;
	}
	struct parked *p = vj->p;
	vj->p = NULL;
	log_info("%s: restoring backup %lld as a new VM", vj->as,
	    (long long)vj->b->id);
	/* vm_api_create answers the client itself (201 with the VM). */
	vm_api_create(api_unpark(p), spec);
	json_decref(spec);
	if (vm_find_any(vj->as) == NULL)	/* refused: undo the volumes */
		for (int d = 0; d < vj->ndisks; d++)
			volume_forget(vj->volumes[d]);
	vjob_free(vj);
}

static void
restore_disk_made(const char *error, int no_space, void *arg)
{
	struct vjob *vj = arg;

	(void)no_space;
	if (error && !vj->error[0])
		snprintf(vj->error, sizeof(vj->error), "%.500s", error);
	if (--vj->left == 0)
		restore_commit(vj);
}

/*
 * The json: name of disk d as the backup chain holds it: the newest file
 * backed by the older ones down to the full backup, each checked to be
 * plain first (a VM's QEMU wrote them), so that qemu-img reads those files
 * and no other.  NULL with vj->error.
 */
static char *
restore_source(struct vjob *vj, int d)
{
	const char **chain = calloc((size_t)vj->nfiles + 1, sizeof(*chain));
	char err[400], *json = NULL;
	int n = 0;

	for (int i = 0; chain && i < vj->nfiles; i++)
		if (vj->files[i].disk == d)
			chain[n++] = vj->files[i].path;
	for (int k = 0; chain && k < n; k++)
		if (img_check(chain[k], k == n - 1 ? NULL : "", err,
		    sizeof(err)) < 0) {
			snprintf(vj->error, sizeof(vj->error), "%.500s", err);
			free(chain);
			return NULL;
		}
	if (chain == NULL || n == 0 || (json = img_json("qcow2", chain)) ==
	    NULL)
		snprintf(vj->error, sizeof(vj->error), "disk %d: no file in the "
		    "chain", d);
	free(chain);
	return json;
}

static void
restore_begin(struct vjob *vj)
{
	struct vm *vm = vm_find(vj->as);

	/* Checked again: things may have changed while we verified. */
	if (vj->in_place && (vm == NULL || (vm->state != VM_CREATED &&
	    vm->state != VM_CRASHED) || vm->busy || vm->storage_op[0])) {
		restore_fail(vj, 409, "invalid_state", "the VM changed state "
		    "meanwhile");
		return;
	}
	if (!vj->in_place && vm_find_any(vj->as)) {
		restore_fail(vj, 409, "exists", "a VM of that name appeared");
		return;
	}
	if (vm) {
		snprintf(vm->storage_op, sizeof(vm->storage_op), "restore");
		vj->marked = 1;
	}
	vj->left = 1;
	for (int d = 0; d < vj->ndisks && !vj->error[0]; d++) {
		char *src = restore_source(vj, d);
		if (src == NULL)
			break;
		vj->left++;
		if (volume_make_convert(vj->volumes[d], src, NULL, 0,
		    VOLUME_KEEP_PARTIAL, restore_disk_made, vj) < 0) {
			vj->left--;
			snprintf(vj->error, sizeof(vj->error), "cannot run "
			    "qemu-img");
		}
		free(src);
	}
	if (--vj->left == 0)
		restore_commit(vj);
}

static void
backup_restore(struct evhttp_request *req, struct backup *b, json_t *body)
{
	static const char *const keys[] = { "as", NULL };
	const char *as = json_string_value(json_object_get(body, "as"));
	struct vjob *vj;
	struct vm *vm;

	if (api_body_keys(req, body, keys) < 0)
		return;
	if (json_object_get(body, "as") && (as == NULL ||
	    !spec_name_valid(as))) {
		api_reply_error(req, 422, "invalid_name", "as must be a valid "
		    "VM name");
		return;
	}
	if (as == NULL)
		as = b->vm;
	if ((vm = vm_find_any(as)) != NULL) {
		if (vm->state != VM_CREATED && vm->state != VM_CRASHED) {
			api_reply_error(req, 409, "invalid_state", "%s is %s; "
			    "restoring replaces its disks, so stop it first (or "
			    "restore under another name with --as)", as,
			    vm_state_name(vm->state));
			return;
		}
		if (vm->busy || vm->storage_op[0] || vm->creating) {
			api_reply_error(req, 409, "busy", "%s is busy", as);
			return;
		}
	}
	if ((vj = vjob_new(req, b)) == NULL)
		return;
	vj->restore = 1;
	snprintf(vj->as, sizeof(vj->as), "%s", as);
	vj->in_place = vm != NULL;
	if (vm && vm->spec.ndisks != vj->ndisks) {
		api_answer_error(vj->p, 409, "disks_differ", "%s has %d "
		    "disks and backup %lld has %d; restore it under another "
		    "name with --as", as, vm->spec.ndisks, (long long)b->id,
		    vj->ndisks);
		vjob_free(vj);
		return;
	}
	for (int d = 0; d < vj->ndisks; d++) {
		const char *orig = json_string_value(json_object_get(
		    json_array_get(json_object_get(vj->manifest, "disks"),
		    (size_t)d), "volume"));
		size_t olen = strlen(b->vm);
		char name[2 * SPEC_NAME_MAX + 16];
		/* web-data restored as web2 becomes web2-data. */
		if (vm)
			snprintf(name, sizeof(name), "%s",
			    vm->spec.disks[d].volume);
		else if (orig && strncmp(orig, b->vm, olen) == 0 &&
		    orig[olen] == '-')
			snprintf(name, sizeof(name), "%s%s", as, orig + olen);
		else
			name[0] = '\0';
		if (strlen(name) == 0 || strlen(name) > SPEC_NAME_MAX)
			snprintf(name, sizeof(name), "%.50s-disk%d", as, d);
		memcpy(vj->volumes[d], name, SPEC_NAME_MAX);
		vj->volumes[d][SPEC_NAME_MAX] = '\0';
		if (!vm && volume_exists(vj->volumes[d])) {
			api_answer_error(vj->p, 409, "volume_exists", "the "
			    "volume %s, which the restored VM would get, already "
			    "exists", vj->volumes[d]);
			vj->volumes[d][0] = '\0';
			vjob_free(vj);
			return;
		}
	}
	/* Their names are taken from now on: no create can claim them. */
	for (int d = 0; !vm && d < vj->ndisks; d++)
		if (volume_reserve(vj->volumes[d], as) < 0) {
			for (int k = 0; k < d; k++)
				volume_unreserve(vj->volumes[k]);
			api_answer_error(vj->p, 409, "volume_exists", "the "
			    "volume %s, which the restored VM would get, already "
			    "exists", vj->volumes[d]);
			vjob_free(vj);
			return;
		}
	vj->reserved = !vm;
	/* The files of b itself are the first ndisks: restore from those. */
	verify_begin(vj);
}

/* ---- delete and prune ---------------------------------------------------------- */

/*
 * Remove a backup's directory (and its ".partial"), but only if it is one:
 * a path ending in "/ID".  Anything else in the row is never removed.
 */
static void
remove_dirs(const struct backup *b)
{
	char suffix[32], partial[PATH_MAX];
	size_t n = strlen(b->dir), k;

	k = (size_t)snprintf(suffix, sizeof(suffix), "/%lld", (long long)b->id);
	if (n <= k || strcmp(b->dir + n - k, suffix) != 0) {
		if (n)
			log_warnx("backup %lld: %s is not a backup's directory; "
			    "left alone", (long long)b->id, b->dir);
		return;
	}
	snprintf(partial, sizeof(partial), "%s.partial", b->dir);
	if (rm_rf(partial) < 0)
		log_warn("%s: rm -r %s", __func__, partial);
	if (rm_rf(b->dir) < 0)
		log_warn("%s: rm -r %s", __func__, b->dir);
}

/* Drop a backup: its row first, then its files. */
static int
backup_remove(struct backup *b)
{
	if (db_backup_delete(vmgrd->db, b->id) < 0)
		return -1;
	remove_dirs(b);
	log_info("backup %lld of %s: deleted", (long long)b->id, b->vm);
	backup_free(b);
	return 0;
}

static void
backup_delete(struct evhttp_request *req, struct backup *b)
{
	if (b->job || b->busy) {
		api_reply_error(req, 409, "busy", "backup %lld is in use",
		    (long long)b->id);
		return;
	}
	if (backup_children(b) > 0) {
		api_reply_error(req, 409, "has_dependents", "backup %lld is the "
		    "base of later incremental backups; use `vmgr backup prune` "
		    "to merge the chain", (long long)b->id);
		return;
	}
	int64_t id = b->id;
	if (strcmp(b->state, "failed") == 0) {
		backup_free(b);
	} else if (backup_remove(b) < 0) {
		api_reply_error(req, 500, "database", "%s", db_errmsg(
		    vmgrd->db));
		return;
	}
	api_reply_json(req, 200, json_pack("{s:I, s:b}", "id", (json_int_t)id,
	    "deleted", 1));
}

/*
 * Pruning keeps the newest backups of a VM.  A kept incremental whose
 * parent goes is first made whole: each of its disks is flattened by
 * qemu-img convert into diskN.qcow2.merge, the new manifest is written as
 * manifest.json.next, and then the files and the manifest are renamed into
 * place.  The later incrementals back onto the same file names, whose
 * contents (as the guest sees them) are unchanged.  A crash between the
 * renames is rolled forward at start (merge_roll_forward).
 */
struct pjob {
	struct parked	*p;
	char		 vm[SPEC_NAME_MAX + 1];
	int64_t		*del, *merge;
	int		 ndel, nmerge;
	int		 cur;		/* the merge in progress */
	int		 ndisks, left;
	char		 error[512];
	json_t		*kept;
};

static void	prune_next(struct pjob *);

static void
merge_roll_forward(const char *dir, int at_start)
{
	char next[PATH_MAX + 32], man[PATH_MAX + 32];
	char from[PATH_MAX + 128], to[PATH_MAX + 64];

	snprintf(next, sizeof(next), "%s/" MANIFEST ".next", dir);
	snprintf(man, sizeof(man), "%s/" MANIFEST, dir);
	for (int d = 0; d < SPEC_MAX_DISKS; d++) {
		snprintf(to, sizeof(to), "%s/disk%d.qcow2", dir, d);
		snprintf(from, sizeof(from), "%s.merge", to);
		if (access(from, F_OK) != 0)
			continue;
		if (access(next, F_OK) == 0)
			rename(from, to);	/* the merge was committed */
		else
			unlink(from);		/* it was not: forget it */
	}
	if (access(next, F_OK) == 0 && rename(next, man) == 0) {
		if (fsync_dir_of(man) < 0)
			log_warn("%s: fsync the directory of %s", __func__, man);
		if (at_start)
			log_info("%s: finished an interrupted prune", dir);
	}
}

static void
prune_finish(struct pjob *pj)
{
	json_t *deleted = json_array(), *merged = json_array();

	if (!pj->error[0])
		for (int i = 0; i < pj->ndel; i++) {
			struct backup *b = backup_find(pj->del[i]);
			if (b && backup_remove(b) == 0)
				json_array_append_new(deleted,
				    json_integer(pj->del[i]));
		}
	for (int i = 0; i < pj->nmerge && i < pj->cur; i++)
		json_array_append_new(merged, json_integer(pj->merge[i]));
	for (int i = 0; i < pj->ndel; i++) {
		struct backup *b = backup_find(pj->del[i]);
		if (b)
			b->busy = 0;
	}
	for (size_t i = 0; i < json_array_size(pj->kept); i++) {
		struct backup *b = backup_find(json_integer_value(
		    json_array_get(pj->kept, i)));
		if (b)
			b->busy = 0;
	}
	if (pj->error[0]) {
		json_decref(deleted);
		json_decref(merged);
		api_answer_error(pj->p, strstr(pj->error, "No space") ? 507 :
		    500, "prune_failed", "prune of %s stopped: %s; every backup "
		    "still restores", pj->vm, pj->error);
	} else
		api_answer(pj->p, 200, json_pack("{s:s, s:O, s:o, s:o}",
		    "vm", pj->vm, "kept", pj->kept, "deleted", deleted,
		    "merged", merged));
	json_decref(pj->kept);
	free(pj->del);
	free(pj->merge);
	free(pj);
}

/*
 * The merged files are on disk and hashed: write the new manifest, then
 * commit by the renames, then make the renames durable.
 */
static void
merge_hashed(const char *why, const struct fdwork_result *res, void *arg)
{
	struct pjob *pj = arg;
	struct backup *b = backup_find(pj->merge[pj->cur]);
	char err[256], path[PATH_MAX + 64], next[PATH_MAX + 32];
	json_t *m, *d;
	size_t i;
	int64_t total = 0;
	struct stat st;

	if (b == NULL || why || (m = manifest_read(b, err, sizeof(err))) ==
	    NULL) {
		snprintf(pj->error, sizeof(pj->error), "merging backup %lld: "
		    "%.400s", (long long)pj->merge[pj->cur], why ? why :
		    "its manifest is unreadable");
		if (b)
			merge_roll_forward(b->dir, 0);
		prune_finish(pj);
		return;
	}
	json_array_foreach(json_object_get(m, "disks"), i, d) {
		snprintf(path, sizeof(path), "%s/disk%zu.qcow2.merge", b->dir, i);
		if ((int)i >= pj->ndisks || res[i].error || stat(path, &st) < 0) {
			snprintf(pj->error, sizeof(pj->error), "cannot hash "
			    "%.300s: %s", path, (int)i < pj->ndisks &&
			    res[i].error ? strerror(res[i].error) :
			    strerror(errno));
			json_decref(m);
			merge_roll_forward(b->dir, 0);
			prune_finish(pj);
			return;
		}
		json_object_set_new(d, "sha256", json_string(res[i].sha256));
		json_object_set_new(d, "size", json_integer(st.st_size));
		total += st.st_size;
	}
	json_object_set_new(m, "merged_from", json_integer(b->parent));
	json_object_set_new(m, "kind", json_string("full"));
	json_object_set_new(m, "parent", json_null());
	json_object_set_new(m, "size_bytes", json_integer(total));
	char *text = json_dumps(m, JSON_INDENT(2) | JSON_SORT_KEYS);
	json_decref(m);
	snprintf(next, sizeof(next), "%s/" MANIFEST ".next", b->dir);
	if (text == NULL || write_file_atomic(next, text, strlen(text),
	    0600) < 0) {
		snprintf(pj->error, sizeof(pj->error), "cannot write %.300s: %s",
		    next, strerror(errno));
		free(text);
		merge_roll_forward(b->dir, 0);	/* drops the .merge files */
		prune_finish(pj);
		return;
	}
	free(text);
	fault_point("prune:after-next");
	merge_roll_forward(b->dir, 0);		/* the commit */
	snprintf(b->kind, sizeof(b->kind), "full");
	b->parent = 0;
	b->size_bytes = total;
	if (backup_save(b) < 0)
		log_warnx("%s: %s", __func__, db_errmsg(vmgrd->db));
	log_info("backup %lld of %s: merged into a full backup",
	    (long long)b->id, b->vm);
	pj->cur++;
	prune_next(pj);
}

static void
merge_converted(int status, const char *output, void *arg)
{
	struct pjob *pj = arg;
	int fds[SPEC_MAX_DISKS], n = 0;

	if (status != 0 && !pj->error[0]) {
		snprintf(pj->error, sizeof(pj->error), "qemu-img convert: "
		    "%.400s", output);
		pj->error[strcspn(pj->error, "\n")] = '\0';
	}
	if (--pj->left > 0)
		return;
	struct backup *b = backup_find(pj->merge[pj->cur]);
	if (pj->error[0] || b == NULL || pj->ndisks > SPEC_MAX_DISKS) {
		if (b)
			merge_roll_forward(b->dir, 0);
		if (!pj->error[0])
			snprintf(pj->error, sizeof(pj->error), "backup %lld is "
			    "gone", (long long)pj->merge[pj->cur]);
		prune_finish(pj);
		return;
	}
	/* Made by root, in a directory of root's: opened without a link. */
	for (; n < pj->ndisks; n++) {
		char path[PATH_MAX + 64];
		snprintf(path, sizeof(path), "%s/disk%d.qcow2.merge", b->dir, n);
		if ((fds[n] = open_private(path, O_RDONLY, 0)) < 0) {
			snprintf(pj->error, sizeof(pj->error), "%.300s: %s", path,
			    strerror(errno));
			break;
		}
	}
	if (!pj->error[0] && fdwork_start(fds, n, FDWORK_SYNC | FDWORK_HASH,
	    merge_hashed, pj) < 0)
		snprintf(pj->error, sizeof(pj->error), "cannot hash the merged "
		    "files: %s", strerror(errno));
	for (int i = 0; i < n; i++)
		close(fds[i]);
	if (pj->error[0]) {
		merge_roll_forward(b->dir, 0);
		prune_finish(pj);
	}
}

/*
 * The json: name of b's disk d backed by its parents' down to a full
 * backup, each file checked to be plain: qemu-img reads those and no
 * other.  NULL with pj->error.
 */
static char *
prune_source(struct pjob *pj, struct backup *b, int d)
{
	char **files = NULL, why[400], *json = NULL;
	int n = 0, cap = 0;

	for (struct backup *c = b; c; c = c->parent ? backup_find(c->parent) :
	    NULL) {
		if (n + 2 > cap) {
			char **nf = realloc(files, (size_t)(cap = cap * 2 + 8) *
			    sizeof(*files));
			if (nf == NULL || cap > 200000)
				goto out;
			files = nf;
		}
		if (asprintf(&files[n], "%s/disk%d.qcow2", c->dir, d) < 0)
			goto out;
		files[++n] = NULL;
		if (c->parent == 0)
			break;
	}
	for (int k = 0; k < n; k++)
		if (img_check(files[k], k == n - 1 ? NULL : "", why,
		    sizeof(why)) < 0) {
			snprintf(pj->error, sizeof(pj->error), "%.500s", why);
			goto out;
		}
	json = n ? img_json("qcow2", (const char *const *)files) : NULL;
out:
	if (json == NULL && !pj->error[0])
		snprintf(pj->error, sizeof(pj->error), "backup %lld: cannot name "
		    "its chain", (long long)b->id);
	for (int k = 0; k < n; k++)
		free(files[k]);
	free(files);
	return json;
}

static void
prune_next(struct pjob *pj)
{
	struct backup *b;
	char err[256];
	json_t *m;

	if (pj->cur >= pj->nmerge) {
		prune_finish(pj);
		return;
	}
	b = backup_find(pj->merge[pj->cur]);
	if (b == NULL || (m = manifest_read(b, err, sizeof(err))) == NULL) {
		snprintf(pj->error, sizeof(pj->error), "backup %lld: %s",
		    (long long)pj->merge[pj->cur], b ? err : "gone");
		prune_finish(pj);
		return;
	}
	pj->ndisks = (int)json_array_size(json_object_get(m, "disks"));
	json_decref(m);
	pj->left = 1;
	for (int d = 0; d < pj->ndisks && !pj->error[0]; d++) {
		char *src = prune_source(pj, b, d), dst[PATH_MAX + 64];
		if (src == NULL)
			break;
		snprintf(dst, sizeof(dst), "%s/disk%d.qcow2.merge", b->dir, d);
		char *argv[] = { vmgrd->qemu_img, "convert", "-q", "-O", "qcow2",
		    src, dst, NULL };
		pj->left++;
		if (proc_run(vmgrd->base, argv, merge_converted, pj) < 0) {
			pj->left--;
			snprintf(pj->error, sizeof(pj->error), "cannot run "
			    "qemu-img");
		}
		free(src);
	}
	merge_converted(0, "", pj);	/* drops the hold */
}

static int
id_in(int64_t id, const int64_t *ids, int n)
{
	for (int i = 0; i < n; i++)
		if (ids[i] == id)
			return 1;
	return 0;
}

static void
backup_prune(struct evhttp_request *req, json_t *body)
{
	static const char *const keys[] = { "vm", "keep", NULL };
	const char *vm = json_string_value(json_object_get(body, "vm"));
	long long keep = -1;
	struct backup *b;
	struct pjob *pj;
	int n = 0;

	if (api_body_keys(req, body, keys) < 0 || api_body_int(req, body,
	    "keep", 1, 100000, &keep) < 0)
		return;
	if (vm == NULL || keep < 0) {
		api_reply_error(req, 422, "missing_field", "vm and keep (at "
		    "least 1) are required");
		return;
	}
	TAILQ_FOREACH(b, &backups, entry) {
		if (strcmp(b->vm, vm) != 0)
			continue;
		if (b->job || b->busy) {
			api_reply_error(req, 409, "busy", "backup %lld of %s is "
			    "in use; prune when it is done", (long long)b->id, vm);
			return;
		}
		if (strcmp(b->state, "complete") == 0)
			n++;
	}
	if ((pj = calloc(1, sizeof(*pj))) == NULL ||
	    (pj->del = calloc((size_t)n + 1, sizeof(int64_t))) == NULL ||
	    (pj->merge = calloc((size_t)n + 1, sizeof(int64_t))) == NULL ||
	    (pj->p = api_park(req, 0)) == NULL) {
		if (pj) {
			free(pj->del);
			free(pj->merge);
		}
		free(pj);
		api_reply_error(req, 500, "no_memory", "out of memory");
		return;
	}
	snprintf(pj->vm, sizeof(pj->vm), "%s", vm);
	pj->kept = json_array();
	int seen = 0;
	TAILQ_FOREACH(b, &backups, entry) {
		if (strcmp(b->vm, vm) != 0 || strcmp(b->state, "complete") != 0)
			continue;
		b->busy = 1;
		if (seen++ < n - keep)
			pj->del[pj->ndel++] = b->id;
		else
			json_array_append_new(pj->kept, json_integer(b->id));
	}
	/* A kept backup standing on one that goes is made whole first. */
	TAILQ_FOREACH(b, &backups, entry)
		if (strcmp(b->vm, vm) == 0 && !id_in(b->id, pj->del, pj->ndel) &&
		    b->parent && id_in(b->parent, pj->del, pj->ndel))
			pj->merge[pj->nmerge++] = b->id;
	log_info("%s: pruning %d of %d backups, merging %d", vm, pj->ndel, n,
	    pj->nmerge);
	prune_next(pj);
}

/* ---- start-up and the API ------------------------------------------------------ */

/*
 * A storage daemon left by a vmgrd that died mid-backup holds the disks.
 * Its pid file is in the VM's run dir (in a backup's partial directory
 * before vmgr 0.2).
 */
static void
kill_stale_qsd(const char *pidf)
{
	const char *want[] = { "qemu-storage-daemon", NULL };
	char *s;
	long pid;

	if ((s = read_file_private(pidf, 32, NULL)) == NULL)
		return;
	if ((pid = strtol(s, NULL, 10)) > 1 && proc_cmdline_has((pid_t)pid,
	    want)) {
		log_info("killing the storage daemon %ld of an unfinished "
		    "backup", pid);
		kill((pid_t)pid, SIGKILL);
	}
	free(s);
	unlink(pidf);
}

static int
load_backup(const struct backup_row *r, void *arg)
{
	struct backup *b = calloc(1, sizeof(*b));
	char partial[PATH_MAX + 32], err[256];

	(void)arg;
	if (b == NULL)
		return -1;
	b->id = r->id;
	snprintf(b->vm, sizeof(b->vm), "%s", r->vm);
	snprintf(b->kind, sizeof(b->kind), "%s", r->kind);
	b->parent = r->parent;
	snprintf(b->dir, sizeof(b->dir), "%s", r->dir);
	snprintf(b->state, sizeof(b->state), "%s", r->state);
	b->created_at = r->created_at;
	b->finished_at = r->finished_at;
	b->size_bytes = r->size_bytes;
	b->verified_at = r->verified_at;
	b->verify_ok = r->verify_ok;
	TAILQ_INSERT_TAIL(&backups, b, entry);
	if (strcmp(b->state, "complete") != 0) {
		/* Cut short by a crash: nothing of it stays. */
		struct vm *vm = vm_find_any(b->vm);
		if (vm) {
			snprintf(partial, sizeof(partial), "%s/qsd.pid", vm->dir);
			kill_stale_qsd(partial);
		}
		snprintf(partial, sizeof(partial), "%s.partial/qsd.pid", b->dir);
		if (b->dir[0])
			kill_stale_qsd(partial);
		log_warnx("backup %lld of %s was cut short; removing it",
		    (long long)b->id, b->vm);
		remove_dirs(b);
		db_backup_delete(vmgrd->db, b->id);
		backup_free(b);
		return 0;
	}
	merge_roll_forward(b->dir, 1);
	/* The manifest is the truth on kind and parent (after a merge). */
	json_t *m = manifest_read(b, err, sizeof(err));
	if (m) {
		json_t *par = json_object_get(m, "parent");
		const char *kind = json_string_value(json_object_get(m, "kind"));
		int64_t p = json_is_integer(par) ? json_integer_value(par) : 0;
		if (kind && (p != b->parent || strcmp(kind, b->kind) != 0)) {
			b->parent = p;
			snprintf(b->kind, sizeof(b->kind), "%s", kind);
			backup_save(b);
		}
		json_decref(m);
	}
	return 0;
}

int
backup_load_all(void)
{
	return db_backup_foreach(vmgrd->db, load_backup, NULL);
}

static void
backup_list(struct evhttp_request *req, struct evkeyvalq *q)
{
	const char *vm = evhttp_find_header(q, "vm");
	json_t *arr = json_array();
	struct backup *b;

	TAILQ_FOREACH(b, &backups, entry)
		if ((vm == NULL || strcmp(b->vm, vm) == 0) &&
		    strcmp(b->state, "failed") != 0)
			json_array_append_new(arr, backup_json(b, 0));
	api_reply_json(req, 200, arr);
}

void
backup_api(struct evhttp_request *req, struct api_request *ar)
{
	static const char *const none[] = { NULL };
	const char *w = evhttp_find_header(&ar->query, "wait");
	struct backup *b = NULL;
	struct vjob *vj;

	switch (ar->route.id) {
	case R_BK_LIST:
		backup_list(req, &ar->query);
		return;
	case R_BK_CREATE:
		backup_create(req, ar->body, w && strcmp(w, "0"));
		return;
	case R_BK_PRUNE:
		backup_prune(req, ar->body);
		return;
	default:
		break;
	}
	if ((b = backup_find(ar->route.num)) == NULL) {
		api_reply_error(req, 404, "no_such_backup", "no backup with id "
		    "\"%.32s\"", ar->route.arg[0]);
		return;
	}
	switch (ar->route.id) {
	case R_BK_GET:
		api_reply_json(req, 200, backup_json(b, 1));
		break;
	case R_BK_DELETE:
		backup_delete(req, b);
		break;
	case R_BK_VERIFY:
		if (api_body_keys(req, ar->body, none) == 0 &&
		    (vj = vjob_new(req, b)) != NULL) {
			vj->check = 1;
			verify_begin(vj);
		}
		break;
	case R_BK_RESTORE:
		backup_restore(req, b, ar->body);
		break;
	default:
		api_reply_error(req, 500, "internal", "not a backup request");
		break;
	}
}
