/*
 * snapshot.c - internal qcow2 snapshots of a VM's disks.  While QEMU runs
 * they are taken through QMP: a transaction of internal snapshots for the
 * disks alone, or the snapshot-save job when the guest's memory is kept
 * too (its state goes into the first disk); snapshot-load reverts one with
 * the guest running on.  While no QEMU runs, qemu-img does the same on each
 * file.  The list is read from the images themselves, so it cannot
 * disagree with them.  Called by api.c for /v1/vms/NAME/snapshots.
 */
#include "daemon.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/log.h"
#include "../lib/util.h"
#include "../qemu/proc.h"
#include "../qemu/qmp.h"

#define SNAP_MAX	256
/*
 * QEMU 7.2 runs snapshot-save and snapshot-load in its main loop: QMP is
 * silent until they end.  Meanwhile a silence this long is no hang.
 */
#define SNAP_PATIENCE_S	3600

enum snap_kind { SNAP_CREATE, SNAP_DELETE, SNAP_REVERT };

struct snapinfo {
	int		 found;		/* on how many disks */
	int		 memory;
	int		 vmstate_disk;	/* the disk holding the memory, or -1 */
	uint64_t	 vm_state_size;
	uint64_t	 date_sec;
	uint64_t	 vm_clock_ns;
};

struct snapop {
	struct vm	*vm;
	struct parked	*p;
	enum snap_kind	 kind;
	char		 tag[SPEC_NAME_MAX + 1];
	int		 memory;
	int		 disk;		/* next disk, offline */
	int		 was_running;
	char		 error[512];
	struct snapinfo	*si;		/* revert: what is reverted to */
	int		 left;		/* bitmap removals outstanding */
	int		 dropped;	/* backup bitmaps dropped */
	int		 no_freeze;	/* asked: crash-consistent */
	int		 frozen;	/* by us, through the agent: to thaw */
	char		 consistency[16]; /* filesystem, crash, memory, stopped */
	char		 consistency_why[300];
	/* offline bitmap removals: (disk, name) pairs */
	int		 nbm, nextbm;
	int		 bm_disk[SPEC_MAX_DISKS * 8];
	char		 bm_name[SPEC_MAX_DISKS * 8][QCOW2_NAME_MAX + 1];
};


static const char *
kind_name(enum snap_kind k)
{
	return k == SNAP_CREATE ? "snapshot" : k == SNAP_DELETE ? "snapshot" :
	    "revert";
}

/* What the disks say of tag; -1 with err when an image cannot be read. */
static int
snap_lookup(const struct vm *vm, const char *tag, struct snapinfo *si,
    char *err, size_t errlen)
{
	static struct qcow2_snapshot snaps[SNAP_MAX];
	struct qcow2_header h;
	char path[PATH_MAX];
	int n;

	memset(si, 0, sizeof(*si));
	si->vmstate_disk = -1;
	for (int d = 0; d < vm->spec.ndisks; d++) {
		volume_path(vm->spec.disks[d].volume, path, sizeof(path));
		if (qcow2_read_info(path, &h, snaps, SNAP_MAX, &n, NULL, 0, NULL,
		    err, errlen) < 0)
			return -1;
		for (int i = 0; i < n; i++) {
			if (strcmp(snaps[i].name, tag) != 0)
				continue;
			si->found++;
			if (d == 0) {
				si->date_sec = snaps[i].date_sec;
				si->vm_clock_ns = snaps[i].vm_clock_ns;
			}
			if (snaps[i].vm_state_size > 0) {
				si->memory = 1;
				si->vmstate_disk = d;
				si->vm_state_size = snaps[i].vm_state_size;
			}
			break;
		}
	}
	return 0;
}

static json_t *
snap_json(const struct vm *vm, const char *tag, const struct snapinfo *si)
{
	return json_pack("{s:s, s:s, s:b, s:I, s:I, s:I, s:b}", "name", tag,
	    "vm", vm->spec.name, "memory", si->memory, "vm_state_bytes",
	    (json_int_t)si->vm_state_size, "created_at",
	    (json_int_t)si->date_sec * 1000, "vm_clock_ms",
	    (json_int_t)(si->vm_clock_ns / 1000000), "complete",
	    si->found == vm->spec.ndisks);
}

int
snapshot_api_list(struct api_call *c)
{
	struct vm *vm = c->vm;
	static struct qcow2_snapshot snaps[SNAP_MAX];
	struct qcow2_header h;
	struct snapinfo si;
	char path[PATH_MAX], err[512];
	json_t *arr = json_array();
	int n;

	if (vm->spec.ndisks == 0)
		return api_ok(c, 200, arr);
	volume_path(vm->spec.disks[0].volume, path, sizeof(path));
	if (qcow2_read_info(path, &h, snaps, SNAP_MAX, &n, NULL, 0, NULL, err,
	    sizeof(err)) < 0) {
		json_decref(arr);
		return api_err(&c->err, 500, "bad_volume", "%s", err);
	}
	/* snap_lookup reuses the static table: copy the names first. */
	char (*names)[QCOW2_NAME_MAX + 1] = calloc((size_t)n + 1,
	    sizeof(*names));
	for (int i = 0; names && i < n; i++)
		snprintf(names[i], sizeof(names[i]), "%s", snaps[i].name);
	for (int i = 0; names && i < n; i++)
		if (snap_lookup(vm, names[i], &si, err, sizeof(err)) == 0)
			json_array_append_new(arr, snap_json(vm, names[i], &si));
	free(names);
	return api_ok(c, 200, arr);
}

static void
snap_finish(struct snapop *op)
{
	struct vm *vm = op->vm;
	struct snapinfo si;
	char err[256];

	vm->storage = STORAGE_NONE;
	sched_kick();	/* its memory limit comes down again */
	qmp_set_patience(vm->qmp, 0);
	if (op->error[0]) {
		log_warnx("%s: %s %s failed: %s", vm->spec.name,
		    kind_name(op->kind), op->tag, op->error);
		api_answer_error(op->p, strstr(op->error, "No space") ?
		    507 : 500, "snapshot_failed", "%s %s of %s failed: %s",
		    kind_name(op->kind), op->tag, vm->spec.name, op->error);
	} else if (op->kind == SNAP_DELETE) {
		log_info("%s: snapshot %s deleted", vm->spec.name, op->tag);
		api_answer(op->p, 200, json_pack("{s:s, s:s, s:b}",
		    "name", op->tag, "vm", vm->spec.name, "deleted", 1));
	} else {
		fault_point(op->kind == SNAP_CREATE ? "snapshot:after-take" :
		    "snapshot:after-revert");
		log_info("%s: snapshot %s %s", vm->spec.name, op->tag,
		    op->kind == SNAP_CREATE ? "taken" : "reverted to");
		snap_lookup(vm, op->tag, &si, err, sizeof(err));
		json_t *o = snap_json(vm, op->tag, &si);
		json_object_set_new(o, "vm_state", json_string(vm_state_name(
		    vm->state)));
		if (op->kind == SNAP_REVERT)
			json_object_set_new(o, "backup_tracking_reset",
			    json_boolean(op->dropped));
		if (op->kind == SNAP_CREATE && op->consistency[0]) {
			json_object_set_new(o, "consistency", json_string(
			    op->consistency));
			json_object_set_new(o, "consistency_reason", json_string(
			    op->consistency_why));
		}
		api_answer(op->p, op->kind == SNAP_CREATE ? 201 : 200,
		    o);
	}
	free(op->si);
	free(op);
}

/* ---- with QEMU running: QMP ------------------------------------------ */

static void
snap_resumed(struct qmp *q, json_t *result, const char *error, void *arg)
{
	struct snapop *op = arg;

	(void)q;
	(void)result;
	if (error)
		snprintf(op->error, sizeof(op->error), "reverted, but the guest "
		    "did not resume: %.400s", error);
	snap_finish(op);
}

/* After a load: the guest runs on if it ran before. */
static void
snap_status(struct qmp *q, json_t *result, const char *error, void *arg)
{
	struct snapop *op = arg;
	const char *status = json_string_value(json_object_get(result,
	    "status"));

	if (!error && op->was_running && status &&
	    strcmp(status, "running") != 0 &&
	    qmp_command(q, "cont", NULL, snap_resumed, op) == 0)
		return;
	snap_finish(op);
}

static void
snap_job_done(const char *error, void *arg)
{
	struct snapop *op = arg;
	struct vm *vm = op->vm;

	if (error && strncmp(error, "QEMU went away", 14) == 0 &&
	    op->kind != SNAP_DELETE)
		snprintf(op->error, sizeof(op->error), "%.300s; whether the "
		    "%s was done shows in `vmgr snapshot list %s`", error,
		    op->kind == SNAP_CREATE ? "snapshot" : "revert",
		    vm->spec.name);
	else if (error)
		snprintf(op->error, sizeof(op->error), "%.500s", error);
	if (op->kind == SNAP_REVERT && vm->qmp && qmp_is_ready(vm->qmp) &&
	    qmp_command(vm->qmp, "query-status", NULL, snap_status, op) == 0)
		return;
	snap_finish(op);
}

static void
snap_job_sent(struct qmp *q, json_t *result, const char *error, void *arg)
{
	struct snapop *op = arg;

	(void)q;
	(void)result;
	if (error == NULL) {
		/* QEMU has the job; job_watch reports its outcome. */
		fault_point("snapshot:job-started");
		return;
	}
	/* QEMU refused the command: the job never existed. */
	job_unwatch(op);
	snprintf(op->error, sizeof(op->error), "%.500s", error);
	snap_finish(op);
}

static void
snap_internal_done(struct qmp *q, json_t *result, const char *error,
    void *arg)
{
	struct snapop *op = arg;

	(void)q;
	(void)result;
	if (op->frozen) {
		op->frozen = 0;
		agent_thaw(op->vm, "the snapshot's transaction is done");
	}
	if (error)
		snprintf(op->error, sizeof(op->error), "%.500s", error);
	snap_finish(op);
}

/* One transaction: every disk at the same instant. */
static void
snap_transaction(struct snapop *op)
{
	struct vm *vm = op->vm;
	json_t *actions = json_array();

	for (int d = 0; d < vm->spec.ndisks; d++)
		json_array_append_new(actions, json_pack("{s:s, s:{s:o, s:s}}",
		    "type", "blockdev-snapshot-internal-sync", "data", "device",
		    json_sprintf("disk%d", d), "name", op->tag));
	if (vm->qmp == NULL || qmp_command(vm->qmp, "transaction",
	    json_pack("{s:o}", "actions", actions), snap_internal_done,
	    op) < 0) {
		if (op->frozen) {
			op->frozen = 0;
			agent_thaw(vm, "QEMU is gone");
		}
		snprintf(op->error, sizeof(op->error), "QEMU is gone");
		snap_finish(op);
	}
}

static void
snap_frozen(struct vm *vm, int n, const char *why, void *arg)
{
	struct snapop *op = arg;

	op->frozen = n >= 0;
	agent_consistency(vm, n, why, op->consistency, sizeof(op->consistency),
	    op->consistency_why, sizeof(op->consistency_why));
	snap_transaction(op);
}

static void
snap_live(struct snapop *op, const struct snapinfo *si)
{
	struct vm *vm = op->vm;
	json_t *devices;
	char id[96], why[256];

	if (op->kind == SNAP_CREATE && !op->memory) {
		/* A running guest with an agent is frozen around it. */
		snprintf(op->consistency, sizeof(op->consistency), "crash");
		if (agent_freeze_allowed(vm, op->no_freeze, op->consistency_why,
		    sizeof(op->consistency_why)) == 0) {
			if (agent_freeze(vm, 10, 10, snap_frozen, op, why,
			    sizeof(why)) == 0)
				return;
			snprintf(op->consistency_why, sizeof(op->consistency_why),
			    "%s", why);
		}
		snap_transaction(op);
		return;
	}
	if (op->kind == SNAP_CREATE) {
		snprintf(op->consistency, sizeof(op->consistency), "memory");
		snprintf(op->consistency_why, sizeof(op->consistency_why),
		    "the guest's memory is in the snapshot");
	}
	devices = json_array();
	for (int d = 0; d < vm->spec.ndisks; d++)
		json_array_append_new(devices, json_sprintf("disk%d", d));
	snprintf(id, sizeof(id), "vmgr-snap-%s", op->tag);
	json_t *args = json_pack("{s:s, s:s, s:o}", "job-id", id, "tag",
	    op->tag, "devices", devices);
	const char *cmd = "snapshot-delete";
	if (op->kind == SNAP_CREATE) {
		cmd = "snapshot-save";
		json_object_set_new(args, "vmstate", json_string("disk0"));
	} else if (op->kind == SNAP_REVERT) {
		char node[16];
		cmd = "snapshot-load";
		snprintf(node, sizeof(node), "disk%d", si->vmstate_disk);
		json_object_set_new(args, "vmstate", json_string(node));
	}
	/*
	 * A job of that name left concluded (vmgrd died, or the link went,
	 * before it was dismissed) would refuse the new one: dismiss it first
	 * (an error just says there is none).  QMP runs them in order.
	 */
	qmp_command(vm->qmp, "job-dismiss", json_pack("{s:s}", "id", id), NULL,
	    NULL);
	qmp_set_patience(vm->qmp, SNAP_PATIENCE_S);
	job_watch(vm->qmp, id, snap_job_done, op);
	if (qmp_command(vm->qmp, cmd, args, snap_job_sent, op) < 0) {
		job_unwatch(op);
		snprintf(op->error, sizeof(op->error), "cannot send %s to QEMU",
		    cmd);
		snap_finish(op);
		return;
	}
	fault_point("snapshot:after-send");
	fault_stall("snapshot:after-send", vm->pid);
}

/* ---- with no QEMU: qemu-img on each file --------------------------------- */

static void	snap_offline_next(struct snapop *);

static void
snap_offline_undone(int status, const char *output, void *arg)
{
	struct snapop *op = arg;

	(void)status;
	(void)output;
	if (op->disk-- > 0) {
		snap_offline_next(op);
		return;
	}
	snap_finish(op);
}

static void
snap_offline_step(int status, const char *output, void *arg)
{
	struct snapop *op = arg;

	/* A snapshot missing from one disk is no reason to keep it on others. */
	if (status != 0 && op->kind == SNAP_DELETE &&
	    strstr(output, "not found"))
		status = 0;
	if (status != 0) {
		snprintf(op->error, sizeof(op->error), "disk %s: %.400s",
		    op->vm->spec.disks[op->disk].volume, output);
		op->error[strcspn(op->error, "\n")] = '\0';
		/* A snapshot on some disks only is no snapshot: undo it. */
		if (op->kind == SNAP_CREATE && op->disk > 0) {
			op->disk--;
			snap_offline_next(op);
			return;
		}
		snap_finish(op);
		return;
	}
	op->disk++;
	snap_offline_next(op);
}

static void
snap_offline_next(struct snapop *op)
{
	struct vm *vm = op->vm;
	int undo = op->error[0] != '\0';

	if (op->disk >= vm->spec.ndisks || op->disk < 0) {
		snap_finish(op);
		return;
	}
	/* Opened alone (backing null): checked plain by snap_start(). */
	char *json = volume_json_name(vm->spec.disks[op->disk].volume);
	const char *flag = undo ? "-d" : op->kind == SNAP_CREATE ? "-c" :
	    op->kind == SNAP_DELETE ? "-d" : "-a";
	char *argv[] = { vmgrd->qemu_img, "snapshot", "-q", (char *)flag,
	    op->tag, json, NULL };
	if (json == NULL || proc_run(vmgrd->base, argv, undo ?
	    snap_offline_undone : snap_offline_step, op) < 0) {
		snprintf(op->error, sizeof(op->error), "cannot run qemu-img: %s",
		    strerror(errno));
		snap_finish(op);
	}
	free(json);
}

/*
 * ---- before a revert: the backup bitmaps go ---------------------------
 * QEMU will not load a snapshot under active dirty bitmaps, and rightly:
 * a revert changes the disks behind their back.  So the bitmaps of vmgr's
 * backups are dropped, and the next backup of the VM is a full one.
 */

static void
bitmap_removed(struct qmp *q, json_t *result, const char *error, void *arg)
{
	struct snapop *op = arg;

	(void)q;
	(void)result;
	if (error && !op->error[0])
		snprintf(op->error, sizeof(op->error), "cannot drop the backup "
		    "bitmaps: %.400s", error);
	if (--op->left > 0)
		return;
	if (op->error[0] || op->vm->qmp == NULL)
		snap_finish(op);
	else
		snap_live(op, op->si);
}

static void
bitmaps_listed(struct qmp *q, json_t *result, const char *error, void *arg)
{
	struct snapop *op = arg;
	size_t i, k;
	json_t *node, *bm;

	if (error) {
		snprintf(op->error, sizeof(op->error), "%.500s", error);
		snap_finish(op);
		return;
	}
	op->left = 1;
	json_array_foreach(result, i, node) {
		const char *nn = json_string_value(json_object_get(node,
		    "node-name"));
		if (nn == NULL || strncmp(nn, "disk", 4) != 0)
			continue;
		json_array_foreach(json_object_get(node, "dirty-bitmaps"), k,
		    bm) {
			const char *bn = json_string_value(json_object_get(bm,
			    "name"));
			if (bn == NULL || strncmp(bn, "vmgr-", 5) != 0)
				continue;
			op->left++;
			op->dropped = 1;
			if (qmp_command(q, "block-dirty-bitmap-remove",
			    json_pack("{s:s, s:s}", "node", nn, "name", bn),
			    bitmap_removed, op) < 0)
				op->left--;
		}
	}
	bitmap_removed(q, NULL, NULL, op);	/* the hold */
}

static void	offline_bitmaps_next(struct snapop *);

static void
offline_bitmap_removed(int status, const char *output, void *arg)
{
	struct snapop *op = arg;

	if (status != 0) {
		snprintf(op->error, sizeof(op->error), "cannot drop the backup "
		    "bitmap %s: %.400s", op->bm_name[op->nextbm], output);
		snap_finish(op);
		return;
	}
	op->nextbm++;
	offline_bitmaps_next(op);
}

static void
offline_bitmaps_next(struct snapop *op)
{
	if (op->nextbm >= op->nbm) {
		snap_offline_next(op);
		return;
	}
	char *json = volume_json_name(
	    op->vm->spec.disks[op->bm_disk[op->nextbm]].volume);
	char *argv[] = { vmgrd->qemu_img, "bitmap", "-q", "--remove", json,
	    op->bm_name[op->nextbm], NULL };
	if (json == NULL || proc_run(vmgrd->base, argv, offline_bitmap_removed,
	    op) < 0) {
		snprintf(op->error, sizeof(op->error), "cannot run qemu-img");
		snap_finish(op);
	}
	free(json);
}

static void
drop_bitmaps(struct snapop *op, int live)
{
	struct qcow2_header h;
	struct qcow2_bitmap bms[8];
	char path[PATH_MAX], err[256];
	int n;

	if (live) {
		if (qmp_command(op->vm->qmp, "query-named-block-nodes",
		    json_pack("{s:b}", "flat", 1), bitmaps_listed, op) < 0) {
			snprintf(op->error, sizeof(op->error), "QEMU is gone");
			snap_finish(op);
		}
		return;
	}
	for (int d = 0; d < op->vm->spec.ndisks; d++) {
		volume_path(op->vm->spec.disks[d].volume, path, sizeof(path));
		if (qcow2_read_info(path, &h, NULL, 0, NULL, bms, 8, &n, err,
		    sizeof(err)) < 0)
			continue;
		for (int i = 0; i < n && op->nbm < SPEC_MAX_DISKS * 8; i++) {
			if (strncmp(bms[i].name, "vmgr-", 5) != 0)
				continue;
			op->bm_disk[op->nbm] = d;
			memcpy(op->bm_name[op->nbm], bms[i].name,
			    sizeof(op->bm_name[0]));
			op->nbm++;
			op->dropped = 1;
		}
	}
	offline_bitmaps_next(op);
}

/* ---- API ------------------------------------------------------------------- */

static int
snap_start(struct api_call *c, enum snap_kind kind, const char *tag,
    int memory, int no_freeze)
{
	struct vm *vm = c->vm;
	int live = vm->state == VM_RUNNING || vm->state == VM_PAUSED;
	struct snapinfo si;
	struct snapop *op;
	char err[512];

	if (vm->spec.ndisks == 0)
		return api_err(&c->err, 422, "no_disks", "%s has no disks to "
		    "snapshot", vm->spec.name);
	if (vm->storage || vm->busy != OP_NONE)
		return api_err(&c->err, 409, "busy", "%s is busy (%s in "
		    "progress); try again", vm->spec.name, vm->storage ?
		    vm_storage_name(vm->storage) : "a lifecycle operation");
	if (vm->state == VM_QUEUED || vm->state == VM_STOPPING ||
	    (live && (vm->qmp == NULL || !qmp_is_ready(vm->qmp))))
		return api_err(&c->err, 409, "invalid_state", "%s is %s; "
		    "snapshots are taken of a running, paused or stopped VM",
		    vm->spec.name, vm_state_name(vm->state));
	if (snap_lookup(vm, tag, &si, err, sizeof(err)) < 0)
		return api_err(&c->err, 500, "bad_volume", "%s", err);
	/* With no QEMU, root's qemu-img works on files the VM wrote. */
	for (int d = 0; !live && d < vm->spec.ndisks; d++)
		if (volume_check(vm->spec.disks[d].volume, err, sizeof(err)) < 0)
			return api_err(&c->err, 422, "unsafe_image", "%s: %s",
			    vm->spec.name, err);
	if (kind == SNAP_CREATE && si.found)
		return api_err(&c->err, 409, "snapshot_exists", "%s already "
		    "has a snapshot named %s", vm->spec.name, tag);
	if (kind != SNAP_CREATE && !si.found)
		return api_err(&c->err, 404, "no_such_snapshot", "%s has no "
		    "snapshot named %s", vm->spec.name, tag);
	if (kind == SNAP_CREATE && memory && !live)
		return api_err(&c->err, 422, "not_running", "a snapshot with "
		    "memory needs a running or paused VM; %s is %s",
		    vm->spec.name, vm_state_name(vm->state));
	if (kind == SNAP_REVERT && vm->state == VM_SAVED)
		return api_err(&c->err, 409, "invalid_state", "%s is saved; "
		    "its saved memory belongs to the current disks. Discard it "
		    "with `vmgr stop %s` first", vm->spec.name, vm->spec.name);
	if (kind == SNAP_REVERT && live && !si.memory)
		return api_err(&c->err, 409, "invalid_state", "%s is a "
		    "snapshot of the disks only; reverting the disks under a "
		    "running guest would corrupt them. Stop %s first, or take "
		    "snapshots with memory", tag, vm->spec.name);
	if (kind == SNAP_REVERT && live && si.found != vm->spec.ndisks)
		return api_err(&c->err, 409, "incomplete_snapshot", "%s is not "
		    "on every disk of %s", tag, vm->spec.name);
	if ((op = calloc(1, sizeof(*op))) == NULL ||
	    (op->p = api_park(c->req, 0)) == NULL) {
		free(op);
		return api_err(&c->err, 500, "no_memory", "out of memory");
	}
	op->vm = vm;
	op->kind = kind;
	op->memory = memory;
	op->no_freeze = no_freeze;
	op->was_running = vm->state == VM_RUNNING;
	snprintf(op->tag, sizeof(op->tag), "%s", tag);
	vm->storage = kind == SNAP_REVERT ? STORAGE_REVERT : STORAGE_SNAPSHOT;
	sched_kick();	/* room for the page cache it writes */
	if (kind == SNAP_REVERT) {
		if ((op->si = malloc(sizeof(si))) == NULL) {
			snprintf(op->error, sizeof(op->error), "out of memory");
			snap_finish(op);
			return API_WAIT;
		}
		*op->si = si;
		drop_bitmaps(op, live);
	} else if (live)
		snap_live(op, &si);
	else {
		if (kind == SNAP_CREATE) {
			snprintf(op->consistency, sizeof(op->consistency),
			    "stopped");
			snprintf(op->consistency_why, sizeof(op->consistency_why),
			    "the VM was not running");
		}
		snap_offline_next(op);
	}
	return API_WAIT;
}

int
snapshot_api_create(struct api_call *c)
{
	static const char *const keys[] = { "name", "memory", "freeze", NULL };
	json_t *body = c->body;
	json_t *mem = json_object_get(body, "memory");
	json_t *fr = json_object_get(body, "freeze");
	const char *name;

	if (api_body_keys(&c->err, body, keys) < 0 || api_body_name(&c->err,
	    body, "snapshot name (a-z, 0-9, _ . -)", &name) < 0)
		return API_FAIL;
	if ((mem && !json_is_boolean(mem)) || (fr && !json_is_boolean(fr)))
		return api_err(&c->err, 422, "invalid_value", "%s must be true "
		    "or false", mem && !json_is_boolean(mem) ? "memory" :
		    "freeze");
	return snap_start(c, SNAP_CREATE, name, json_is_true(mem),
	    json_is_false(fr));
}

int
snapshot_api_get(struct api_call *c)
{
	const char *tag = c->route.arg[1];
	struct snapinfo si;
	char err[512];

	if (snap_lookup(c->vm, tag, &si, err, sizeof(err)) < 0)
		return api_err(&c->err, 500, "bad_volume", "%s", err);
	if (!si.found)
		return api_err(&c->err, 404, "no_such_snapshot", "%s has no "
		    "snapshot named %s", c->vm->spec.name, tag);
	return api_ok(c, 200, snap_json(c->vm, tag, &si));
}

int
snapshot_api_delete(struct api_call *c)
{
	return snap_start(c, SNAP_DELETE, c->route.arg[1], 0, 0);
}

int
snapshot_api_revert(struct api_call *c)
{
	static const char *const none[] = { NULL };

	if (api_body_keys(&c->err, c->body, none) < 0)
		return API_FAIL;
	return snap_start(c, SNAP_REVERT, c->route.arg[1], 0, 0);
}
