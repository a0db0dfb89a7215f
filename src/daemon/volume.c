/*
 * volume.c - the volume pool: qcow2 files in STATE/volumes, one row each
 * in SQLite.  A volume is made under NAME.qcow2.partial by qemu-img and
 * renamed only when whole, so a crash never leaves half a volume with a
 * real name.  Linked clones have their base as a relative backing file;
 * a base with clones stays read-only: it cannot be attached, resized or
 * deleted.  A volume made together with a VM is owned by it and goes with
 * it; a volume attached by name stays when its VM is deleted.
 */
#include "daemon.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
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


struct volume {
	TAILQ_ENTRY(volume)	 entry;
	char			 name[SPEC_NAME_MAX + 1];
	char			 owner[SPEC_NAME_MAX + 1];	/* "" = none */
	int64_t			 created_at;
	int			 busy;		/* resize in flight */
	int			 reserved;	/* being made: a name, no file yet */
	char			 from[SPEC_NAME_MAX + 1];	/* a clone being made: its base */
};
TAILQ_HEAD(volq, volume);

static struct volq volumes = TAILQ_HEAD_INITIALIZER(volumes);


/* Any volume of that name: made, or reserved for one being made. */
static struct volume *
volume_any(const char *name)
{
	struct volume *v;

	TAILQ_FOREACH(v, &volumes, entry)
		if (strcmp(v->name, name) == 0)
			return v;
	return NULL;
}

/* A volume that is whole and recorded. */
static struct volume *
volume_find(const char *name)
{
	struct volume *v = volume_any(name);

	return v && !v->reserved ? v : NULL;
}

/*
 * Known (made, or reserved by a create that is making it), or its file
 * (whole or partial) is there: the name is taken.
 */
int
volume_exists(const char *name)
{
	char path[PATH_MAX], partial[PATH_MAX + 16];

	volume_path(name, path, sizeof(path));
	snprintf(partial, sizeof(partial), "%s.partial", path);
	return volume_any(name) != NULL || access(path, F_OK) == 0 ||
	    access(partial, F_OK) == 0;
}

/* The VM whose spec attaches the volume, or NULL. */
const char *
volume_user(const char *name)
{
	struct vm *vm;

	TAILQ_FOREACH(vm, &vmgrd->vms, entry)
		for (int i = 0; i < vm->spec.ndisks; i++)
			if (strcmp(vm->spec.disks[i].volume, name) == 0)
				return vm->spec.name;
	return NULL;
}

int
volume_owned_by(const char *name, const char *vm)
{
	struct volume *v = volume_find(name);

	return v != NULL && strcmp(v->owner, vm) == 0;
}

/* The volume name a backing file names, when it is one of ours. */
static int
backing_volume(const struct qcow2_header *h, char *name, size_t len)
{
	size_t n = strlen(h->backing);

	if (n < 7 || strcmp(h->backing + n - 6, ".qcow2") != 0 ||
	    strchr(h->backing, '/'))
		return -1;
	snprintf(name, len, "%.*s", (int)(n - 6), h->backing);
	return spec_name_valid(name) ? 0 : -1;
}

/* How many volumes are linked clones of name; the first in *first. */
int
volume_clones(const char *name, char *first, size_t len)
{
	struct volume *v;
	struct qcow2_header h;
	char path[PATH_MAX], base[SPEC_NAME_MAX + 8], err[256];
	int n = 0;

	TAILQ_FOREACH(v, &volumes, entry) {
		int clone;
		/* A clone still being made counts: its base must stay. */
		if (v->reserved)
			clone = strcmp(v->from, name) == 0;
		else {
			volume_path(v->name, path, sizeof(path));
			clone = qcow2_read_info(path, &h, NULL, 0, NULL, NULL, 0,
			    NULL, err, sizeof(err)) == 0 && backing_volume(&h,
			    base, sizeof(base)) == 0 && strcmp(base, name) == 0;
		}
		if (clone && n++ == 0 && first)
			snprintf(first, len, "%s", v->name);
	}
	return n;
}

static struct volume *
remember(const char *name, const char *owner, int64_t created_at)
{
	struct volume *v = calloc(1, sizeof(*v));

	if (v == NULL)
		return NULL;
	snprintf(v->name, sizeof(v->name), "%s", name);
	snprintf(v->owner, sizeof(v->owner), "%s", owner ? owner : "");
	v->created_at = created_at;
	TAILQ_INSERT_TAIL(&volumes, v, entry);
	return v;
}

/* Record a volume whose file is in place.  0, or -1 (database error). */
int
volume_register(const char *name, const char *owner)
{
	int64_t now = now_unix_ms();
	struct volume *v;

	if (db_volume_insert(vmgrd->db, name, owner, now) < 0)
		return -1;
	if ((v = volume_any(name)) != NULL) {
		v->reserved = 0;	/* what was being made is made */
		v->created_at = now;
		snprintf(v->owner, sizeof(v->owner), "%s", owner ? owner : "");
	} else if (remember(name, owner, now) == NULL)
		return -1;
	return 0;
}

int
volume_reserve(const char *name, const char *owner)
{
	struct volume *v;

	if (volume_exists(name))
		return errno = EEXIST, -1;
	if ((v = remember(name, owner, now_unix_ms())) == NULL)
		return -1;
	v->reserved = 1;
	return 0;
}

int
volume_reserve_clone(const char *name, const char *owner, const char *base)
{
	if (volume_reserve(name, owner) < 0)
		return -1;
	snprintf(volume_any(name)->from, sizeof(volume_any(name)->from), "%s",
	    base);
	return 0;
}

void
volume_unreserve(const char *name)
{
	struct volume *v = volume_any(name);

	if (v && v->reserved) {
		TAILQ_REMOVE(&volumes, v, entry);
		free(v);
	}
}

/* Remove a volume: its row first, then its file. */
void
volume_forget(const char *name)
{
	struct volume *v = volume_any(name);
	char path[PATH_MAX];

	if (db_volume_delete(vmgrd->db, name) < 0)
		log_warnx("%s: %s: %s", __func__, name, db_errmsg(vmgrd->db));
	volume_path(name, path, sizeof(path));
	if (unlink(path) < 0 && errno != ENOENT)
		log_warn("%s: unlink %s", __func__, path);
	if (v) {
		TAILQ_REMOVE(&volumes, v, entry);
		free(v);
	}
}

static int
load_row(const char *name, const char *owner, int64_t created_at, void *arg)
{
	(void)arg;
	remember(name, owner, created_at);
	return 0;
}

/*
 * Make the rows agree with the files after any crash: partial files go,
 * a row without its file goes, a file without a row is adopted, and a
 * volume owned by a VM that does not exist (a create or restore cut
 * short) is removed unless some VM attaches it.  Runs after the VMs load.
 */
int
volume_load_all(void)
{
	char dir[PATH_MAX], path[PATH_MAX + 300];
	struct volume *v, *next;
	struct dirent *de;
	DIR *d;

	snprintf(dir, sizeof(dir), "%s/volumes", vmgrd->state_dir);
	if (mkdir_p(dir, 0700) < 0) {
		log_warn("%s: mkdir %s", __func__, dir);
		return -1;
	}
	if (db_volume_foreach(vmgrd->db, load_row, NULL) < 0)
		return -1;
	for (v = TAILQ_FIRST(&volumes); v; v = next) {
		next = TAILQ_NEXT(v, entry);
		volume_path(v->name, path, sizeof(path));
		if (access(path, F_OK) < 0) {
			log_warnx("volume %s: its file is gone; forgetting it",
			    v->name);
			volume_forget(v->name);
		} else if (v->owner[0] && vm_find(v->owner) == NULL &&
		    volume_user(v->name) == NULL) {
			log_warnx("volume %s: its VM %s was never made or is "
			    "gone; removing it", v->name, v->owner);
			volume_forget(v->name);
		}
	}
	if ((d = opendir(dir)) == NULL)
		return -1;
	while ((de = readdir(d)) != NULL) {
		size_t n = strlen(de->d_name);
		char name[SPEC_NAME_MAX + 16];
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		if ((n > 8 && strcmp(de->d_name + n - 8, ".partial") == 0) ||
		    (n > 7 && strcmp(de->d_name + n - 7, ".import") == 0)) {
			log_info("removing the partial volume %s", path);
			unlink(path);
			continue;
		}
		if (n < 7 || n - 6 > SPEC_NAME_MAX ||
		    strcmp(de->d_name + n - 6, ".qcow2") != 0)
			continue;
		snprintf(name, sizeof(name), "%.*s", (int)(n - 6), de->d_name);
		if (!spec_name_valid(name) || volume_find(name))
			continue;
		/* Before volumes had rows, a VM's disks were made with it. */
		const char *user = volume_user(name);
		struct vm *vm = user ? vm_find(user) : NULL;
		int owned = 0;
		for (int i = 0; vm && i < vm->spec.ndisks; i++)
			owned |= strcmp(vm->spec.disks[i].volume, name) == 0 &&
			    vm->spec.disks[i].size > 0;
		log_info("adopting the volume %s", name);
		volume_register(name, owned ? user : NULL);
	}
	closedir(d);
	return 0;
}

/* ---- making volumes --------------------------------------------------- */

struct making {
	char		 name[SPEC_NAME_MAX + 1];
	int		 flags;
	volume_made_cb	 cb;
	void		*arg;
};

static void
partial_path(const char *name, char *buf, size_t len)
{
	char path[PATH_MAX];

	volume_path(name, path, sizeof(path));
	snprintf(buf, len, "%s.partial", path);
}

/* The new file is on disk: it gets its name, and the rename is durable. */
static void
made_synced(const char *why, const struct fdwork_result *res, void *arg)
{
	struct making *m = arg;
	char path[PATH_MAX], partial[PATH_MAX + 16], msg[512];
	int e = why ? EIO : res[0].error;

	volume_path(m->name, path, sizeof(path));
	partial_path(m->name, partial, sizeof(partial));
	if (e) {
		snprintf(msg, sizeof(msg), "fsync %.300s: %s", partial, why ? why :
		    strerror(e));
		unlink(partial);
		m->cb(msg, e == ENOSPC || e == EDQUOT, m->arg);
	} else if (m->flags & VOLUME_KEEP_PARTIAL) {
		m->cb(NULL, 0, m->arg);
	} else if (rename(partial, path) < 0) {
		snprintf(msg, sizeof(msg), "rename %.300s: %s", partial,
		    strerror(errno));
		unlink(partial);
		m->cb(msg, 0, m->arg);
	} else {
		if (fsync_dir_of(path) < 0)
			log_warn("%s: fsync the directory of %s", __func__, path);
		fault_point("volume:after-file");
		m->cb(NULL, 0, m->arg);
	}
	free(m);
}

static void
made(int status, const char *output, void *arg)
{
	struct making *m = arg;
	char partial[PATH_MAX + 16], msg[512];
	int fd = -1;

	partial_path(m->name, partial, sizeof(partial));
	if (status != 0) {
		snprintf(msg, sizeof(msg), "%.400s", *output ? output :
		    "qemu-img failed");
		msg[strcspn(msg, "\n")] = '\0';
		unlink(partial);
		m->cb(msg, strstr(output, "No space") != NULL ||
		    strstr(output, "Disk quota") != NULL, m->arg);
		free(m);
		return;
	}
	/* qemu-img made it 0644; then it must reach the disk before its name. */
	if (chmod(partial, 0600) < 0 || (fd = open_private(partial, O_RDONLY,
	    0)) < 0 || fdwork_start(&fd, 1, FDWORK_SYNC, made_synced, m) < 0) {
		snprintf(msg, sizeof(msg), "%.300s: %s", partial,
		    strerror(errno));
		if (fd >= 0)
			close(fd);
		unlink(partial);
		m->cb(msg, 0, m->arg);
		free(m);
		return;
	}
	close(fd);
}

/* Run qemu-img (argv, with fds passed on as 3 and up) to make name. */
static int
make_run(const char *name, char **argv, const int *fds, int nfds, int flags,
    volume_made_cb cb, void *arg)
{
	struct making *m;

	if ((m = calloc(1, sizeof(*m))) == NULL)
		return -1;
	snprintf(m->name, sizeof(m->name), "%s", name);
	m->flags = flags;
	m->cb = cb;
	m->arg = arg;
	if (proc_run_fds(vmgrd->base, argv, fds, nfds, made, m) < 0) {
		free(m);
		return -1;
	}
	return 0;
}

int
volume_make_empty(const char *name, uint64_t bytes, volume_made_cb cb,
    void *arg)
{
	char partial[PATH_MAX + 16], size[32];

	partial_path(name, partial, sizeof(partial));
	snprintf(size, sizeof(size), "%llu", (unsigned long long)bytes);
	char *argv[] = { vmgrd->qemu_img, "create", "-q", "-f", "qcow2",
	    partial, size, NULL };
	return make_run(name, argv, NULL, 0, 0, cb, arg);
}

/*
 * A linked clone of base, its backing file named relative to the pool
 * (so the pool can move with its state dir).  -u: qemu-img never opens
 * the base, whose contents a VM may have written; the size is the base's
 * unless a larger one is asked for.
 */
int
volume_make_clone(const char *name, const char *base, uint64_t bytes,
    volume_made_cb cb, void *arg)
{
	char partial[PATH_MAX + 16], size[32], backing[SPEC_NAME_MAX + 8];
	char path[PATH_MAX], err[256];
	struct qcow2_header h;

	volume_path(base, path, sizeof(path));
	if (qcow2_read_info(path, &h, NULL, 0, NULL, NULL, 0, NULL, err,
	    sizeof(err)) < 0)
		return errno = EINVAL, -1;
	partial_path(name, partial, sizeof(partial));
	snprintf(size, sizeof(size), "%llu", (unsigned long long)(bytes ?
	    bytes : h.size));
	snprintf(backing, sizeof(backing), "%s.qcow2", base);
	char *argv[] = { vmgrd->qemu_img, "create", "-q", "-f", "qcow2", "-u",
	    "-b", backing, "-F", "qcow2", partial, size, NULL };
	return make_run(name, argv, NULL, 0, 0, cb, arg);
}

int
volume_make_convert(const char *name, const char *src, const int *fds,
    int nfds, int flags, volume_made_cb cb, void *arg)
{
	char partial[PATH_MAX + 16];

	partial_path(name, partial, sizeof(partial));
	char *argv[] = { vmgrd->qemu_img, "convert", "-q", "-O", "qcow2",
	    (char *)src, partial, NULL };
	return make_run(name, argv, fds, nfds, flags, cb, arg);
}

int
volume_check(const char *name, char *err, size_t errlen)
{
	char path[PATH_MAX], base[SPEC_NAME_MAX + 8], why[256];
	struct qcow2_header h;

	volume_path(name, path, sizeof(path));
	if (qcow2_read_info(path, &h, NULL, 0, NULL, NULL, 0, NULL, why,
	    sizeof(why)) < 0) {
		snprintf(err, errlen, "%s", why);
		return -1;
	}
	/* A clone's backing file is another volume, by its plain name. */
	if (h.backing[0] && backing_volume(&h, base, sizeof(base)) < 0) {
		snprintf(err, errlen, "volume %s has the backing file \"%.200s\", "
		    "which is not a volume of the pool", name, h.backing);
		return -1;
	}
	return img_check(path, h.backing[0] ? h.backing : NULL, err, errlen);
}

char *
volume_json_name(const char *name)
{
	char path[PATH_MAX];
	const char *chain[] = { path, NULL };

	volume_path(name, path, sizeof(path));
	return img_json("qcow2", chain);
}

/* ---- API ---------------------------------------------------------------- */

/* clones: how many linked clones v has, or -1 to count them here. */
static json_t *
volume_json(const struct volume *v, int clones)
{
	char path[PATH_MAX], base[SPEC_NAME_MAX + 8], err[256], first[80];
	struct qcow2_header h;
	struct stat st;
	const char *user = volume_user(v->name);
	json_t *o;

	volume_path(v->name, path, sizeof(path));
	o = json_pack("{s:s, s:s, s:o, s:o, s:I}", "name", v->name, "path",
	    path, "used_by", user ? json_string(user) : json_null(), "owner",
	    v->owner[0] ? json_string(v->owner) : json_null(), "created_at",
	    (json_int_t)v->created_at);
	if (stat(path, &st) == 0)
		json_object_set_new(o, "allocated_bytes",
		    json_integer((json_int_t)st.st_blocks * 512));
	if (qcow2_read_info(path, &h, NULL, 0, NULL, NULL, 0, NULL, err,
	    sizeof(err)) < 0) {
		json_object_set_new(o, "error", json_string(err));
		return o;
	}
	json_object_set_new(o, "size_bytes", json_integer((json_int_t)h.size));
	json_object_set_new(o, "format", json_string("qcow2"));
	json_object_set_new(o, "backing", backing_volume(&h, base,
	    sizeof(base)) == 0 ? json_string(base) : h.backing[0] ?
	    json_string(h.backing) : json_null());
	json_object_set_new(o, "snapshots", json_integer(h.nb_snapshots));
	if (clones < 0)
		clones = volume_clones(v->name, first, sizeof(first));
	json_object_set_new(o, "clones", json_integer(clones));
	json_object_set_new(o, "read_only", json_boolean(clones > 0));
	return o;
}

int
volume_api_list(struct api_call *c)
{
	json_t *arr = json_array(), *bases = json_object();
	char path[PATH_MAX], base[SPEC_NAME_MAX + 8], err[256];
	struct qcow2_header h;
	struct volume *v;

	/* Each header once for the clone counts, not once per pair. */
	TAILQ_FOREACH(v, &volumes, entry) {
		if (v->reserved) {	/* a clone being made counts */
			if (v->from[0])
				json_object_set_new(bases, v->from, json_integer(
				    json_integer_value(json_object_get(bases,
				    v->from)) + 1));
			continue;
		}
		volume_path(v->name, path, sizeof(path));
		if (qcow2_read_info(path, &h, NULL, 0, NULL, NULL, 0, NULL, err,
		    sizeof(err)) == 0 && backing_volume(&h, base,
		    sizeof(base)) == 0)
			json_object_set_new(bases, base, json_integer(
			    json_integer_value(json_object_get(bases, base)) + 1));
	}
	/* One being made is not listed until it is whole. */
	TAILQ_FOREACH(v, &volumes, entry)
		if (!v->reserved)
			json_array_append_new(arr, volume_json(v, (int)
			    json_integer_value(json_object_get(bases, v->name))));
	json_decref(bases);
	return api_ok(c, 200, arr);
}

/* The volume the call names, or NULL with a 404. */
static struct volume *
find_or_404(struct api_call *c, const char *name)
{
	struct volume *v = volume_find(name);

	if (v == NULL)
		api_err(&c->err, 404, "no_such_volume", "no volume named "
		    "\"%s\"", name);
	return v;
}

int
volume_api_get(struct api_call *c)
{
	struct volume *v = find_or_404(c, c->route.arg[0]);

	if (v == NULL)
		return API_FAIL;
	return api_ok(c, 200, volume_json(v, -1));
}

/* A request on a volume answered when qemu-img or QEMU is done. */
struct vol_req {
	struct parked	*p;		/* or NULL: nobody waits */
	char		 name[SPEC_NAME_MAX + 1];
	volume_then_cb	 then;		/* an import for the image catalog */
	void		*then_arg;
};

/* A failed request: its caller hears why; then() learns that it failed. */
static void
vol_req_fail(struct vol_req *r, int status, const char *code,
    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void
vol_req_fail(struct vol_req *r, int status, const char *code,
    const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (r->p)
		api_answer_error(r->p, status, code, "%s", msg);
	if (r->then)
		r->then(NULL, r->name, msg, r->then_arg);
}

/* The call parked on name; NULL with a 500 when out of memory. */
static struct vol_req *
vol_req_new(struct api_call *c, const char *name)
{
	struct vol_req *r;

	if ((r = calloc(1, sizeof(*r))) == NULL ||
	    (r->p = api_park(c->req, 0)) == NULL) {
		free(r);
		api_err(&c->err, 500, "no_memory", "out of memory");
		return NULL;
	}
	snprintf(r->name, sizeof(r->name), "%s", name);
	return r;
}

static void
create_done(const char *error, int no_space, void *arg)
{
	struct vol_req *r = arg;
	struct volume *v;

	if (error) {
		volume_unreserve(r->name);
		vol_req_fail(r, no_space ? 507 : 422, no_space ?
		    "no_space" : "qemu_img", "cannot make volume %s: %s",
		    r->name, error);
	} else if (volume_register(r->name, NULL) < 0) {
		char path[PATH_MAX];
		volume_unreserve(r->name);
		volume_path(r->name, path, sizeof(path));
		unlink(path);
		vol_req_fail(r, db_full(vmgrd->db) ? 507 : 500,
		    "database", "cannot record volume %s: %s", r->name,
		    db_errmsg(vmgrd->db));
	} else if (r->then) {
		log_info("volume %s: imported", r->name);
		r->then(r->p, r->name, NULL, r->then_arg);
	} else {
		v = volume_find(r->name);
		log_info("volume %s: made", r->name);
		api_answer(r->p, 201, volume_json(v, -1));
	}
	free(r);
}

/*
 * An import: the source is opened once, by vmgrd.  A raw image is
 * converted straight from that descriptor (raw names no other file).  A
 * qcow2 image is first copied, byte for byte, into a file only root can
 * write (NAME.qcow2.import); that copy's header is checked, and qemu-img
 * converts the copy alone: a source changed after the check cannot slip
 * a backing or data file past it.
 */
struct import {
	struct vol_req	*r;
	int		 fd;		/* the source */
	char		 copy[PATH_MAX + 16];	/* "" for a raw source */
};

static void
import_free(struct import *im)
{
	if (im->fd >= 0)
		close(im->fd);
	if (im->copy[0])
		unlink(im->copy);
	free(im);
}

static void
import_done(const char *error, int no_space, void *arg)
{
	struct import *im = arg;

	create_done(error, no_space, im->r);
	im->r = NULL;
	import_free(im);
}

/* The copy is whole: check it, then convert it and only it. */
static void
import_copied(int status, const char *output, void *arg)
{
	struct import *im = arg;
	const char *chain[] = { im->copy, NULL };
	char err[512], *src;

	if (status != 0) {
		snprintf(err, sizeof(err), "copy: %.400s", output);
		err[strcspn(err, "\n")] = '\0';
		import_done(err, strstr(output, "No space") != NULL, im);
		return;
	}
	if (img_check(im->copy, NULL, err, sizeof(err)) < 0) {
		volume_unreserve(im->r->name);
		vol_req_fail(im->r, 422, "unsafe_image", "cannot "
		    "import %s: %s", im->r->name, err);
		free(im->r);
		im->r = NULL;
		import_free(im);
		return;
	}
	if ((src = img_json("qcow2", chain)) == NULL ||
	    volume_make_convert(im->r->name, src, NULL, 0, 0, import_done,
	    im) < 0)
		import_done("cannot run qemu-img", 0, im);
	free(src);
}

/* Check the source's header, from the descriptor that will be read. */
static int
import_check(struct api_err *e, const char *path, int fd, int *qcow2)
{
	static uint8_t buf[65536];
	struct qcow2_header h;
	char err[400];
	ssize_t n;

	if ((n = pread(fd, buf, sizeof(buf), 0)) < 0)
		return api_err(e, 422, "missing_file", "%s: %s", path,
		    strerror(errno));
	/* The format is ours to name: a raw file is never probed as qcow2. */
	*qcow2 = n >= 4 && memcmp(buf, "QFI\xfb", 4) == 0;
	if (!*qcow2)
		return 0;
	if (qcow2_parse_header(buf, (size_t)n, &h, err, sizeof(err)) < 0)
		return api_err(e, 422, "bad_image", "%s: %s", path, err);
	/* A backing file could name any file on the host: refuse. */
	if (h.backing[0])
		return api_err(e, 422, "has_backing_file", "%s has the backing "
		    "file %s; flatten it first (qemu-img convert)", path,
		    h.backing);
	if (qcow2_plain(&h, err, sizeof(err)) < 0)
		return api_err(e, 422, "unsafe_image", "cannot import %s: %s",
		    path, err);
	return 0;
}

/*
 * Import the open file fd (checked by import_check) as volume name; p is
 * answered when it is whole (or NULL), then() told if set.  Takes fd.
 */
static int
import_start(const char *name, int fd, int qcow2, struct parked *p,
    volume_then_cb then, void *arg, struct api_err *e)
{
	struct import *im;
	int rc;

	if ((im = calloc(1, sizeof(*im))) == NULL ||
	    (im->r = calloc(1, sizeof(*im->r))) == NULL) {
		free(im);
		close(fd);
		return api_err(e, 500, "no_memory", "out of memory");
	}
	im->fd = fd;
	if (volume_reserve(name, NULL) < 0) {
		free(im->r);
		im->r = NULL;
		import_free(im);
		return api_err(e, 409, "volume_exists", "volume \"%s\" "
		    "already exists", name);
	}
	im->r->p = p;
	im->r->then = then;
	im->r->then_arg = arg;
	snprintf(im->r->name, sizeof(im->r->name), "%s", name);
	if (qcow2) {
		char path[PATH_MAX];
		volume_path(name, path, sizeof(path));
		snprintf(im->copy, sizeof(im->copy), "%s.import", path);
		char *argv[] = { "cp", "--reflink=auto", "/dev/fd/3", im->copy,
		    NULL };
		rc = proc_run_fds(vmgrd->base, argv, &im->fd, 1, import_copied,
		    im);
	} else {
		const char *chain[] = { "/dev/fd/3", NULL };
		char *json = img_json("raw", chain);
		rc = json ? volume_make_convert(name, json, &im->fd, 1, 0,
		    import_done, im) : -1;
		free(json);
	}
	if (rc < 0)
		import_done("cannot run qemu-img or cp", 0, im);
	return 0;
}

/* Open and check src (an absolute path), for an import.  fd, or -1. */
static int
import_open(const char *src, int *qcow2, struct api_err *e)
{
	struct stat st;
	int fd;

	if (src[0] != '/')
		return api_err(e, 422, "invalid_value", "import needs an "
		    "absolute path");
	if ((fd = open(src, O_RDONLY | O_CLOEXEC)) < 0 || fstat(fd, &st) < 0) {
		api_err(e, 422, "missing_file", "%s: %s", src,
		    strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	if (!S_ISREG(st.st_mode)) {
		close(fd);
		return api_err(e, 422, "missing_file", "%s: not a "
		    "regular file", src);
	}
	if (import_check(e, src, fd, qcow2) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

int
volume_import(const char *name, const char *src, struct parked *p,
    volume_then_cb then, void *arg, struct api_err *e)
{
	int fd, qcow2;

	if ((fd = import_open(src, &qcow2, e)) < 0)
		return -1;
	return import_start(name, fd, qcow2, p, then, arg, e);
}

static int
volume_api_import(struct api_call *c, const char *name, const char *src)
{
	struct parked *p;
	int fd, qcow2;

	if ((fd = import_open(src, &qcow2, &c->err)) < 0)
		return API_FAIL;
	if ((p = api_park(c->req, 0)) == NULL) {
		close(fd);
		return api_err(&c->err, 500, "no_memory", "out of memory");
	}
	if (import_start(name, fd, qcow2, p, NULL, NULL, &c->err) < 0) {
		api_unpark(p);
		return API_FAIL;
	}
	return API_WAIT;
}

int
volume_api_create(struct api_call *c)
{
	static const char *const keys[] = { "name", "size_mib", "size", "from",
	    "import", NULL };
	json_t *body = c->body;
	const char *name;
	json_t *jfrom = json_object_get(body, "from");
	json_t *jimport = json_object_get(body, "import");
	const char *from = json_string_value(jfrom);
	const char *import = json_string_value(jimport);
	uint64_t size = 0;
	char path[PATH_MAX], err[256];
	struct qcow2_header h;
	struct vol_req *r;

	if (api_body_keys(&c->err, body, keys) < 0 ||
	    api_body_size(&c->err, body, &size) < 0 ||
	    api_body_name(&c->err, body, "volume name", &name) < 0)
		return API_FAIL;
	if ((jfrom && !from) || (jimport && !import))
		return api_err(&c->err, 422, "invalid_value", "from and import "
		    "must be strings");
	if ((from != NULL) + (import != NULL) > 1 || (import && size) ||
	    (!from && !import && !size))
		return api_err(&c->err, 422, "invalid_value", "give a size for "
		    "an empty volume, from (and optionally a larger size) for "
		    "a linked clone, or import");
	if (volume_exists(name))
		return api_err(&c->err, 409, "volume_exists", "volume \"%s\" "
		    "already exists", name);
	if (import)
		return volume_api_import(c, name, import);
	if (from) {
		const char *user;
		if (!spec_name_valid(from) || volume_find(from) == NULL)
			return api_err(&c->err, 404, "no_such_volume", "no "
			    "volume named \"%.64s\" to clone", from);
		/* A base must never change under its clones. */
		if ((user = volume_user(from)) != NULL)
			return api_err(&c->err, 409, "volume_in_use", "volume "
			    "%s is attached to VM %s; a base must not change "
			    "under its clones, so clone a volume no VM uses",
			    from, user);
		volume_path(from, path, sizeof(path));
		if (qcow2_read_info(path, &h, NULL, 0, NULL, NULL, 0, NULL, err,
		    sizeof(err)) < 0)
			return api_err(&c->err, 422, "bad_volume", "%s", err);
		if (size && size < h.size)
			return api_err(&c->err, 422, "too_small", "a clone "
			    "cannot be smaller than its base (%llu bytes)",
			    (unsigned long long)h.size);
	}
	/* The name is taken now: a second create of it is refused (409). */
	if (volume_reserve(name, NULL) < 0)
		return api_err(&c->err, 409, "volume_exists", "volume \"%s\" "
		    "already exists", name);
	if (from)
		snprintf(volume_any(name)->from, sizeof(volume_any(name)->from),
		    "%s", from);
	if ((r = vol_req_new(c, name)) == NULL) {
		volume_unreserve(name);
		return API_FAIL;
	}
	if ((from ? volume_make_clone(name, from, size, create_done, r) :
	    volume_make_empty(name, size, create_done, r)) < 0) {
		volume_unreserve(name);
		api_answer_error(r->p, 500, "qemu_img", "cannot run "
		    "qemu-img: %s", strerror(errno));
		free(r);
	}
	return API_WAIT;
}

/* ---- resize --------------------------------------------------------------- */

static void
resize_finish(struct vol_req *r, const char *error)
{
	struct volume *v = volume_find(r->name);

	if (v)
		v->busy = 0;
	if (error)
		api_answer_error(r->p, strstr(error, "No space") ? 507 :
		    500, "resize_failed", "cannot resize %s: %s", r->name,
		    error);
	else if (v) {
		log_info("volume %s: resized", r->name);
		api_answer(r->p, 200, volume_json(v, -1));
	} else
		api_answer_error(r->p, 404, "no_such_volume", "volume %s "
		    "went away", r->name);
	free(r);
}

static void
resized_offline(int status, const char *output, void *arg)
{
	char msg[512];

	snprintf(msg, sizeof(msg), "%.400s", output);
	msg[strcspn(msg, "\n")] = '\0';
	resize_finish(arg, status ? (msg[0] ? msg : "qemu-img failed") : NULL);
}

static void
resized_live(struct qmp *q, json_t *result, const char *error, void *arg)
{
	(void)q;
	(void)result;
	resize_finish(arg, error);
}

int
volume_api_resize(struct api_call *c)
{
	static const char *const keys[] = { "size_mib", "size", NULL };
	const char *name = c->route.arg[0];
	struct volume *v = find_or_404(c, name);
	char path[PATH_MAX], err[256], first[80];
	struct qcow2_header h;
	struct vol_req *r;
	struct vm *vm;
	uint64_t size = 0;
	const char *user;
	int disk = -1;

	if (v == NULL || api_body_keys(&c->err, c->body, keys) < 0 ||
	    api_body_size(&c->err, c->body, &size) < 0)
		return API_FAIL;
	if (size == 0)
		return api_err(&c->err, 422, "missing_field", "size (or "
		    "size_mib) is required");
	volume_path(name, path, sizeof(path));
	if (qcow2_read_info(path, &h, NULL, 0, NULL, NULL, 0, NULL, err,
	    sizeof(err)) < 0)
		return api_err(&c->err, 500, "bad_volume", "%s", err);
	if (size < h.size)
		return api_err(&c->err, 422, "shrink_refused", "%s is %llu "
		    "bytes; shrinking would cut off the guest's data, so vmgr "
		    "only grows volumes", name, (unsigned long long)h.size);
	if (volume_clones(name, first, sizeof(first)) > 0)
		return api_err(&c->err, 409, "volume_is_base", "%s is the base "
		    "of linked clones (%s) and stays read-only", name, first);
	if (v->busy)
		return api_err(&c->err, 409, "busy", "%s is being resized",
		    name);
	vm = (user = volume_user(name)) ? vm_find(user) : NULL;
	if (vm) {
		for (int i = 0; i < vm->spec.ndisks; i++)
			if (strcmp(vm->spec.disks[i].volume, name) == 0)
				disk = i;
		if (vm->busy != OP_NONE || vm->storage ||
		    vm->state == VM_SAVED || vm->state == VM_STOPPING ||
		    ((vm->state == VM_RUNNING || vm->state == VM_PAUSED) &&
		    (vm->qmp == NULL || !qmp_is_ready(vm->qmp))))
			return api_err(&c->err, 409, "vm_busy", "%s is "
			    "attached to VM %s, which is %s%s; try when it is "
			    "running or stopped", name, vm->spec.name,
			    vm_state_name(vm->state), vm->busy ? " and busy" :
			    "");
	}
	int live = vm && (vm->state == VM_RUNNING || vm->state == VM_PAUSED);
	/* A VM may have written it: plain, and then qemu-img opens it alone. */
	if (!live && volume_check(name, err, sizeof(err)) < 0)
		return api_err(&c->err, 422, "unsafe_image", "cannot resize "
		    "%s: %s", name, err);
	if ((r = vol_req_new(c, name)) == NULL)
		return API_FAIL;
	v->busy = 1;
	if (live) {
		/* In use: QEMU grows it, and the guest sees the new size. */
		char node[16];
		snprintf(node, sizeof(node), "disk%d", disk);
		qmp_command(vm->qmp, "block_resize", json_pack("{s:s, s:I}",
		    "node-name", node, "size", (json_int_t)size),
		    resized_live, r);
		return API_WAIT;
	}
	char sz[32], *json;
	if ((json = volume_json_name(name)) == NULL) {
		resize_finish(r, "out of memory");
		return API_WAIT;
	}
	snprintf(sz, sizeof(sz), "%llu", (unsigned long long)size);
	char *argv[] = { vmgrd->qemu_img, "resize", "-q", json, sz, NULL };
	if (proc_run(vmgrd->base, argv, resized_offline, r) < 0)
		resize_finish(r, strerror(errno));
	free(json);
	return API_WAIT;
}

int
volume_api_delete(struct api_call *c)
{
	const char *name = c->route.arg[0];
	struct volume *v = find_or_404(c, name);
	char first[80];
	const char *user;

	if (v == NULL)
		return API_FAIL;
	if ((user = volume_user(name)) != NULL)
		return api_err(&c->err, 409, "volume_in_use", "volume %s is "
		    "attached to VM %s; delete the VM first", name, user);
	if (volume_clones(name, first, sizeof(first)) > 0)
		return api_err(&c->err, 409, "volume_is_base", "volume %s is "
		    "the base of linked clones (%s); delete them first", name,
		    first);
	if (v->busy)
		return api_err(&c->err, 409, "busy", "%s is being resized",
		    name);
	volume_forget(name);
	log_info("volume %s: deleted", name);
	return api_ok(c, 200, json_pack("{s:s, s:b}", "name", name,
	    "deleted", 1));
}
