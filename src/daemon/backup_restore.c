/*
 * backup_restore.c - make a new VM from a backup, or put its disks back
 * under an existing stopped VM: the chain is verified first, then
 * flattened by qemu-img convert into fresh volumes.
 */
#include "backup_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../lib/log.h"
#include "../lib/util.h"

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

/* The backup's UEFI variables become the VM's own. */
static void
restore_vars(struct vjob *vj, struct vm *vm)
{
	char err[512];

	if (vm == NULL || !json_object_get(vj->manifest, "firmware_vars"))
		return;
	if (firmware_vars_restore(vm, vj->b->dir, err, sizeof(err)) < 0)
		log_warnx("%s: UEFI variables of backup %lld: %s", vm->spec.name,
		    (long long)vj->b->id, err);
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
		restore_vars(vj, vm);
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
	/* Disk 0 was a clone of an image: now a whole disk of its own. */
	if (json_object_get(json_array_get(json_object_get(spec, "disks"), 0),
	    "image"))
		json_object_del(spec, "image");
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
	struct api_err err;
	log_info("%s: restoring backup %lld as a new VM", vj->as,
	    (long long)vj->b->id);
	/* The client hears of the VM's making: 201 with the VM, or why not. */
	if (vm_create(spec, vj->p, &err) < 0)
		api_answer_err(vj->p, &err);
	vj->p = NULL;
	json_decref(spec);
	restore_vars(vj, vm_find(vj->as));
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
	    vm->state != VM_CRASHED) || vm->busy || vm->storage)) {
		restore_fail(vj, 409, "invalid_state", "the VM changed state "
		    "meanwhile");
		return;
	}
	if (!vj->in_place && vm_find_any(vj->as)) {
		restore_fail(vj, 409, "exists", "a VM of that name appeared");
		return;
	}
	json_t *vars = json_object_get(vj->manifest, "firmware_vars");
	char err[512];
	if (vars && firmware_vars_check(vars, vj->b->dir, err, sizeof(err)) <
	    0) {
		restore_fail(vj, 422, "backup_damaged", err);
		return;
	}
	if (vm) {
		vm->storage = STORAGE_RESTORE;
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

int
backup_api_restore(struct api_call *c)
{
	static const char *const keys[] = { "as", NULL };
	struct backup *b = c->backup;
	json_t *body = c->body;
	const char *as = json_string_value(json_object_get(body, "as"));
	struct vjob *vj;
	struct vm *vm;

	if (api_body_keys(&c->err, body, keys) < 0)
		return API_FAIL;
	if (json_object_get(body, "as") && (as == NULL ||
	    !spec_name_valid(as)))
		return api_err(&c->err, 422, "invalid_name", "as must be a "
		    "valid VM name");
	if (as == NULL)
		as = b->vm;
	if ((vm = vm_find_any(as)) != NULL) {
		if (vm->state != VM_CREATED && vm->state != VM_CRASHED)
			return api_err(&c->err, 409, "invalid_state", "%s is "
			    "%s; restoring replaces its disks, so stop it "
			    "first (or restore under another name with --as)",
			    as, vm_state_name(vm->state));
		if (vm->busy || vm->storage || vm_has(vm, VMF_CREATING))
			return api_err(&c->err, 409, "busy", "%s is busy", as);
	}
	if ((vj = vjob_new(b, &c->err)) == NULL)
		return API_FAIL;
	vj->then = restore_begin;
	snprintf(vj->as, sizeof(vj->as), "%s", as);
	vj->in_place = vm != NULL;
	if (vm && vm->spec.ndisks != vj->ndisks) {
		api_err(&c->err, 409, "disks_differ", "%s has %d disks and "
		    "backup %lld has %d; restore it under another name with "
		    "--as", as, vm->spec.ndisks, (long long)b->id, vj->ndisks);
		vjob_free(vj);
		return API_FAIL;
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
			api_err(&c->err, 409, "volume_exists", "the volume %s, "
			    "which the restored VM would get, already exists",
			    vj->volumes[d]);
			vj->volumes[d][0] = '\0';
			vjob_free(vj);
			return API_FAIL;
		}
	}
	/* Their names are taken from now on: no create can claim them. */
	for (int d = 0; !vm && d < vj->ndisks; d++)
		if (volume_reserve(vj->volumes[d], as) < 0) {
			for (int k = 0; k < d; k++)
				volume_unreserve(vj->volumes[k]);
			api_err(&c->err, 409, "volume_exists", "the volume %s, "
			    "which the restored VM would get, already exists",
			    vj->volumes[d]);
			vjob_free(vj);
			return API_FAIL;
		}
	vj->reserved = !vm;
	if (vjob_park(vj, c) < 0)
		return API_FAIL;
	/* The files of b itself are the first ndisks: restore from those. */
	verify_begin(vj);
	return API_WAIT;
}
