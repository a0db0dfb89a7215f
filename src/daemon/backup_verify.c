/*
 * backup_verify.c - check a backup and the chain it stands on: every
 * file's SHA-256 against its manifest, off the loop, and qemu-img check.
 * A restore verifies first (backup_restore.c) and goes on from here.
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
#include "../qemu/proc.h"

static void	verify_next_check(struct vjob *vj);

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

void
vjob_free(struct vjob *vj)
{
	struct vm *vm;

	if (vj->marked && (vm = vm_find(vj->as)) != NULL)
		vm->storage = STORAGE_NONE;
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
	if (vj->then) {
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
		vj->then(vj);
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
void
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

struct vjob *
vjob_new(struct backup *b, struct api_err *e)
{
	struct vjob *vj;

	if (strcmp(b->state, "complete") != 0) {
		api_err(e, 409, "invalid_state", "backup %lld is %s",
		    (long long)b->id, b->state);
		return NULL;
	}
	if (b->busy) {
		api_err(e, 409, "busy", "backup %lld is busy (verify, restore "
		    "or prune in progress)", (long long)b->id);
		return NULL;
	}
	if ((vj = calloc(1, sizeof(*vj))) == NULL) {
		api_err(e, 500, "no_memory", "out of memory");
		return NULL;
	}
	vj->b = b;
	if (chain_files(vj) < 0) {
		api_err(e, 422, "backup_damaged", "%s", vj->error);
		vj->b = NULL;
		vjob_free(vj);
		return NULL;
	}
	b->busy = 1;
	return vj;
}

/* The call waits for vj: API_WAIT, or API_FAIL (vj freed). */
int
vjob_park(struct vjob *vj, struct api_call *c)
{
	if ((vj->p = api_park(c->req, 0)) == NULL) {
		vjob_free(vj);
		return api_err(&c->err, 500, "no_memory", "out of memory");
	}
	return API_WAIT;
}
