/*
 * image.c - the image catalog.  A disk image is the pool's volume of the
 * same name, read-only, with a row in `images` saying what its partition
 * table shows (the firmware that can boot it) and where it came from.  A
 * VM made from one gets a linked clone of it as its first disk.  Kernel
 * images (the built-in "tiny": a kernel, an initrd and a command line in
 * IMAGES_DIR/NAME/) are listed beside them and boot directly.
 *
 * An image comes in by import (a file, checked and copied as a volume
 * import is) or by build: IMAGES_DIR/build/NAME.sh makes it from the Debian
 * archive into the image cache, where it stays until the recipe changes
 * or a rebuild is asked for; the cached file is then imported.  A build
 * runs as its own process, its output in the cache's NAME.log, and is
 * watched on the loop.
 */
#include "daemon.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../lib/log.h"
#include "../lib/util.h"
#include "../qemu/proc.h"

enum image_state { IMG_READY, IMG_IMPORTING, IMG_BUILDING };

struct image {
	TAILQ_ENTRY(image)	 entry;
	char			 name[SPEC_NAME_MAX + 1];
	enum image_state	 state;
	int			 firmware;	/* PTABLE_* */
	char			 partitions[160];
	char			 source[PATH_MAX + 32];
	int64_t			 created_at;
	/* A build in flight. */
	pid_t			 pid;
	struct proc_watch	*watch;
	char			 recipe[64];
	int64_t			 started_at;
	struct parkedq		 waiters;	/* ?wait=1 */
};
TAILQ_HEAD(imageq, image);

static struct imageq images = TAILQ_HEAD_INITIALIZER(images);

static struct image *
image_any(const char *name)
{
	struct image *im;

	TAILQ_FOREACH(im, &images, entry)
		if (strcmp(im->name, name) == 0)
			return im;
	return NULL;
}

int
image_is_disk(const char *name)
{
	struct image *im = image_any(name);

	return im != NULL && im->state == IMG_READY;
}

int
image_firmware(const char *name, char *what, size_t len)
{
	struct image *im = image_any(name);

	if (im == NULL || im->state != IMG_READY)
		return -1;
	if (what)
		snprintf(what, len, "%s", im->partitions);
	return im->firmware;
}

/* A kernel image: IMAGES_DIR/NAME/vmlinuz. */
int
image_is_kernel(const char *name)
{
	char path[PATH_MAX];
	struct stat st;

	if (!spec_name_valid(name))
		return 0;
	snprintf(path, sizeof(path), "%s/%s/vmlinuz", vmgrd->images_dir,
	    name);
	return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static void
image_free(struct image *im)
{
	proc_watch_free(im->watch);
	free(im);
}

static struct image *
image_new(const char *name)
{
	struct image *im = calloc(1, sizeof(*im));

	if (im == NULL)
		return NULL;
	snprintf(im->name, sizeof(im->name), "%s", name);
	TAILQ_INIT(&im->waiters);
	return im;
}

static int
load_row(const char *name, const char *firmware, const char *partitions,
    const char *source, int64_t created_at, void *arg)
{
	struct image *im;

	(void)arg;
	if ((im = image_new(name)) == NULL)
		return -1;
	im->firmware = strcmp(firmware, "any") == 0 ? PTABLE_BIOS | PTABLE_UEFI :
	    strcmp(firmware, "bios") == 0 ? PTABLE_BIOS :
	    strcmp(firmware, "uefi") == 0 ? PTABLE_UEFI : 0;
	snprintf(im->partitions, sizeof(im->partitions), "%s", partitions);
	snprintf(im->source, sizeof(im->source), "%s", source);
	im->created_at = created_at;
	TAILQ_INSERT_TAIL(&images, im, entry);
	return 0;
}

/* At start, after the volumes: an image whose volume is gone goes too. */
int
image_load_all(void)
{
	struct image *im, *next;

	if (db_image_foreach(vmgrd->db, load_row, NULL) < 0)
		return -1;
	for (im = TAILQ_FIRST(&images); im; im = next) {
		next = TAILQ_NEXT(im, entry);
		if (volume_exists(im->name))
			continue;
		log_warnx("image %s: its volume is gone; forgetting it",
		    im->name);
		db_image_delete(vmgrd->db, im->name);
		TAILQ_REMOVE(&images, im, entry);
		image_free(im);
	}
	return 0;
}

/* ---- JSON ---------------------------------------------------------------- */

/* The VMs whose disks are clones of the image. */
static json_t *
users_json(const char *name)
{
	json_t *arr = json_array();
	struct vm *vm;

	TAILQ_FOREACH(vm, &vmgrd->vms, entry)
		for (int i = 0; i < vm->spec.ndisks; i++)
			if (strcmp(vm->spec.disks[i].image, name) == 0) {
				json_array_append_new(arr, json_string(
				    vm->spec.name));
				break;
			}
	return arr;
}

/* The last "step N/M: ..." line of a build's log. */
static void
build_progress(const struct image *im, char *buf, size_t len)
{
	char path[PATH_MAX];
	char *text, *line, *save = NULL;

	buf[0] = '\0';
	snprintf(path, sizeof(path), "%s/%s.log", vmgrd->image_cache, im->name);
	if ((text = read_file(path, 1 << 20, NULL)) == NULL)
		return;
	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL,
	    "\n", &save))
		if (strncmp(line, "step ", 5) == 0 || strncmp(line, "done:",
		    5) == 0)
			snprintf(buf, len, "%s", line);
	free(text);
}

static json_t *
disk_image_json(const struct image *im)
{
	static const char *const states[] = { "ready", "importing",
	    "building" };
	char path[PATH_MAX], err[256], progress[256];
	struct qcow2_header h;
	struct stat st;
	json_t *o;

	o = json_pack("{s:s, s:s, s:s}", "name", im->name, "type", "disk",
	    "state", states[im->state]);
	if (im->state == IMG_BUILDING) {
		build_progress(im, progress, sizeof(progress));
		json_object_set_new(o, "progress", json_string(progress));
		json_object_set_new(o, "started_at", json_integer(
		    im->started_at));
		return o;
	}
	if (im->state != IMG_READY)
		return o;
	volume_path(im->name, path, sizeof(path));
	json_object_set_new(o, "format", json_string("qcow2"));
	json_object_set_new(o, "path", json_string(path));
	if (qcow2_read_info(path, &h, NULL, 0, NULL, NULL, 0, NULL, err,
	    sizeof(err)) == 0)
		json_object_set_new(o, "size_bytes", json_integer(
		    (json_int_t)h.size));
	if (stat(path, &st) == 0)
		json_object_set_new(o, "allocated_bytes", json_integer(
		    (json_int_t)st.st_blocks * 512));
	json_object_set_new(o, "firmware", json_string(ptable_firmware_name(
	    im->firmware)));
	json_object_set_new(o, "partitions", json_string(im->partitions));
	json_object_set_new(o, "source", json_string(im->source));
	json_object_set_new(o, "created_at", json_integer(im->created_at));
	json_object_set_new(o, "used_by", users_json(im->name));
	return o;
}

static json_t *
kernel_image_json(const char *name)
{
	char dir[PATH_MAX], path[PATH_MAX + 16];
	struct stat st;
	json_int_t size = 0;
	json_t *o;

	snprintf(dir, sizeof(dir), "%s/%s", vmgrd->images_dir, name);
	o = json_pack("{s:s, s:s, s:s, s:s, s:s}", "name", name, "type",
	    "kernel", "state", "ready", "firmware", "kernel", "path", dir);
	const char *files[] = { "vmlinuz", "initrd.img" };
	for (int i = 0; i < 2; i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
		if (stat(path, &st) == 0)
			size += st.st_size;
	}
	json_object_set_new(o, "size_bytes", json_integer(size));
	json_object_set_new(o, "source", json_string("built in"));
	json_object_set_new(o, "used_by", json_array());
	struct vm *vm;
	TAILQ_FOREACH(vm, &vmgrd->vms, entry)
		if (strcmp(vm->spec.image, name) == 0)
			json_array_append_new(json_object_get(o, "used_by"),
			    json_string(vm->spec.name));
	return o;
}

int
image_api_list(struct api_call *c)
{
	json_t *arr = json_array();
	struct image *im;
	struct dirent *de;
	DIR *d;

	if ((d = opendir(vmgrd->images_dir)) != NULL) {
		while ((de = readdir(d)) != NULL)
			if (de->d_name[0] != '.' && image_is_kernel(de->d_name))
				json_array_append_new(arr, kernel_image_json(
				    de->d_name));
		closedir(d);
	}
	TAILQ_FOREACH(im, &images, entry)
		json_array_append_new(arr, disk_image_json(im));
	return api_ok(c, 200, arr);
}

int
image_api_get(struct api_call *c)
{
	const char *name = c->route.arg[0];
	struct image *im = image_any(name);

	if (im)
		return api_ok(c, 200, disk_image_json(im));
	if (image_is_kernel(name))
		return api_ok(c, 200, kernel_image_json(name));
	return api_err(&c->err, 404, "no_such_image", "no image named \"%s\" "
	    "(vmgr image list shows them)", name);
}

/* ---- import ----------------------------------------------------------- */

static void
answer_all(struct image *im, int status, json_t *body, const char *code,
    const char *msg)
{
	struct parked *p;

	while ((p = TAILQ_FIRST(&im->waiters)) != NULL) {
		TAILQ_REMOVE(&im->waiters, p, owner);
		if (body)
			api_answer(p, status, json_incref(body));
		else
			api_answer_error(p, status, code ? code : "error", "%s", msg ? msg : "");
	}
	json_decref(body);
}

static void
image_drop(struct image *im)
{
	TAILQ_REMOVE(&images, im, entry);
	image_free(im);
}

/*
 * The image's volume is whole: read its partition table, record it.  p is
 * the import's caller (or NULL for a build, whose waiters are im's).
 */
static void
imported(struct parked *p, const char *name, const char *error, void *arg)
{
	struct image *im = arg;
	uint8_t *buf = NULL;
	char path[PATH_MAX], err[256];
	json_t *o;

	if (error) {
		log_warnx("image %s: %s", name, error);
		answer_all(im, 422, NULL, "import_failed", error);
		image_drop(im);
		return;
	}
	volume_path(name, path, sizeof(path));
	if ((buf = calloc(1, PTABLE_BYTES)) == NULL ||
	    img_read_start(path, buf, PTABLE_BYTES, err, sizeof(err)) < 0) {
		snprintf(im->partitions, sizeof(im->partitions),
		    "unreadable: %.140s", buf ? err : "out of memory");
		im->firmware = 0;
	} else
		im->firmware = ptable_firmware(buf, PTABLE_BYTES, im->partitions,
		    sizeof(im->partitions));
	free(buf);
	im->created_at = now_unix_ms();
	if (db_image_insert(vmgrd->db, name, ptable_firmware_name(im->firmware),
	    im->partitions, im->source, im->created_at) < 0) {
		char msg[512];
		snprintf(msg, sizeof(msg), "cannot record image %s: %s", name,
		    db_errmsg(vmgrd->db));
		volume_forget(name);
		if (p)
			api_answer_error(p, db_full(vmgrd->db) ? 507 : 500,
			    "database", "%s", msg);
		answer_all(im, 500, NULL, "database", msg);
		image_drop(im);
		return;
	}
	im->state = IMG_READY;
	log_info("image %s: ready (%s; firmware %s)", name, im->partitions,
	    ptable_firmware_name(im->firmware));
	o = disk_image_json(im);
	if (p)
		api_answer(p, 201, json_incref(o));
	answer_all(im, 201, o, NULL, NULL);
}

/* Import src as image name; p answered when done, or im's waiters. */
static int
import_as(struct image *im, const char *src, struct parked *p,
    struct api_err *e)
{
	im->state = IMG_IMPORTING;
	return volume_import(im->name, src, p, imported, im, e);
}

/* ---- build ------------------------------------------------------------ */

/* The recipe's scripts: IMAGES_DIR/build/RECIPE.sh and RECIPE-*.sh. */
static int
recipe_path(const char *recipe, char *path, size_t len)
{
	struct stat st;

	if (!spec_name_valid(recipe))
		return -1;
	snprintf(path, len, "%s/build/%s.sh", vmgrd->images_dir, recipe);
	return stat(path, &st) == 0 && S_ISREG(st.st_mode) ? 0 : -1;
}

/* A hash of the recipe's scripts: a cached image of another is stale. */
static uint64_t
recipe_hash(const char *recipe)
{
	char dir[PATH_MAX], path[PATH_MAX + 300];
	uint64_t h = FNV1A64_INIT;
	struct dirent **names;
	size_t rlen = strlen(recipe);
	int n;

	snprintf(dir, sizeof(dir), "%s/build", vmgrd->images_dir);
	if ((n = scandir(dir, &names, NULL, alphasort)) < 0)
		return 0;
	for (int i = 0; i < n; i++) {
		const char *f = names[i]->d_name;
		if (strncmp(f, recipe, rlen) == 0 && (f[rlen] == '.' ||
		    f[rlen] == '-')) {
			char *text;
			size_t len = 0;
			snprintf(path, sizeof(path), "%s/%s", dir, f);
			if ((text = read_file(path, 1 << 20, &len)) != NULL) {
				h = fnv1a64(h, text, len);
				free(text);
			}
		}
		free(names[i]);
	}
	free(names);
	return h;
}

static void
cache_paths(const char *name, char *img, char *stamp, size_t len)
{
	snprintf(img, len, "%s/%s.qcow2", vmgrd->image_cache, name);
	snprintf(stamp, len, "%s/%s.recipe", vmgrd->image_cache, name);
}

/* The cached image of recipe, when it was built from the same scripts. */
static int
cache_valid(const char *name, const char *recipe)
{
	char img[PATH_MAX], stamp[PATH_MAX], want[96], *have;
	struct stat st;
	int ok;

	cache_paths(name, img, stamp, sizeof(img));
	if (stat(img, &st) < 0 || (have = read_file(stamp, 256, NULL)) == NULL)
		return 0;
	snprintf(want, sizeof(want), "%s %016llx\n", recipe,
	    (unsigned long long)recipe_hash(recipe));
	ok = strcmp(have, want) == 0;
	free(have);
	return ok;
}

static void
built(pid_t pid, int status, void *arg)
{
	struct image *im = arg;
	char img[PATH_MAX], stamp[PATH_MAX], why[128], line[256], text[96];
	struct api_err e;

	(void)pid;
	im->pid = 0;
	proc_watch_free(im->watch);
	im->watch = NULL;
	cache_paths(im->name, img, stamp, sizeof(img));
	if (status != 0) {
		build_progress(im, line, sizeof(line));
		snprintf(text, sizeof(text), "%s", proc_status_str(status, why,
		    sizeof(why)));
		log_warnx("image %s: the build failed (%s) at \"%s\"; see %s/%s"
		    ".log", im->name, text, line, vmgrd->image_cache, im->name);
		char msg[900];
		snprintf(msg, sizeof(msg), "the build of %s failed (%s) at "
		    "\"%.200s\"; its log is %.300s/%s.log", im->name, text,
		    line, vmgrd->image_cache, im->name);
		volume_unreserve(im->name);
		answer_all(im, 500, NULL, "build_failed", msg);
		image_drop(im);
		return;
	}
	snprintf(text, sizeof(text), "%s %016llx\n", im->recipe,
	    (unsigned long long)recipe_hash(im->recipe));
	if (write_file_atomic(stamp, text, strlen(text), 0600) < 0)
		log_warn("image %s: %s", im->name, stamp);
	log_info("image %s: built in %.1f s; importing it", im->name,
	    (now_unix_ms() - im->started_at) / 1000.0);
	volume_unreserve(im->name);
	snprintf(im->source, sizeof(im->source), "build %s", im->recipe);
	if (import_as(im, img, NULL, &e) < 0) {
		answer_all(im, e.status, NULL, e.code, e.msg);
		image_drop(im);
	}
}

static int
build_start(struct image *im, const char *recipe, struct api_err *e)
{
	char script[PATH_MAX], img[PATH_MAX], stamp[PATH_MAX], log[PATH_MAX];

	if (recipe_path(recipe, script, sizeof(script)) < 0)
		return api_err(e, 422, "unknown_recipe", "no recipe \"%s\" to "
		    "build (there is %s/build/debian-12.sh)", recipe,
		    vmgrd->images_dir);
	if (mkdir_p(vmgrd->image_cache, 0700) < 0)
		return api_err(e, 500, "cache", "%s: %s", vmgrd->image_cache,
		    strerror(errno));
	cache_paths(im->name, img, stamp, sizeof(img));
	snprintf(log, sizeof(log), "%s/%s.log", vmgrd->image_cache, im->name);
	unlink(log);
	unlink(stamp);
	char *argv[] = { "/bin/sh", script, img, NULL };
	struct proc_spawn sp = { .argv = argv, .logpath = log };
	if ((im->pid = proc_spawn_detached(&sp)) < 0 ||
	    (im->watch = proc_watch_new(vmgrd->base, im->pid, built,
	    im)) == NULL) {
		if (im->pid > 0)
			kill(im->pid, SIGTERM);
		return api_err(e, 500, "spawn", "cannot run %s: %s", script,
		    strerror(errno));
	}
	snprintf(im->recipe, sizeof(im->recipe), "%s", recipe);
	im->state = IMG_BUILDING;
	im->started_at = now_unix_ms();
	log_info("image %s: building with %s (pid %d)", im->name, script,
	    (int)im->pid);
	return 0;
}

/* ---- create, delete ---------------------------------------------------- */

/* The name is free for a new image: 0, or -1 with e. */
static int
name_free(const char *name, struct api_err *e)
{
	if (image_any(name) || image_is_kernel(name))
		return api_err(e, 409, "exists", "an image named \"%s\" "
		    "already exists", name);
	if (volume_exists(name))
		return api_err(e, 409, "volume_exists", "a volume named \"%s\" "
		    "exists; an image is the pool's volume of its name, so "
		    "pick another name", name);
	return 0;
}

/*
 * The call waits for the import of src as im.  im is listed first: the
 * import may end (and drop it) before volume_import returns.
 */
static int
import_call(struct api_call *c, struct image *im, const char *src)
{
	struct parked *p = api_park(c->req, 0);

	if (p == NULL) {
		image_free(im);
		return api_err(&c->err, 500, "no_memory", "out of memory");
	}
	TAILQ_INSERT_TAIL(&images, im, entry);
	if (import_as(im, src, p, &c->err) < 0) {
		api_unpark(p);
		image_drop(im);
		return API_FAIL;
	}
	return API_WAIT;
}

int
image_api_create(struct api_call *c)
{
	static const char *const keys[] = { "name", "import", "build",
	    "rebuild", NULL };
	const char *name, *import, *build;
	json_t *body = c->body;
	struct image *im;
	long long wait = 0;
	int rebuild;

	if (api_body_keys(&c->err, body, keys) < 0 ||
	    api_body_name(&c->err, body, "image name", &name) < 0 ||
	    api_query_int(&c->err, &c->query, "wait", 0, 1, &wait) < 0)
		return API_FAIL;
	import = json_string_value(json_object_get(body, "import"));
	build = json_string_value(json_object_get(body, "build"));
	rebuild = json_is_true(json_object_get(body, "rebuild"));
	if ((json_object_get(body, "import") && !import) ||
	    (json_object_get(body, "build") && !build) ||
	    (json_object_get(body, "rebuild") && !json_is_boolean(
	    json_object_get(body, "rebuild"))))
		return api_err(&c->err, 422, "invalid_value", "import is a "
		    "path, build a recipe's name, rebuild true or false");
	if ((import != NULL) == (build != NULL))
		return api_err(&c->err, 422, "invalid_value", "give import (a "
		    "file's absolute path) or build (a recipe: debian-12)");
	if (name_free(name, &c->err) < 0)
		return API_FAIL;
	if ((im = image_new(name)) == NULL)
		return api_err(&c->err, 500, "no_memory", "out of memory");

	if (import) {
		snprintf(im->source, sizeof(im->source), "import %s", import);
		return import_call(c, im, import);
	}

	char img[PATH_MAX], stamp[PATH_MAX];
	cache_paths(name, img, stamp, sizeof(img));
	if (!rebuild && cache_valid(name, build)) {
		snprintf(im->source, sizeof(im->source), "build %s (cached)",
		    build);
		log_info("image %s: the cached build %s is current", name, img);
		return import_call(c, im, img);
	}
	/* The name is taken while the build runs. */
	if (volume_reserve(name, NULL) < 0) {
		image_free(im);
		return api_err(&c->err, 409, "volume_exists", "volume \"%s\" "
		    "already exists", name);
	}
	if (build_start(im, build, &c->err) < 0) {
		volume_unreserve(name);
		image_free(im);
		return API_FAIL;
	}
	TAILQ_INSERT_TAIL(&images, im, entry);
	if (wait) {
		struct parked *p = api_park(c->req, 0);
		if (p == NULL)
			return api_err(&c->err, 500, "no_memory", "out of "
			    "memory");
		TAILQ_INSERT_TAIL(&im->waiters, p, owner);
		return API_WAIT;
	}
	return api_ok(c, 202, disk_image_json(im));
}

int
image_api_delete(struct api_call *c)
{
	const char *name = c->route.arg[0];
	struct image *im = image_any(name);
	char first[80];
	json_t *users;

	if (im == NULL) {
		if (image_is_kernel(name))
			return api_err(&c->err, 409, "builtin_image", "%s is a "
			    "kernel image installed with vmgr (%s/%s); it is "
			    "not deleted through the API", name,
			    vmgrd->images_dir, name);
		return api_err(&c->err, 404, "no_such_image", "no image named "
		    "\"%s\"", name);
	}
	if (im->state == IMG_IMPORTING)
		return api_err(&c->err, 409, "busy", "image %s is being "
		    "imported", name);
	if (im->state == IMG_BUILDING) {
		/* Deleting a build in flight cancels it. */
		kill(-im->pid, SIGTERM);
		kill(im->pid, SIGTERM);
		proc_watch_free(im->watch);
		im->watch = NULL;
		volume_unreserve(name);
		answer_all(im, 409, NULL, "cancelled", "the build was cancelled "
		    "by a delete");
		log_info("image %s: build cancelled", name);
		image_drop(im);
		return api_ok(c, 200, json_pack("{s:s, s:s}", "name", name,
		    "state", "deleted"));
	}
	users = users_json(name);
	if (json_array_size(users) > 0 || volume_clones(name, first,
	    sizeof(first)) > 0) {
		char list[512] = "";
		size_t i;
		json_t *u;
		json_array_foreach(users, i, u)
			snprintf(list + strlen(list), sizeof(list) - strlen(list),
			    "%s%s", i ? ", " : "", json_string_value(u));
		json_decref(users);
		return api_err(&c->err, 409, "image_in_use", "image %s is the "
		    "base of the disks of %s; delete those first", name,
		    list[0] ? list : first);
	}
	json_decref(users);
	if (db_image_delete(vmgrd->db, name) < 0)
		return api_err(&c->err, 500, "database", "%s",
		    db_errmsg(vmgrd->db));
	volume_forget(name);
	log_info("image %s: deleted", name);
	image_drop(im);
	return api_ok(c, 200, json_pack("{s:s, s:s}", "name", name, "state",
	    "deleted"));
}
