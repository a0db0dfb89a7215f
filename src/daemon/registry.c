/*
 * registry.c - the daemon's context and the names of things: the one
 * `vmgrd` every file reads, the VM list's lookups, and where each thing
 * lives in the state dir (a VM's run dir and files, volumes, the
 * networks' and NICs' sockets).  The lowest layer: it calls nothing of
 * vmgrd's (scripts/layers.sh).
 */
#include "daemon.h"

#include <stdio.h>
#include <string.h>

struct vmgrd *vmgrd;

struct vm *
vm_find_any(const char *name)
{
	struct vm *vm;

	TAILQ_FOREACH(vm, &vmgrd->vms, entry)
		if (strcmp(vm->spec.name, name) == 0)
			return vm;
	return NULL;
}

/* A VM whose create (or arrival) has not finished is not visible yet. */
struct vm *
vm_find(const char *name)
{
	struct vm *vm = vm_find_any(name);

	return vm && !vm_has(vm, VMF_CREATING | VMF_INCOMING) ? vm : NULL;
}

struct vm *
vm_by_id(int64_t id)
{
	struct vm *vm;

	TAILQ_FOREACH(vm, &vmgrd->vms, entry)
		if (vm->id == id)
			return vm;
	return NULL;
}

void
vm_set_dir(struct vm *vm)
{
	snprintf(vm->dir, sizeof(vm->dir), "%s/vm/%lld", vmgrd->state_dir,
	    (long long)vm->id);
}

void
vm_path(const struct vm *vm, const char *file, char *buf, size_t len)
{
	snprintf(buf, len, "%s/%s", vm->dir, file);
}

void
volume_path(const char *name, char *buf, size_t len)
{
	snprintf(buf, len, "%s/volumes/%s.qcow2", vmgrd->state_dir, name);
}

void
net_sock_path(int64_t id, char *buf, size_t len)
{
	snprintf(buf, len, "%s/net/%lld.sock", vmgrd->state_dir, (long long)id);
}

/*
 * A NIC's socket on an isolated network: bound by vmgrd in the run dir,
 * which is root's, and listened on by its QEMU.
 */
void
nic_sock_path(const struct vm *vm, int nic, char *buf, size_t len)
{
	snprintf(buf, len, "%s/nic%d.sock", vm->dir, nic);
}
