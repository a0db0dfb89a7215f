/*
 * backup_job.c - making a backup, as a sequence of named steps.
 *
 * A backup is made by QEMU's own block jobs, whether the VM runs or not:
 * for a running VM its QEMU does it live; for a stopped one vmgrd starts
 * qemu-storage-daemon on the disks (backup_qsd.c) and drives the same jobs
 * through QMP.  A full backup is one transaction of, per disk, a new
 * persistent dirty bitmap named after the backup and a blockdev-backup
 * (sync=full) into a fresh qcow2.  An incremental copies only the clusters
 * that bitmap (of the previous backup) marks into a qcow2 whose backing
 * file is the previous backup's, so plain qemu-img restores a chain.  The
 * bitmaps live in the disks' qcow2 files, so they survive VM and vmgrd
 * restarts.
 */
#include "backup_int.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../lib/log.h"
#include "../lib/util.h"
#include "../qemu/proc.h"
#include "../qemu/qmp.h"

#define TICK_MS		250

/* The work of making one backup. */
struct bjob {
	struct backup		*b;
	struct vm		*vm;
	struct parked		*p;		/* ?wait=1, or NULL */
	pid_t			 vm_pid;	/* live: the QEMU it began on */
	int			 own;		/* a storage daemon of ours */
	struct qsd		 qsd;		/* when own */
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
	/* The guest's file systems around the transaction (agent.c). */
	int			 no_freeze;	/* asked: crash-consistent */
	double			 freeze_timeout;
	int			 frozen;	/* ours, to thaw */
	char			 consistency[16]; /* filesystem, crash, stopped */
	char			 consistency_why[300];
	double			 freeze_ms;	/* freeze sent to thaw sent */
	double			 t_freeze;
	double			 t_start, t_copied;	/* monotonic s */
	int			 dead;		/* freed when it returns */
};

/*
 * The steps of a backup, each named for what it does (the table steps[]
 * runs them).  bj->step is the step in progress.
 */
enum {
	ST_TARGETS,	/* qemu-img create the target files */
	ST_OPEN,	/* open them: vmgrd's descriptors from here on */
	ST_CONNECT,	/* a storage daemon of ours, for a stopped VM */
	ST_BITMAPS,	/* query-named-block-nodes: the bitmaps there */
	ST_FDS,		/* hand the targets to the VM's QEMU (add-fd) */
	ST_NODES,	/* blockdev-add them */
	ST_FREEZE,	/* the guest's file systems, through its agent */
	ST_JOBS,	/* the transaction (then the thaw), the jobs run */
	ST_CLOSE,	/* blockdev-del the targets, sort out the bitmaps */
	ST_QUIT,	/* stop our storage daemon, if any */
	ST_SYNC,	/* fsync and hash the targets, off the loop */
	ST_COMMIT,	/* the manifest, the rename, the catalog */
};

static void	bjob_step(struct bjob *);
static void	bjob_fail(struct bjob *, int status, const char *fmt, ...)
		    __attribute__((format(printf, 3, 4)));

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
		return bj->qsd.qmp;
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
/* The freeze ends right after the instant that matters, on every path. */
static void
bjob_thaw(struct bjob *bj, const char *why)
{
	if (!bj->frozen)
		return;
	bj->frozen = 0;
	bj->freeze_ms = (now_mono() - bj->t_freeze) * 1000;
	agent_thaw(bj->vm, why);
}

static void
bjob_transacted(struct qmp *q, json_t *result, const char *error, void *arg)
{
	struct bjob *bj = arg;

	(void)q;
	(void)result;
	bjob_thaw(bj, "the backup's transaction is done");
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
	proc_watch_free(bj->qsd.watch);
	bj->qsd.watch = NULL;
	bj->qsd.pid = 0;
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

static const struct qsd_hooks qsd_hooks = {
	.qmp = { .ready = qsd_ready, .event = qsd_event, .closed = qsd_closed },
	.exited = qsd_exited,
};

static void
bjob_finish(struct bjob *bj)
{
	struct backup *b = bj->b;
	struct vm *vm = bj->vm;

	vm->storage = STORAGE_NONE;
	sched_kick();	/* its memory limit comes down again */
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
	/* UEFI's variables (boot entries, Secure Boot keys) go with it. */
	json_t *vars = NULL;
	if (firmware_uefi(&bj->vm->spec) && (vars = firmware_vars_backup(
	    bj->vm, bj->partial, bj->error, sizeof(bj->error))) == NULL) {
		json_decref(disks);
		return -1;
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
	if (vars)
		json_object_set_new(m, "firmware_vars", vars);
	json_object_set_new(m, "consistency", json_string(bj->consistency));
	json_object_set_new(m, "consistency_reason", json_string(
	    bj->consistency_why));
	if (bj->t_freeze > 0)
		json_object_set_new(json_object_get(m, "timing"), "freeze_ms",
		    json_integer((json_int_t)bj->freeze_ms));
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

/* qemu-img creates the target files, each backed by the parent's. */
static void
step_targets(struct bjob *bj)
{
	char path[PATH_MAX];

	for (int d = 0; d < bj->ndisks; d++) {
		char size[32], backing[PATH_MAX + 32];
		target_path(bj, d, path, sizeof(path));
		snprintf(size, sizeof(size), "%llu",
		    (unsigned long long)bj->disk_size[d]);
		snprintf(backing, sizeof(backing), "%s/disk%d.qcow2",
		    bj->parent_dir, d);
		/*
		 * A full backup's clusters are large: fewer metadata writes.
		 * An incremental's must be the bitmap's granularity (64 KiB):
		 * it is written with its backing file closed, so a larger
		 * cluster partly written would read zeros, not the previous
		 * backup, around the change.
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
			snprintf(bj->error, sizeof(bj->error), "cannot run "
			    "qemu-img: %s", strerror(errno));
		}
	}
}

/*
 * From here on the targets are vmgrd's descriptors: QEMU and the storage
 * daemon get them so, the hashes read them, and no name is looked up
 * again in a directory another user had.
 */
static void
step_open(struct bjob *bj)
{
	char path[PATH_MAX];

	for (int d = 0; d < bj->ndisks && !bj->error[0]; d++) {
		target_path(bj, d, path, sizeof(path));
		if ((bj->tfd[d] = open_private(path, O_RDWR, 0)) < 0)
			snprintf(bj->error, sizeof(bj->error), "%.300s: %s",
			    path, strerror(errno));
	}
}

/* The VM's QEMU, or for a stopped VM a storage daemon of our own. */
static void
step_connect(struct bjob *bj)
{
	if (!bj->own) {
		if (bjob_qmp(bj) == NULL)
			bjob_error(bj, "QEMU is gone");
		return;
	}
	bj->left++;	/* its QMP greeting */
	if (qsd_spawn(&bj->qsd, bj->vm, bj->tfd, bj->ndisks, &qsd_hooks, bj,
	    bj->error, sizeof(bj->error)) == 0)
		return;
	bj->left--;
	if (bj->qsd.pid > 0)
		kill(bj->qsd.pid, SIGKILL);	/* its exit is waited for */
	if (!bj->error[0])
		bjob_error(bj, "cannot start the storage daemon");
}

/* query-named-block-nodes: the bitmaps on the disks (bjob_bitmaps). */
static void
step_bitmaps(struct bjob *bj)
{
	struct qmp *q = bjob_qmp(bj);

	bj->left++;
	if (q == NULL || qmp_command(q, "query-named-block-nodes",
	    json_pack("{s:b}", "flat", 1), bjob_bitmaps, bj) < 0) {
		bj->left--;
		bjob_error(bj, "QEMU is gone");
	}
}

/*
 * The VM's QEMU may run as a user who cannot reach the store: it gets the
 * files as descriptors, through fd sets (add-fd).
 */
static void
step_fds(struct bjob *bj)
{
	if (bj->own)
		return;
	for (int d = 0; d < bj->ndisks; d++) {
		struct qmp *q = bjob_qmp(bj);
		bj->left++;
		bj->fdslot[d].bj = bj;
		bj->fdslot[d].d = d;
		if (q == NULL || qmp_command_fd(q, "add-fd", NULL, bj->tfd[d],
		    bjob_fd_added, &bj->fdslot[d]) < 0) {
			bj->left--;
			bjob_error(bj, "QEMU is gone");
			break;
		}
	}
}

/* blockdev-add each target, its backing null: the parent stays closed. */
static void
step_nodes(struct bjob *bj)
{
	char path[PATH_MAX], node[48];

	for (int d = 0; d < bj->ndisks; d++) {
		if (bj->own)	/* the storage daemon's fd 4 and up */
			snprintf(path, sizeof(path), "/dev/fd/%d", 4 + d);
		else
			snprintf(path, sizeof(path), "/dev/fdset/%lld",
			    (long long)bj->fdset[d]);
		snprintf(node, sizeof(node), "vmgr-bk%lld-t%d",
		    (long long)bj->b->id, d);
		bjob_cmd(bj, "blockdev-add", json_pack("{s:s, s:s, "
		    "s:{s:s, s:s}, s:n}", "driver", "qcow2", "node-name", node,
		    "file", "driver", "file", "filename", path, "backing"));
		bj->nodes++;
	}
}

/* Disk d's part of the transaction: its new bitmap and its job. */
static void
job_actions(struct bjob *bj, int d, json_t *actions, char *id, size_t idlen)
{
	char node[16], target[48];

	snprintf(node, sizeof(node), "disk%d", d);
	snprintf(target, sizeof(target), "vmgr-bk%lld-t%d",
	    (long long)bj->b->id, d);
	snprintf(id, idlen, "vmgr-bk%lld-%d", (long long)bj->b->id, d);
	json_array_append_new(actions, json_pack("{s:s, s:{s:s, s:s, s:b}}",
	    "type", "block-dirty-bitmap-add", "data", "node", node, "name",
	    bj->new_bitmap, "persistent", 1));
	/*
	 * copy_file_range: the kernel copies within a filesystem (QEMU falls
	 * back to read/write across them); 2.5 to 4 times faster here than
	 * QEMU's default.
	 */
	json_t *data = json_pack("{s:s, s:s, s:s, s:s, s:b, s:{s:b, s:I}}",
	    "job-id", id, "device", node, "target", target, "sync",
	    bj->b->parent ? "bitmap" : "full", "auto-dismiss", 0, "x-perf",
	    "use-copy-range", 1, "max-chunk", (json_int_t)16 << 20);
	if (bj->speed)
		json_object_set_new(data, "speed", json_integer(
		    (json_int_t)(bj->speed / (uint64_t)bj->ndisks)));
	if (bj->b->parent) {
		/* "never": the bitmap stays until we drop it. */
		json_object_set_new(data, "bitmap",
		    json_string(bj->prev_bitmap));
		json_object_set_new(data, "bitmap-mode", json_string("never"));
	}
	json_array_append_new(actions, json_pack("{s:s, s:o}", "type",
	    "blockdev-backup", "data", data));
}

static void
bjob_frozen(struct vm *vm, int n, const char *why, void *arg)
{
	struct bjob *bj = arg;

	bj->frozen = n >= 0;
	if (n < 0)
		bj->freeze_ms = (now_mono() - bj->t_freeze) * 1000;
	agent_consistency(vm, n, why, bj->consistency, sizeof(bj->consistency),
	    bj->consistency_why, sizeof(bj->consistency_why));
	bjob_settle(bj);
}

/*
 * A running guest with an agent is frozen just before the transaction;
 * without one (or asked not to) the backup is crash-consistent, and says
 * so.  A stopped VM's disks are as its guest left them.
 */
static void
step_freeze(struct bjob *bj)
{
	struct vm *vm = bj->vm;
	char why[256];

	snprintf(bj->consistency, sizeof(bj->consistency), "crash");
	if (bj->own) {
		snprintf(bj->consistency, sizeof(bj->consistency), "stopped");
		snprintf(bj->consistency_why, sizeof(bj->consistency_why),
		    "the VM was not running");
		return;
	}
	if (agent_freeze_allowed(vm, bj->no_freeze, bj->consistency_why,
	    sizeof(bj->consistency_why)) == 0) {
		bj->t_freeze = now_mono();
		if (agent_freeze(vm, bj->freeze_timeout, bj->freeze_timeout,
		    bjob_frozen, bj, why, sizeof(why)) == 0) {
			bj->left++;
			return;
		}
		bj->t_freeze = 0;
		snprintf(bj->consistency_why, sizeof(bj->consistency_why),
		    "%s", why);
	}
}

/* One transaction of every disk's bitmap and job; then the jobs run. */
static void
step_jobs(struct bjob *bj)
{
	struct qmp *q = bjob_qmp(bj);
	char id[48];

	if (q == NULL) {
		bjob_thaw(bj, "QEMU is gone");
		bjob_error(bj, "QEMU is gone");
		return;
	}
	json_t *actions = json_array();
	for (int d = 0; d < bj->ndisks; d++) {
		job_actions(bj, d, actions, id, sizeof(id));
		job_watch(q, id, bjob_job_done, bj);
		bj->left++;
	}
	/* The transaction's own reply counts as one more. */
	bj->left++;
	if (qmp_command(q, "transaction", json_pack("{s:o}", "actions",
	    actions), bjob_transacted, bj) < 0) {
		bj->left -= 1 + job_unwatch(bj);
		bjob_thaw(bj, "QEMU is gone");
		bjob_error(bj, "QEMU is gone");
		return;
	}
	struct timeval tv = { 0, TICK_MS * 1000 };
	bj->tick = event_new(vmgrd->base, -1, EV_PERSIST, bjob_tick, bj);
	event_add(bj->tick, &tv);
}

/*
 * blockdev-del the targets and remove their fd sets; after success drop
 * the disks' older vmgr bitmaps, after a failure the new one.
 */
static void
step_close(struct bjob *bj)
{
	char node[48];

	fault_point("backup:after-jobs");
	bjob_thaw(bj, "the backup ended");	/* a failure before the reply */
	if (bj->tick) {
		event_free(bj->tick);
		bj->tick = NULL;
	}
	for (int d = 0; d < bj->nodes; d++) {
		snprintf(node, sizeof(node), "vmgr-bk%lld-t%d",
		    (long long)bj->b->id, d);
		bjob_cmd(bj, "blockdev-del", json_pack("{s:s}", "node-name",
		    node));
	}
	for (int d = 0; d < bj->ndisks; d++)
		if (bj->fdset[d] >= 0)
			bjob_cmd(bj, "remove-fd", json_pack("{s:I}",
			    "fdset-id", (json_int_t)bj->fdset[d]));
	for (int d = 0; d < bj->ndisks; d++) {
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
}

/* Our storage daemon quits, which stores the bitmaps; its exit counts. */
static void
step_quit(struct bjob *bj)
{
	bj->t_copied = now_mono();
	if (!bj->own || bj->qsd.pid <= 0)
		return;
	bj->left++;
	if (bj->qsd.qmp == NULL || qmp_command(bj->qsd.qmp, "quit", NULL,
	    NULL, NULL) < 0)
		kill(bj->qsd.pid, SIGTERM);
}

/* The targets back to root's; then fsync and hash them, off the loop. */
static void
step_sync(struct bjob *bj)
{
	char msg[300];

	if (bj->own && bj->qsd.qmp) {
		qmp_free(bj->qsd.qmp);
		bj->qsd.qmp = NULL;
	}
	if (bj->qsd.uid &&
	    qsd_lend(bj->tfd, bj->ndisks, 0, 0, msg, sizeof(msg)) < 0)
		bjob_error(bj, msg);
	if (bj->error[0])
		return;
	bj->left++;
	if (fdwork_start(bj->tfd, bj->ndisks, FDWORK_SYNC | FDWORK_HASH,
	    bjob_synced, bj) < 0) {
		bj->left--;
		snprintf(bj->error, sizeof(bj->error), "cannot hash the files: "
		    "%s", strerror(errno));
	}
}

/* The manifest, the rename and the catalog; then the client is told. */
static void
step_commit(struct bjob *bj)
{
	if (!bj->error[0])
		bjob_commit(bj);
	bjob_finish(bj);
}

/*
 * The steps in order (enum ST_*).  A step sends its work and counts what
 * it waits for in bj->left; when the last of it is in (bjob_settle) the
 * next step begins.  After a failure only the clean-up steps run.
 */
static const struct {
	void	(*run)(struct bjob *);
	int	 cleanup;	/* runs after a failure too */
} steps[] = {
	[ST_TARGETS]	= { step_targets, 0 },
	[ST_OPEN]	= { step_open, 0 },
	[ST_CONNECT]	= { step_connect, 0 },
	[ST_BITMAPS]	= { step_bitmaps, 0 },
	[ST_FDS]	= { step_fds, 0 },
	[ST_NODES]	= { step_nodes, 0 },
	[ST_FREEZE]	= { step_freeze, 0 },
	[ST_JOBS]	= { step_jobs, 0 },
	[ST_CLOSE]	= { step_close, 1 },
	[ST_QUIT]	= { step_quit, 1 },
	[ST_SYNC]	= { step_sync, 1 },
	[ST_COMMIT]	= { step_commit, 1 },
};

static void
bjob_step(struct bjob *bj)
{
	if (bj->step > ST_COMMIT)
		return;
	if (bj->step == ST_COMMIT) {
		steps[ST_COMMIT].run(bj);	/* the last: it ends the job */
		return;
	}
	bj->left = 1;		/* held while this step sends its work */
	if (steps[bj->step].cleanup || !bj->error[0])
		steps[bj->step].run(bj);
	bjob_settle(bj);
}

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

/*
 * Whether vm (called name) may be backed up now, and on what: *parent is
 * its last backup for an incremental, else NULL.  0, or -1 with *e.
 */
static int
backup_allowed(struct vm *vm, const char *name, int incremental,
    struct backup **parent, struct api_err *e)
{
	int live = vm->state == VM_RUNNING || vm->state == VM_PAUSED;

	*parent = NULL;
	if (vm->spec.ndisks == 0)
		return api_err(e, 422, "no_disks", "%s has no disks to back "
		    "up", name);
	if (vm->storage || vm->busy != OP_NONE)
		return api_err(e, 409, "busy", "%s is busy (%s in progress); "
		    "one backup of a VM at a time", name, vm->storage ?
		    vm_storage_name(vm->storage) : "a lifecycle operation");
	if (vm->state == VM_QUEUED || vm->state == VM_STOPPING ||
	    (live && (vm->qmp == NULL || !qmp_is_ready(vm->qmp))))
		return api_err(e, 409, "invalid_state", "%s is %s; back it up "
		    "when it runs or is stopped", name,
		    vm_state_name(vm->state));
	if (!incremental)
		return 0;
	if ((*parent = backup_latest(name)) == NULL)
		return api_err(e, 409, "incremental_impossible", "%s has no "
		    "backup yet to build on; take a full backup first", name);
	char perr[256];
	json_t *m = manifest_read(*parent, perr, sizeof(perr));
	size_t n = m ? json_array_size(json_object_get(m, "disks")) : 0;
	json_decref(m);
	if (n != (size_t)vm->spec.ndisks)
		return api_err(e, 409, "incremental_impossible", "%s has %d "
		    "disks and its last backup %lld %s; take a full backup",
		    name, vm->spec.ndisks, (long long)(*parent)->id, m ?
		    "has a different number" : perr);
	return 0;
}

/*
 * Record b: its row, then its directory in store (the row's id names
 * it).  0, or -1 with *e and nothing left behind.
 */
static int
backup_record(struct backup *b, const char *store, struct api_err *e)
{
	struct backup_row row;
	char err[256];

	/*
	 * No directory until the id is known: a crash between the insert
	 * and the update leaves a row with nothing to remove (found by the
	 * random kills: the row held the store, and the clean-up at start
	 * removed every backup in it).
	 */
	b->dir[0] = '\0';
	backup_row(b, &row);
	if (db_backup_insert(vmgrd->db, &row, &b->id) < 0)
		return api_err(e, db_full(vmgrd->db) ? 507 : 500,
		    db_full(vmgrd->db) ? "no_space" : "database", "cannot "
		    "record the backup: %s", db_errmsg(vmgrd->db));
	fault_point("backup:after-insert");
	if (backup_dirs(store, b->vm, b->id, b->dir, sizeof(b->dir)) < 0 ||
	    backup_save(b) < 0) {
		int full = errno == ENOSPC;
		snprintf(err, sizeof(err), "%.200s: %s", store,
		    strerror(errno));
		db_backup_delete(vmgrd->db, b->id);
		return api_err(e, full ? 507 : 422, full ? "no_space" :
		    "bad_store", "cannot use the store %s", err);
	}
	return 0;
}

/* The job of making b of vm, on parent (or NULL), ready for its steps. */
static void
bjob_init(struct bjob *bj, struct backup *b, struct vm *vm,
    const struct backup *parent, long long bwlimit)
{
	int live = vm->state == VM_RUNNING || vm->state == VM_PAUSED;
	char err[256];

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
}

int
backup_api_create(struct api_call *c)
{
	static const char *const keys[] = { "vm", "incremental", "store",
	    "bwlimit_mib", "freeze", "freeze_timeout_s", NULL };
	json_t *body = c->body;
	const char *w = evhttp_find_header(&c->query, "wait");
	long long bwlimit = 0;
	const char *name = json_string_value(json_object_get(body, "vm"));
	const char *store = json_string_value(json_object_get(body, "store"));
	json_t *jinc = json_object_get(body, "incremental");
	json_t *jstore = json_object_get(body, "store");
	char defstore[PATH_MAX];
	struct backup *b, *parent;
	struct bjob *bj;
	struct vm *vm;
	int ret = API_OK;

	json_t *jfreeze = json_object_get(body, "freeze");
	long long freeze_timeout = 10;
	if (api_body_keys(&c->err, body, keys) < 0 || api_body_int(&c->err,
	    body, "bwlimit_mib", 1, 1 << 20, &bwlimit) < 0 ||
	    api_body_int(&c->err, body, "freeze_timeout_s", 1, 600,
	    &freeze_timeout) < 0)
		return API_FAIL;
	if (jfreeze && !json_is_boolean(jfreeze))
		return api_err(&c->err, 422, "invalid_value", "freeze must be "
		    "true or false");
	if (name == NULL)
		return api_err(&c->err, 422, "missing_field", "vm is "
		    "required");
	if (jinc && !json_is_boolean(jinc))
		return api_err(&c->err, 422, "invalid_value", "incremental "
		    "must be true or false");
	if (jstore && (store == NULL || store[0] != '/' ||
	    strlen(store) > 512 || strstr(store, "/../") ||
	    strcmp(store + strlen(store) - (strlen(store) > 2 ? 3 : 0),
	    "/..") == 0))
		return api_err(&c->err, 422, "invalid_value", "store must be "
		    "an absolute directory path without ..");
	if (!spec_name_valid(name) || (vm = vm_find(name)) == NULL)
		return api_err(&c->err, 404, "no_such_vm", "no VM named "
		    "\"%.64s\"", name);
	if (backup_allowed(vm, name, json_is_true(jinc), &parent,
	    &c->err) < 0)
		return API_FAIL;
	if (store == NULL) {
		snprintf(defstore, sizeof(defstore), "%s/backups",
		    vmgrd->state_dir);
		store = defstore;
	}
	if ((b = calloc(1, sizeof(*b))) == NULL ||
	    (bj = calloc(1, sizeof(*bj))) == NULL) {
		free(b);
		return api_err(&c->err, 500, "no_memory", "out of memory");
	}
	snprintf(b->vm, sizeof(b->vm), "%s", name);
	snprintf(b->kind, sizeof(b->kind), parent ? "incremental" : "full");
	snprintf(b->state, sizeof(b->state), "running");
	b->parent = parent ? parent->id : 0;
	b->created_at = now_unix_ms();
	b->verify_ok = -1;
	if (backup_record(b, store, &c->err) < 0) {
		free(b);
		free(bj);
		return API_FAIL;
	}
	TAILQ_INSERT_TAIL(&backups, b, entry);
	vm->storage = STORAGE_BACKUP;
	sched_kick();	/* room for the target's page cache */
	bjob_init(bj, b, vm, parent, bwlimit);
	bj->no_freeze = json_is_false(jfreeze);
	bj->freeze_timeout = (double)freeze_timeout;
	log_info("%s: %s backup %lld begins into %s", name, b->kind,
	    (long long)b->id, b->dir);
	if (w && strcmp(w, "0")) {
		if ((bj->p = api_park(c->req, 0)) == NULL)
			ret = api_err(&c->err, 500, "no_memory", "out of "
			    "memory");
		else
			ret = API_WAIT;
	} else
		api_ok(c, 202, backup_json(b, 0));
	bj->step = ST_TARGETS;
	bj->t_start = now_mono();
	bjob_step(bj);
	return ret;
}
