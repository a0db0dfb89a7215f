/*
 * priv.c - least privilege for QEMU.  When vmgrd runs as root, each VM's
 * QEMU runs as a user of its own: uid and gid BASE + the VM's id (from a
 * range no login user has; `vmgrd --qemu-uid-base`, 0 keeps QEMU as root),
 * with one supplementary group, BASE itself, shared by all QEMUs, and the
 * group of /dev/kvm.  What a QEMU may touch:
 *
 *   STATE            0711 root        (traverse only)
 *   STATE/vm         0710 root:BASE   STATE/vm/ID       0710 root:its gid
 *                                     STATE/vm/ID/qemu  0700 its uid
 *   STATE/volumes    0710 root:BASE   its volumes  0600 its uid
 *                                     a base of linked clones 0640 root:BASE
 *   STATE/net        0710 root:BASE   the networks' sockets 0660 root:BASE
 *
 * The run dir STATE/vm/ID is root's: its QMP and console sockets, logs,
 * pid file and saved state are made by vmgrd and handed to QEMU as
 * descriptors, so no link a QEMU plants can make root open another file.
 * QEMU writes only its NICs' sockets, in its own STATE/vm/ID/qemu.
 * Everything else in the state dir (the database, logs, backups, other
 * VMs' disks and run dirs) stays root's.  Disks of a backup are handed
 * over as descriptors too, never by path.  A QEMU can send to any
 * network's socket, but vmgrd's switch drops frames from any address
 * that is not one of that network's NICs.
 */
#include "daemon.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../lib/log.h"
#include "../lib/util.h"
#include "../qemu/proc.h"

#define PRIV_DEFAULT_BASE	0x40000000u

static unsigned base = PRIV_DEFAULT_BASE;

void
priv_set_base(unsigned b)
{
	base = b;
}

int
priv_enabled(void)
{
	return geteuid() == 0 && base != 0;
}

static int
set_mode(const char *path, uid_t uid, gid_t gid, mode_t mode)
{
	if (chown(path, uid, gid) < 0 || chmod(path, mode) < 0) {
		log_warn("%s: %s", __func__, path);
		return -1;
	}
	return 0;
}

/* At start: the directories a QEMU must pass through. */
int
priv_init(void)
{
	char path[PATH_MAX];
	const char *dirs[] = { "vm", "volumes", "net", NULL };

	if (!priv_enabled())
		return 0;
	/* Traverse only; the API socket keeps its own mode and group. */
	if (chmod(vmgrd->state_dir, 0711) < 0)
		return -1;
	for (const char **d = dirs; *d; d++) {
		snprintf(path, sizeof(path), "%s/%s", vmgrd->state_dir, *d);
		if (mkdir_p(path, 0710) < 0 || set_mode(path, 0, base, 0710) < 0)
			return -1;
	}
	log_info("QEMU runs as uid %u + the VM's id, group %u", base, base);
	return 0;
}

/* A base of linked clones, readable by every QEMU and written by none. */
static void
share_backing(const char *volume, int depth)
{
	char path[PATH_MAX], err[256];
	struct qcow2_header h;

	volume_path(volume, path, sizeof(path));
	if (depth > 16 || qcow2_read_info(path, &h, NULL, 0, NULL, NULL, 0,
	    NULL, err, sizeof(err)) < 0)
		return;
	size_t n = strlen(h.backing);
	if (n < 7 || strchr(h.backing, '/') || strcmp(h.backing + n - 6,
	    ".qcow2") != 0)
		return;
	char base_name[SPEC_NAME_MAX + 8];
	snprintf(base_name, sizeof(base_name), "%.*s", (int)(n - 6), h.backing);
	volume_path(base_name, path, sizeof(path));
	set_mode(path, 0, (gid_t)base, 0640);
	share_backing(base_name, depth + 1);
}

/*
 * The directory path, made if missing, as uid:gid with mode; a link or a
 * file in its place is removed first, so it is always a directory of its
 * own and never another one that a link points to.
 */
static int
own_dir(const char *path, uid_t uid, gid_t gid, mode_t mode)
{
	struct stat st;
	int fd;

	if (lstat(path, &st) == 0 && !S_ISDIR(st.st_mode) && unlink(path) < 0)
		return -1;
	if (mkdir(path, mode) < 0 && errno != EEXIST)
		return -1;
	if ((fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
	    O_CLOEXEC)) < 0)
		return -1;
	if (fchown(fd, uid, gid) < 0 || fchmod(fd, mode) < 0) {
		int e = errno;
		close(fd);
		return errno = e, -1;
	}
	close(fd);
	return 0;
}

int
priv_run_dir(const struct vm *vm, char *err, size_t errlen)
{
	char qdir[PATH_MAX];
	uid_t uid = priv_enabled() ? (uid_t)(base + (unsigned)vm->id) :
	    geteuid();
	gid_t gid = priv_enabled() ? (gid_t)uid : getegid();

	snprintf(qdir, sizeof(qdir), "%s/qemu", vm->dir);
	if (own_dir(vm->dir, geteuid(), gid, priv_enabled() ? 0710 : 0700) < 0) {
		snprintf(err, errlen, "%.300s: %s", vm->dir, strerror(errno));
		return -1;
	}
	if (own_dir(qdir, uid, gid, 0700) < 0) {
		snprintf(err, errlen, "%.300s: %s", qdir, strerror(errno));
		return -1;
	}
	return 0;
}

/*
 * Before a VM's QEMU starts: its run dir is ready and its volumes become
 * its own, and *cred says who it runs as.  0 with cred left unset when QEMU runs as
 * vmgrd's user; -1 with err set.
 */
void
priv_cred(const struct vm *vm, struct proc_cred *cred)
{
	memset(cred, 0, sizeof(*cred));
	cred->uid = (uid_t)(base + (unsigned)vm->id);
	cred->gid = cred->uid;
	cred->groups[cred->ngroups++] = (gid_t)base;
}

int
priv_prepare_vm(const struct vm *vm, struct proc_cred *cred, int *use,
    char *err, size_t errlen)
{
	char path[PATH_MAX];
	struct stat st;
	uid_t uid;

	*use = 0;
	if (priv_run_dir(vm, err, errlen) < 0)
		return -1;
	if (!priv_enabled())
		return 0;
	uid = (uid_t)(base + (unsigned)vm->id);
	for (int i = 0; i < vm->spec.ndisks; i++) {
		volume_path(vm->spec.disks[i].volume, path, sizeof(path));
		if (set_mode(path, uid, uid, 0600) < 0) {
			snprintf(err, errlen, "%.300s: %s", path,
			    strerror(errno));
			return -1;
		}
		share_backing(vm->spec.disks[i].volume, 0);
	}
	priv_cred(vm, cred);
	if (strcmp(vmgrd->accel, "kvm") == 0 && stat("/dev/kvm", &st) == 0) {
		if ((st.st_mode & 0006) != 0006 && (st.st_mode & 0060) != 0060) {
			/* Only root may use KVM here: so be it, and say so. */
			log_warnx("%s: /dev/kvm is for root only (mode %03o): "
			    "its QEMU runs as root", vm->spec.name,
			    (unsigned)(st.st_mode & 0777));
			return 0;
		}
		cred->groups[cred->ngroups++] = st.st_gid;
	}
	*use = 1;
	return 0;
}

unsigned
priv_uid(const struct vm *vm)
{
	return priv_enabled() ? base + (unsigned)vm->id : (unsigned)geteuid();
}
