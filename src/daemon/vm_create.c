/*
 * vm_create.c - create a VM (check the spec against the host and the
 * other VMs, make its disks off the loop, insert it), delete one, and
 * PATCH the resources and scheduling of an existing one.
 */
#include "vm_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../lib/log.h"
#include "../qemu/qmp.h"
#include "../lib/util.h"

static void
random_mac(char *buf, size_t len)
{
	unsigned char r[3];

	if (getrandom(r, sizeof(r), 0) != sizeof(r)) {
		unsigned int x = (unsigned int)now_unix_ms() ^ (unsigned)getpid();
		r[0] = x >> 16; r[1] = x >> 8; r[2] = x;
	}
	/* 52:54:00 is QEMU's locally administered prefix. */
	snprintf(buf, len, "52:54:00:%02x:%02x:%02x", r[0], r[1], r[2]);
}

/* Is mac used by another VM, or by another NIC (not `skip`) of self? */
static int
mac_in_use(const char *mac, const struct vm *self, int skip)
{
	struct vm *vm;

	TAILQ_FOREACH(vm, &vmgrd->vms, entry)
		for (int i = 0; i < vm->spec.nnics; i++)
			if (vm != self && strcasecmp(vm->spec.nics[i].mac,
			    mac) == 0)
				return 1;
	for (int i = 0; i < self->spec.nnics; i++)
		if (i != skip && strcasecmp(self->spec.nics[i].mac, mac) == 0)
			return 1;
	return 0;
}

/*
 * Undo the volumes a create was making: they are its own (it reserved
 * their names), whatever of them is there (a file, a row) goes.
 */
static void
remove_new_disks(struct vm *vm)
{
	for (int i = 0; i < vm->spec.ndisks; i++)
		if (vm->spec.disks[i].size > 0)
			volume_forget(vm->spec.disks[i].volume);
}

/* All disks are made: make the VM real, or undo everything. */
static void
create_finish(struct vm *vm)
{
	char *spec_json = NULL;
	json_t *sj;

	if (vm->create_error[0]) {
		int full = strstr(vm->create_error, "No space") != NULL;
		remove_new_disks(vm);
		vm_complete(vm, OP_CREATE, full ? 507 : 500, full ? "no_space" :
		    "qemu_img", "cannot create disk: %s", vm->create_error);
		goto drop;
	}
	sj = spec_to_json(&vm->spec);
	spec_json = json_dumps(sj, JSON_COMPACT);
	json_decref(sj);

	struct event_row row = {
		.time = vm->created_at,
		.vm = vm->spec.name,
		.from = NULL,
		.to = vm_state_name(VM_CREATED),
		.event = "create",
		.reason = vm->reason,
		.actor = "api",
	};
	/*
	 * Volume rows first: a crash before the VM's row leaves volumes
	 * owned by no VM, which the next start removes.
	 */
	for (int i = 0; i < vm->spec.ndisks; i++)
		if (vm->spec.disks[i].size > 0 && volume_register(
		    vm->spec.disks[i].volume, vm->spec.name) < 0)
			goto dberr;
	fault_point("create:after-volumes");
	if (spec_json == NULL || db_vm_insert(vmgrd->db, vm, spec_json,
	    &row) < 0)
		goto dberr;
	fault_point("create:after-insert");
	vm_set_dir(vm);
	char derr[256];
	if (priv_run_dir(vm, derr, sizeof(derr)) < 0)
		log_warnx("%s: %s", __func__, derr);
	/* Its own UEFI variables from now on (a start makes them if not). */
	if (firmware_uefi(&vm->spec) && firmware_vars_make(vm, derr,
	    sizeof(derr)) < 0)
		log_warnx("%s: %s", vm->spec.name, derr);
	free(spec_json);
	vm->flags &= ~VMF_CREATING;
	vm->busy = OP_NONE;
	log_info("%s: created", vm->spec.name);
	events_publish(&row);
	net_hosts_changed();
	vm_complete(vm, OP_CREATE, 201, NULL, NULL);
	return;
dberr:
	if (db_full(vmgrd->db))
		vm_complete(vm, OP_CREATE, 507, "no_space", "the state dir is full: "
		    "%s", db_errmsg(vmgrd->db));
	else
		vm_complete(vm, OP_CREATE, 500, "database", "%s",
		    db_errmsg(vmgrd->db));
	remove_new_disks(vm);
drop:
	free(spec_json);
	TAILQ_REMOVE(&vmgrd->vms, vm, entry);
	vm_free(vm);
}

static void
disk_made(const char *error, int no_space, void *arg)
{
	struct vm *vm = arg;

	(void)no_space;
	if (error && !vm->create_error[0])
		snprintf(vm->create_error, sizeof(vm->create_error), "%s",
		    error);
	if (--vm->ndisks_left == 0)
		create_finish(vm);
}

/* The disks: new ones not there yet, attached ones free to attach. */
static int
check_disks(const struct vm *vm, struct api_err *e)
{
	for (int i = 0; i < vm->spec.ndisks; i++) {
		const char *vol = vm->spec.disks[i].volume, *user;
		char first[80];
		if (vm->spec.disks[i].size > 0) {
			if (volume_exists(vol))
				return api_err(e, 409, "volume_exists",
				    "volume \"%s\" already exists; attach it "
				    "with {\"volume\": \"%s\"} (no size)", vol,
				    vol);
			continue;
		}
		if (!volume_exists(vol))
			return api_err(e, 422, "no_such_volume", "no volume "
			    "named \"%s\" to attach; give it a size to make "
			    "one", vol);
		if (image_is_disk(vol))
			return api_err(e, 409, "volume_is_image", "%s is an "
			    "image and stays read-only; make a clone of it with "
			    "{\"image\": \"%s\"}", vol, vol);
		if ((user = volume_user(vol)) != NULL)
			return api_err(e, 409, "volume_in_use", "volume %s is "
			    "attached to VM %s", vol, user);
		if (volume_clones(vol, first, sizeof(first)) > 0)
			return api_err(e, 409, "volume_is_base", "volume %s is "
			    "the base of linked clones (%s) and stays "
			    "read-only; attach a clone of it instead", vol,
			    first);
	}
	return 0;
}

/* The NICs: MACs of their own (made if not given), host ports free. */
static int
check_nics(struct vm *vm, struct api_err *e)
{
	for (int i = 0; i < vm->spec.nnics; i++) {
		struct spec_nic *nic = &vm->spec.nics[i];
		if (nic->mac[0] && mac_in_use(nic->mac, vm, i))
			return api_err(e, 409, "mac_in_use", "MAC %s is "
			    "already used", nic->mac);
		while (!nic->mac[0]) {
			char mac[18];
			random_mac(mac, sizeof(mac));
			if (!mac_in_use(mac, vm, -1))
				memcpy(nic->mac, mac, sizeof(mac));
		}
		for (int k = 0; k < nic->nforwards; k++) {
			const struct vm *o = vm_forward_owner(&nic->forwards[k],
			    vm);
			if (o)
				return api_err(e, 409, "port_in_use", "host "
				    "port %s %d is already forwarded to VM %s",
				    nic->forwards[k].proto,
				    nic->forwards[k].host_port, o->spec.name);
		}
	}
	return 0;
}

/* Its new volumes' names are taken from now on (the check was before). */
static int
reserve_disks(const struct vm *vm, struct api_err *e)
{
	for (int i = 0; i < vm->spec.ndisks; i++) {
		const struct spec_disk *d = &vm->spec.disks[i];
		if (d->size == 0)
			continue;
		if ((d->image[0] ? volume_reserve_clone(d->volume,
		    vm->spec.name, d->image) : volume_reserve(d->volume,
		    vm->spec.name)) < 0) {
			for (int k = 0; k < i; k++)
				if (vm->spec.disks[k].size > 0)
					volume_unreserve(
					    vm->spec.disks[k].volume);
			return api_err(e, 409, "volume_exists", "volume \"%s\" "
			    "already exists", vm->spec.disks[i].volume);
		}
	}
	return 0;
}

/*
 * Each disk cloned from an image: the image is a ready disk image, and
 * the clone at least as large.  0, or -1 with e.
 */
static int
check_clones(struct vm_spec *s, struct api_err *e)
{
	char path[PATH_MAX], err[256];
	struct qcow2_header h;

	for (int i = 0; i < s->ndisks; i++) {
		struct spec_disk *d = &s->disks[i];
		if (!d->image[0])
			continue;
		if (image_is_kernel(d->image))
			return api_err(e, 422, "invalid_value", "%s is a kernel "
			    "image: it boots directly and has no disk to clone",
			    d->image);
		if (!image_is_disk(d->image))
			return api_err(e, 422, "no_such_image", "no disk image "
			    "named \"%s\" (vmgr image list shows them; vmgr "
			    "image import or build makes one)", d->image);
		volume_path(d->image, path, sizeof(path));
		if (qcow2_read_info(path, &h, NULL, 0, NULL, NULL, 0, NULL, err,
		    sizeof(err)) < 0)
			return api_err(e, 422, "bad_image", "%s", err);
		if (d->size == 0)
			d->size = h.size;
		if (d->size < h.size)
			return api_err(e, 422, "too_small", "%s: a clone of %s "
			    "cannot be smaller than it (%llu MiB)", d->volume,
			    d->image, (unsigned long long)(h.size >> 20));
	}
	return 0;
}

/*
 * What boots it.  A kernel image or boot.kernel boots directly.  A disk
 * image gives the VM its first disk, a linked clone NAME-root, unless a
 * disk of the spec already clones it; firmware then boots it, and must be
 * one the image's partition table allows.  A VM booted by firmware gets a
 * cloud-init seed.  0, or -1 with e.
 */
static int
check_boot(struct vm *vm, struct api_err *e)
{
	struct vm_spec *s = &vm->spec;
	char what[160];
	int fw, has = 0;

	if (s->image[0] && !image_is_kernel(s->image)) {
		if (!image_is_disk(s->image))
			return api_err(e, 422, "no_such_image", "no image named "
			    "\"%s\" (vmgr image list shows them%s)", s->image,
			    strcmp(s->image, "tiny") == 0 ? "; build the built-in "
			    "one with `make guest`" : "");
		for (int i = 0; i < s->ndisks; i++)
			if (strcmp(s->disks[i].image, s->image) == 0) {
				if (i > 0)
					return api_err(e, 422, "invalid_value",
					    "disks[%d] clones the image %s: it must "
					    "be the first disk, the one that boots",
					    i, s->image);
				has = 1;
			}
		if (!has) {
			if (s->ndisks == SPEC_MAX_DISKS)
				return api_err(e, 422, "out_of_range", "at most "
				    "%d disks, with the image's", SPEC_MAX_DISKS);
			memmove(&s->disks[1], &s->disks[0], sizeof(s->disks[0]) *
			    (size_t)s->ndisks);
			memset(&s->disks[0], 0, sizeof(s->disks[0]));
			snprintf(s->disks[0].volume, sizeof(s->disks[0].volume),
			    "%.58s-root", s->name);
			snprintf(s->disks[0].image, sizeof(s->disks[0].image),
			    "%s", s->image);
			s->ndisks++;
		}
	}
	if (check_clones(s, e) < 0)
		return -1;
	if (s->kernel || (s->image[0] && image_is_kernel(s->image)))
		return 0;
	/* Firmware boots the first disk (or the cdrom). */
	fw = s->ndisks && s->disks[0].image[0] ? image_firmware(
	    s->disks[0].image, what, sizeof(what)) : PTABLE_BIOS | PTABLE_UEFI;
	if (fw == 0 && !s->cdrom)
		return api_err(e, 422, "not_bootable", "image %s cannot boot: "
		    "%s (no EFI system partition, no BIOS boot code); a VM of "
		    "it would hang in its firmware", s->disks[0].image, what);
	if (!s->firmware[0])
		snprintf(s->firmware, sizeof(s->firmware), "%s",
		    fw == PTABLE_UEFI || s->secure_boot ? "uefi" : "bios");
	if (fw && s->ndisks && s->disks[0].image[0] &&
	    !(fw & (strcmp(s->firmware, "uefi") == 0 ? PTABLE_UEFI :
	    PTABLE_BIOS)))
		return api_err(e, 422, "wrong_firmware", "image %s boots only "
		    "with %s (%s); use firmware %s", s->disks[0].image,
		    fw == PTABLE_UEFI ? "UEFI" : "a BIOS", what,
		    fw == PTABLE_UEFI ? "uefi" : "bios");
	if (strcmp(s->firmware, "uefi") == 0 && firmware_ovmf(s, NULL, NULL) <
	    0)
		return api_err(e, 422, "no_firmware", "UEFI needs OVMF (%s); "
		    "install Debian's ovmf", FIRMWARE_OVMF_DIR);
	struct stat st;
	if (s->cdrom && stat(s->cdrom, &st) < 0)
		return api_err(e, 422, "missing_file", "cdrom %s: %s", s->cdrom,
		    strerror(errno));
	if (s->cdrom && !S_ISREG(st.st_mode))
		return api_err(e, 422, "missing_file", "cdrom %s: not a regular "
		    "file", s->cdrom);
	/* A disk image's VM learns its user and addresses from a seed. */
	if (s->ndisks && s->disks[0].image[0] && s->cloud_init == NULL)
		s->cloud_init = json_object();
	return 0;
}

/* The spec of a new VM, checked against the host and the other VMs. */
static int
check_spec(struct vm *vm, json_t *body, struct api_err *e)
{
	char kernel[PATH_MAX], initrd[PATH_MAX], msg[512], *cmdline;
	struct spec_error err;
	struct alloc_vm a;

	if (spec_from_json(body, &vm->spec, &err) < 0)
		return api_err(e, err.status, err.code, "%s", err.message);
	if (vm_find_any(vm->spec.name))
		return api_err(e, 409, "exists", "a VM named \"%s\" already "
		    "exists", vm->spec.name);
	vm_to_alloc(vm, &a);
	if (alloc_fits_host(&vmgrd->cap, &a, msg, sizeof(msg)) < 0)
		return api_err(e, 422, "exceeds_capacity", "%s can never run "
		    "here: it %s", vm->spec.name, msg);
	if (check_boot(vm, e) < 0)
		return -1;
	/* A screen for what boots through firmware (installers, desktops). */
	if (!vm->spec.vnc_given) {
		vm->spec.vnc = !vm_boots_kernel(&vm->spec);
		vm->spec.vnc_given = true;
	}
	if (vm_resolve_boot(&vm->spec, kernel, initrd, &cmdline, msg,
	    sizeof(msg)) < 0)
		return api_err(e, 422, vm->spec.image[0] ? "no_such_image" :
		    "missing_file", "%s", msg);
	free(cmdline);
	if (check_disks(vm, e) < 0 || check_nics(vm, e) < 0)
		return -1;
	if (net_assign_ips(&vm->spec, msg, sizeof(msg)) < 0)
		return api_err(e, 422, "unknown_network", "%s", msg);
	if (vm->spec.cloud_init && cloudinit_check(&vm->spec, msg,
	    sizeof(msg)) < 0)
		return api_err(e, 422, "bad_cloud_init", "%s", msg);
	return 0;
}

/* qemu-img makes the new disks as child processes; the loop goes on. */
static void
make_disks(struct vm *vm)
{
	int ndisks = vm->spec.ndisks;

	vm->ndisks_left = ndisks + 1;	/* one more, dropped below */
	for (int i = 0; i < ndisks; i++) {
		if (vm->spec.disks[i].size == 0) {
			vm->ndisks_left--;
			continue;
		}
		const struct spec_disk *d = &vm->spec.disks[i];
		if ((d->image[0] ? volume_make_clone(d->volume, d->image,
		    d->size, disk_made, vm) : volume_make_empty(d->volume,
		    d->size, disk_made, vm)) < 0) {
			snprintf(vm->create_error, sizeof(vm->create_error),
			    "cannot run qemu-img: %s", strerror(errno));
			vm->ndisks_left--;
		}
	}
	if (--vm->ndisks_left == 0)
		create_finish(vm);	/* may free vm */
}

int
vm_create(json_t *body, struct parked *p, struct api_err *e)
{
	struct vm *vm = vm_new();

	if (vm == NULL)
		return api_err(e, 500, "no_memory", "out of memory");
	if (check_spec(vm, body, e) < 0 || reserve_disks(vm, e) < 0) {
		vm_free(vm);
		return -1;
	}
	vm->state = VM_CREATED;
	vm->created_at = vm->state_since = now_unix_ms();
	vm->flags |= VMF_CREATING;
	vm->busy = OP_CREATE;
	TAILQ_INSERT_TAIL(&vmgrd->vms, vm, entry);
	vm_wait(vm, p, OP_CREATE);
	if (vm->spec.ndisks == 0)
		create_finish(vm);
	else
		make_disks(vm);
	return 0;
}

int
vm_api_create(struct api_call *c)
{
	struct parked *p = api_park(c->req, OP_CREATE);

	if (p == NULL)
		return api_err(&c->err, 500, "no_memory", "out of memory");
	if (vm_create(c->body, p, &c->err) < 0) {
		api_unpark(p);
		return API_FAIL;
	}
	return API_WAIT;
}

int
vm_api_delete(struct api_call *c)
{
	struct vm *vm = c->vm;
	enum vm_state next;
	char allowed[128];

	if (vm->storage)
		return api_err(&c->err, 409, "busy", "cannot delete %s: a %s "
		    "is in progress", vm->spec.name, vm_storage_name(vm->storage));
	if (vm->busy != OP_NONE || vm_transition(vm->state, EV_DELETE,
	    &next) < 0)
		return api_err(&c->err, 409, "invalid_transition", "cannot "
		    "delete %s: it is %s%s; stop it first (%s allows: %s)",
		    vm->spec.name, vm_state_name(vm->state),
		    vm->busy ? " and busy" : "", vm_state_name(vm->state),
		    vm_allowed_events(vm->state, allowed, sizeof(allowed)));
	json_t *out = json_pack("{s:s, s:s}", "name", vm->spec.name, "state",
	    "deleted");
	if (vm_remove(vm, "delete", "") < 0) {
		json_decref(out);
		return vm_db_err(&c->err);
	}
	c->vm = NULL;
	return api_ok(c, 200, out);
}

int
vm_remove(struct vm *vm, const char *event, const char *reason)
{
	struct event_row row = {
		.time = now_unix_ms(),
		.vm = vm->spec.name,
		.from = vm_state_name(vm->state),
		.to = vm_state_name(VM_DELETED),
		.event = event,
		.reason = reason,
		.actor = "api",
	};
	if (vm->id > 0 && db_vm_delete(vmgrd->db, vm, &row) < 0)
		return -1;
	fault_point("delete:after-row");
	/*
	 * The record is gone first: a crash here leaves volumes owned by no
	 * VM, which the next start removes.  Attached volumes stay.
	 */
	for (int i = 0; i < vm->spec.ndisks; i++)
		if (volume_owned_by(vm->spec.disks[i].volume, vm->spec.name))
			volume_forget(vm->spec.disks[i].volume);
	if (vm->dir[0] && rm_rf(vm->dir) < 0)
		log_warn("%s: rm -r %s", __func__, vm->dir);
	log_info("%s: %s", vm->spec.name, strcmp(event, "delete") == 0 ?
	    "deleted" : reason);
	if (vm->id > 0)
		events_publish(&row);
	TAILQ_REMOVE(&vmgrd->vms, vm, entry);
	net_hosts_changed();	/* its MACs leave the DHCP servers */
	vm_free(vm);
	vm_changed();
	return 0;
}

/* An ejected cdrom leaves the boot order too. */
static void
drop_cdrom_boot(json_t *spec)
{
	json_t *boot = json_object_get(spec, "boot");
	json_t *order = json_object_get(boot, "order"), *d;
	size_t i;

	json_array_foreach(order, i, d)
		if (strcmp(json_string_value(d), "cdrom") == 0) {
			json_array_remove(order, i);
			break;
		}
	if (order && json_array_size(order) == 0)
		json_object_del(boot, "order");
	if (boot && json_object_size(boot) == 0)
		json_object_del(spec, "boot");
}

int
vm_api_patch(struct api_call *c)
{
	static const char *const res_keys[] = { "policy", "priority", "weight",
	    "min_memory_mib", NULL };
	static const char *const sched_keys[] = { "expected_runtime_s",
	    "preemptible", NULL };
	static const char *const top_keys[] = { "vcpus", "memory_mib", NULL };
	/* These take effect at the next boot (cdrom: null ejects at once). */
	static const char *const boot_keys[] = { "autostart", "cloud_init",
	    "cdrom", NULL };
	struct vm *vm = c->vm;
	json_t *body = c->body;
	struct vm_spec spec;
	struct spec_error err;
	struct alloc_vm a;
	const char *key;
	char msg[256], *text;
	json_t *j, *v;

	if (body == NULL || !json_is_object(body) || json_object_size(body) ==
	    0)
		return api_err(&c->err, 400, "missing_body", "PATCH needs a "
		    "JSON object of fields to change");
	j = spec_to_json(&vm->spec);
	json_object_foreach(body, key, v) {
		const char *const *k;
		json_t *dst = NULL;
		for (k = res_keys; *k && !dst; k++)
			if (strcmp(*k, key) == 0)
				dst = json_object_get(j, "resources");
		for (k = sched_keys; *k && !dst; k++)
			if (strcmp(*k, key) == 0)
				dst = json_object_get(j, "schedule");
		for (k = top_keys; *k && !dst; k++)
			if (strcmp(*k, key) == 0)
				dst = j;
		int next_boot = 0;
		for (k = boot_keys; *k && !dst; k++)
			if (strcmp(*k, key) == 0)
				dst = j, next_boot = 1;
		if (strcmp(key, "cdrom") == 0 && !json_is_null(v) &&
		    (vm->pid > 0 || vm->busy != OP_NONE)) {
			json_decref(j);
			return api_err(&c->err, 409, "vm_running", "a cdrom is "
			    "inserted while %s is stopped; a running VM's can "
			    "only be ejected (\"cdrom\": null)", vm->spec.name);
		}
		if (next_boot) {
			if (json_is_null(v))
				json_object_del(dst, key);
			else
				json_object_set(dst, key, v);
			if (strcmp(key, "cdrom") == 0 && json_is_null(v))
				drop_cdrom_boot(j);
			continue;
		}
		if (dst == NULL) {
			json_decref(j);
			return api_err(&c->err, 422, "unknown_field", "unknown "
			    "or unchangeable field \"%s\"", key);
		}
		if (dst == j && (vm->pid > 0 || vm->busy != OP_NONE ||
		    vm->state == VM_SAVED)) {
			json_decref(j);
			return api_err(&c->err, 409, "vm_running", "%s of %s "
			    "can change only while it is stopped (it is %s)",
			    key, vm->spec.name, vm_state_name(vm->state));
		}
		json_object_set(dst, key, v);
	}
	if (spec_from_json(j, &spec, &err) < 0) {
		json_decref(j);
		spec_clear(&spec);
		return api_err(&c->err, err.status, err.code, "%s",
		    err.message);
	}
	json_decref(j);
	if (spec.cloud_init && cloudinit_check(&spec, msg, sizeof(msg)) < 0) {
		spec_clear(&spec);
		return api_err(&c->err, 422, "bad_cloud_init", "%s", msg);
	}
	if (spec.cdrom && (!vm->spec.cdrom || strcmp(spec.cdrom,
	    vm->spec.cdrom) != 0) && access(spec.cdrom, R_OK) < 0) {
		int e = errno;
		spec_clear(&spec);
		return api_err(&c->err, 422, "missing_file", "cdrom %s: %s",
		    json_string_value(json_object_get(body, "cdrom")),
		    strerror(e));
	}
	/* Keep the MACs and everything else the parse does not assign. */
	memcpy(spec.nics, vm->spec.nics, sizeof(spec.nics));
	struct vm tmp = { .spec = spec };
	vm_to_alloc(&tmp, &a);
	if (alloc_fits_host(&vmgrd->cap, &a, msg, sizeof(msg)) < 0) {
		spec_clear(&spec);
		return api_err(&c->err, 422, "exceeds_capacity", "%s would "
		    "never run here: it %s", vm->spec.name, msg);
	}
	j = spec_to_json(&spec);
	text = json_dumps(j, JSON_COMPACT);
	json_decref(j);
	if (text == NULL || db_vm_update_spec(vmgrd->db, vm, text) < 0) {
		free(text);
		spec_clear(&spec);
		return vm_db_err(&c->err);
	}
	free(text);
	/* An ISO ejected under a running guest: QEMU lets go of it now. */
	if (vm->spec.cdrom && !spec.cdrom && vm->qmp)
		qmp_command(vm->qmp, "eject", json_pack("{s:s, s:b}", "id",
		    "cdrom0", "force", 1), NULL, NULL);
	spec_clear(&vm->spec);
	vm->spec = spec;
	log_info("%s: resources changed: priority %d, weight %g, policy %s",
	    vm->spec.name, spec.resources.priority, spec.resources.weight,
	    spec.resources.policy);
	vm_changed();	/* new order, new division, new cgroup limits */
	return api_ok(c, 200, vm_json(vm));
}

/* ---- a VM arriving from another host (migrate.c) */

struct incoming {
	struct vm	*vm;
	vm_made_cb	 cb;
	void		*arg;
	char		 from[128];
	unsigned	 make;	/* the disks made here, empty (a bit each) */
};

static void
incoming_fail(struct incoming *in, const char *why)
{
	struct vm *vm = in->vm;

	remove_new_disks(vm);
	TAILQ_REMOVE(&vmgrd->vms, vm, entry);
	vm_free(vm);
	in->cb(NULL, why, in->arg);
	free(in);
}

static void
incoming_disk_made(const char *error, int no_space, void *arg)
{
	struct incoming *in = arg;
	struct vm *vm = in->vm;
	char *spec_json = NULL;
	json_t *sj;

	(void)no_space;
	if (error && !vm->create_error[0])
		snprintf(vm->create_error, sizeof(vm->create_error), "%s",
		    error);
	if (--vm->ndisks_left > 0)
		return;
	if (vm->create_error[0]) {
		char why[300];
		snprintf(why, sizeof(why), "cannot make its disks: %s",
		    vm->create_error);
		incoming_fail(in, why);
		return;
	}
	struct event_row row = {
		.time = vm->created_at,
		.vm = vm->spec.name,
		.from = NULL,
		.to = vm_state_name(vm->state),
		.event = "migrate-in",
		.reason = vm->reason,
		.actor = "migration",
	};
	sj = spec_to_json(&vm->spec);
	spec_json = json_dumps(sj, JSON_COMPACT);
	json_decref(sj);
	/* The others stay reserved: their files come whole, and wait. */
	for (int i = 0; i < vm->spec.ndisks; i++)
		if ((in->make & (1u << i)) && volume_register(
		    vm->spec.disks[i].volume, vm->spec.name) < 0)
			goto dberr;
	if (spec_json == NULL || db_vm_insert(vmgrd->db, vm, spec_json,
	    &row) < 0)
		goto dberr;
	free(spec_json);
	vm_set_dir(vm);
	char derr[256];
	if (priv_run_dir(vm, derr, sizeof(derr)) < 0)
		log_warnx("%s: %s", __func__, derr);
	vm->flags &= ~VMF_CREATING;
	in->cb(vm, NULL, in->arg);
	free(in);
	return;
dberr:
	free(spec_json);
	incoming_fail(in, db_errmsg(vmgrd->db));
}

int
vm_create_incoming(json_t *body, const char *from, unsigned make,
    enum vm_state state, vm_made_cb cb, void *arg, struct api_err *e)
{
	char kernel[PATH_MAX], initrd[PATH_MAX], msg[512], *cmdline;
	struct spec_error err;
	struct incoming *in;
	struct alloc_vm a;
	struct vm *vm;

	if ((vm = vm_new()) == NULL || (in = calloc(1, sizeof(*in))) == NULL) {
		vm_free(vm);
		return api_err(e, 500, "no_memory", "out of memory");
	}
	in->vm = vm;
	in->cb = cb;
	in->arg = arg;
	in->make = make;
	snprintf(in->from, sizeof(in->from), "%s", from);
	if (spec_from_json(body, &vm->spec, &err) < 0) {
		api_err(e, err.status, err.code, "%s", err.message);
		goto fail;
	}
	if (vm_find_any(vm->spec.name)) {
		api_err(e, 409, "exists", "a VM named \"%s\" already exists "
		    "here", vm->spec.name);
		goto fail;
	}
	vm_to_alloc(vm, &a);
	if (alloc_fits_host(&vmgrd->cap, &a, msg, sizeof(msg)) < 0) {
		api_err(e, 409, "exceeds_capacity", "%s can never run here: it "
		    "%s", vm->spec.name, msg);
		goto fail;
	}
	if (vm_resolve_boot(&vm->spec, kernel, initrd, &cmdline, msg,
	    sizeof(msg)) < 0) {
		api_err(e, 422, "no_such_image", "%s", msg);
		goto fail;
	}
	free(cmdline);
	/* Its disks become volumes of its own here, whole (no base). */
	for (int i = 0; i < vm->spec.ndisks; i++) {
		struct spec_disk *d = &vm->spec.disks[i];
		if (d->size == 0) {
			api_err(e, 422, "invalid_value", "disks[%d]: the size "
			    "of %s is needed", i, d->volume);
			goto fail;
		}
		if (volume_exists(d->volume)) {
			api_err(e, 409, "volume_exists", "a volume named "
			    "\"%s\" already exists here", d->volume);
			goto fail;
		}
		d->image[0] = '\0';
	}
	if (check_nics(vm, e) < 0)
		goto fail;
	if (vm_forwards_free(vm, msg, sizeof(msg)) < 0) {
		api_err(e, 409, "port_in_use", "%s", msg);
		goto fail;
	}
	if (net_assign_ips(&vm->spec, msg, sizeof(msg)) < 0) {
		api_err(e, 422, "unknown_network", "%s", msg);
		goto fail;
	}
	if (vm->spec.cloud_init && cloudinit_check(&vm->spec, msg,
	    sizeof(msg)) < 0) {
		api_err(e, 422, "bad_cloud_init", "%s", msg);
		goto fail;
	}
	if (reserve_disks(vm, e) < 0)
		goto fail;
	vm->state = state;
	snprintf(vm->reason, sizeof(vm->reason), "arriving from %s", from);
	vm->created_at = vm->state_since = now_unix_ms();
	vm->flags |= VMF_CREATING | VMF_INCOMING;
	vm->busy = OP_MIGRATE;
	TAILQ_INSERT_TAIL(&vmgrd->vms, vm, entry);
	vm->ndisks_left = vm->spec.ndisks + 1;
	for (int i = 0; i < vm->spec.ndisks; i++)
		if (!(make & (1u << i)))
			vm->ndisks_left--;
		else if (volume_make_empty(vm->spec.disks[i].volume,
		    vm->spec.disks[i].size, incoming_disk_made, in) < 0) {
			snprintf(vm->create_error, sizeof(vm->create_error),
			    "cannot run qemu-img: %s", strerror(errno));
			vm->ndisks_left--;
		}
	incoming_disk_made(NULL, 0, in);	/* the one more */
	return 0;
fail:
	vm_free(vm);
	free(in);
	return -1;
}
