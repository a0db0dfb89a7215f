/*
 * backup_prune.c - delete old backups, keeping the newest of a VM, and
 * merge a kept incremental whose parent goes.
 */
#include "backup_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../lib/log.h"
#include "../lib/util.h"
#include "../qemu/proc.h"

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

void
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

int
backup_api_prune(struct api_call *c)
{
	static const char *const keys[] = { "vm", "keep", NULL };
	json_t *body = c->body;
	const char *vm = json_string_value(json_object_get(body, "vm"));
	long long keep = -1;
	struct backup *b;
	struct pjob *pj;
	int n = 0;

	if (api_body_keys(&c->err, body, keys) < 0 || api_body_int(&c->err,
	    body, "keep", 1, 100000, &keep) < 0)
		return API_FAIL;
	if (vm == NULL || keep < 0)
		return api_err(&c->err, 422, "missing_field", "vm and keep (at "
		    "least 1) are required");
	TAILQ_FOREACH(b, &backups, entry) {
		if (strcmp(b->vm, vm) != 0)
			continue;
		if (b->job || b->busy)
			return api_err(&c->err, 409, "busy", "backup %lld of "
			    "%s is in use; prune when it is done", (long
			    long)b->id, vm);
		if (strcmp(b->state, "complete") == 0)
			n++;
	}
	if ((pj = calloc(1, sizeof(*pj))) == NULL ||
	    (pj->del = calloc((size_t)n + 1, sizeof(int64_t))) == NULL ||
	    (pj->merge = calloc((size_t)n + 1, sizeof(int64_t))) == NULL ||
	    (pj->p = api_park(c->req, 0)) == NULL) {
		if (pj) {
			free(pj->del);
			free(pj->merge);
		}
		free(pj);
		return api_err(&c->err, 500, "no_memory", "out of memory");
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
	return API_WAIT;
}
