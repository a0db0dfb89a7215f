/*
 * backup_api.c - the backups' API endpoints, and the catalog's loading at
 * start, which clears what a crash cut short.
 */
#include "backup_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/keyvalq_struct.h>

#include "../lib/log.h"
#include "../lib/util.h"

int
backup_api_delete(struct api_call *c)
{
	struct backup *b = c->backup;
	int64_t id = b->id;

	if (b->job || b->busy)
		return api_err(&c->err, 409, "busy", "backup %lld is in use",
		    (long long)b->id);
	if (backup_children(b) > 0)
		return api_err(&c->err, 409, "has_dependents", "backup %lld is "
		    "the base of later incremental backups; use `vmgr backup "
		    "prune` to merge the chain", (long long)b->id);
	if (strcmp(b->state, "failed") == 0)
		backup_free(b);
	else if (backup_remove(b) < 0)
		return api_err(&c->err, 500, "database", "%s",
		    db_errmsg(vmgrd->db));
	c->backup = NULL;
	return api_ok(c, 200, json_pack("{s:I, s:b}", "id", (json_int_t)id,
	    "deleted", 1));
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
			qsd_kill_stale(partial);
		}
		snprintf(partial, sizeof(partial), "%s.partial/qsd.pid", b->dir);
		if (b->dir[0])
			qsd_kill_stale(partial);
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

int
backup_api_list(struct api_call *c)
{
	const char *vm = evhttp_find_header(&c->query, "vm");
	json_t *arr = json_array();
	struct backup *b;

	TAILQ_FOREACH(b, &backups, entry)
		if ((vm == NULL || strcmp(b->vm, vm) == 0) &&
		    strcmp(b->state, "failed") != 0)
			json_array_append_new(arr, backup_json(b, 0));
	return api_ok(c, 200, arr);
}

int
backup_api_get(struct api_call *c)
{
	return api_ok(c, 200, backup_json(c->backup, 1));
}

int
backup_api_verify(struct api_call *c)
{
	static const char *const none[] = { NULL };
	struct vjob *vj;

	if (api_body_keys(&c->err, c->body, none) < 0 ||
	    (vj = vjob_new(c->backup, &c->err)) == NULL)
		return API_FAIL;
	vj->check = 1;
	if (vjob_park(vj, c) < 0)
		return API_FAIL;
	verify_begin(vj);
	return API_WAIT;
}
