/*
 * backup.c - the catalog of backups: each one's row, its directory and
 * manifest, its JSON, and its removal.
 *
 * A backup is written into ID.partial/, then hashed, described by
 * manifest.json (written atomically) and renamed to ID/; its catalog row
 * says "running" until then, so a crash leaves nothing that looks whole.
 * The work on backups lives beside: backup_job.c makes one,
 * backup_verify.c checks one, backup_restore.c makes VMs or disks from
 * one, backup_prune.c deletes and merges, backup_api.c serves the API and
 * loads the catalog at start.  They share backup_int.h.
 */
#include "backup_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../lib/log.h"
#include "../lib/util.h"

struct backupq backups = TAILQ_HEAD_INITIALIZER(backups);

struct backup *
backup_find(int64_t id)
{
	struct backup *b;

	TAILQ_FOREACH(b, &backups, entry)
		if (b->id == id)
			return b;
	return NULL;
}

/* The newest complete backup of vm, or NULL. */
struct backup *
backup_latest(const char *vm)
{
	struct backup *b, *latest = NULL;

	TAILQ_FOREACH(b, &backups, entry)
		if (strcmp(b->vm, vm) == 0 && strcmp(b->state, "complete") == 0)
			latest = b;
	return latest;
}

int
backup_children(const struct backup *parent)
{
	struct backup *b;
	int n = 0;

	TAILQ_FOREACH(b, &backups, entry)
		if (b->parent == parent->id && strcmp(b->state, "failed") != 0)
			n++;
	return n;
}

void
backup_row(const struct backup *b, struct backup_row *r)
{
	*r = (struct backup_row){
		.id = b->id, .vm = b->vm, .kind = b->kind, .parent = b->parent,
		.dir = b->dir, .state = b->state, .created_at = b->created_at,
		.finished_at = b->finished_at, .size_bytes = b->size_bytes,
		.verified_at = b->verified_at, .verify_ok = b->verify_ok,
	};
}

int
backup_save(const struct backup *b)
{
	struct backup_row r;

	backup_row(b, &r);
	return db_backup_update(vmgrd->db, &r);
}

void
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
		if (b->job && strcmp(b->vm, vm->spec.name) == 0)
			return 1;
	return 0;
}

json_t *
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

json_t *
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
			/* Backups before vmgr knew the guest agent: absent. */
			if (json_object_get(m, "consistency")) {
				json_object_set(o, "consistency",
				    json_object_get(m, "consistency"));
				json_object_set(o, "consistency_reason",
				    json_object_get(m, "consistency_reason"));
			}
			json_decref(m);
		} else
			json_object_set_new(o, "manifest_error",
			    json_string(err));
	}
	return o;
}

/*
 * Remove a backup's directory (and its ".partial"), but only if it is one:
 * a path ending in "/ID".  Anything else in the row is never removed.
 */
void
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
int
backup_remove(struct backup *b)
{
	if (db_backup_delete(vmgrd->db, b->id) < 0)
		return -1;
	remove_dirs(b);
	log_info("backup %lld of %s: deleted", (long long)b->id, b->vm);
	backup_free(b);
	return 0;
}
