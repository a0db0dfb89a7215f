/*
 * firmware.c - UEFI for the VMs that ask for it: Debian's OVMF code, read
 * only and shared, and a variable store of each VM's own, copied from
 * OVMF's template when the VM is made (the Microsoft-key template for
 * Secure Boot), kept in its run dir as efivars.fd, handed to QEMU as a
 * descriptor, backed up and restored with its disks, deleted with it.
 * SeaBIOS, QEMU's own, needs nothing of vmgrd.
 */
#include "daemon.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "../lib/util.h"

int
firmware_ovmf(const struct vm_spec *spec, const char **code,
    const char **vars)
{
	const char *c = spec->secure_boot ? FIRMWARE_OVMF_DIR
	    "/OVMF_CODE_4M.secboot.fd" : FIRMWARE_OVMF_DIR "/OVMF_CODE_4M.fd";
	const char *v = spec->secure_boot ? FIRMWARE_OVMF_DIR
	    "/OVMF_VARS_4M.ms.fd" : FIRMWARE_OVMF_DIR "/OVMF_VARS_4M.fd";

	if (code)
		*code = c;
	if (vars)
		*vars = v;
	return access(c, R_OK) == 0 && access(v, R_OK) == 0 ? 0 : -1;
}

int
firmware_uefi(const struct vm_spec *spec)
{
	return strcmp(spec->firmware, "uefi") == 0 && !spec->kernel;
}

/* The VM's variable store, from the template; an existing one stays. */
int
firmware_vars_make(const struct vm *vm, char *err, size_t errlen)
{
	const char *tmpl;
	char path[PATH_MAX], *data;
	size_t len = 0;
	int rc;

	vm_path(vm, FIRMWARE_VARS, path, sizeof(path));
	if (access(path, F_OK) == 0)
		return 0;
	if (firmware_ovmf(&vm->spec, NULL, &tmpl) < 0 ||
	    (data = read_file(tmpl, 16 << 20, &len)) == NULL)
		return snprintf(err, errlen, "%s: %s", FIRMWARE_OVMF_DIR,
		    strerror(errno)), -1;
	/* Whole or not there: a torn store would be kept by every start. */
	if ((rc = write_file_atomic(path, data, len, 0600)) < 0)
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
	free(data);
	return rc;
}

int
firmware_vars_open(const struct vm *vm, char *err, size_t errlen)
{
	char path[PATH_MAX];
	int fd;

	if (firmware_vars_make(vm, err, errlen) < 0)
		return -1;
	vm_path(vm, FIRMWARE_VARS, path, sizeof(path));
	if ((fd = open_private(path, O_RDWR, 0)) < 0)
		snprintf(err, errlen, "%s: %s", path, errno == EPERM ||
		    errno == ELOOP ? "not a file of vmgrd's own; refused" :
		    strerror(errno));
	return fd;
}

/* SHA-256 of data, in hex. */
static void
sha256_hex(const void *data, size_t len, char out[65])
{
	unsigned char md[32];
	unsigned int n = 0;

	EVP_Digest(data, len, md, &n, EVP_sha256(), NULL);
	for (unsigned i = 0; i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
}

json_t *
firmware_vars_backup(const struct vm *vm, const char *dir, char *err,
    size_t errlen)
{
	char path[PATH_MAX], dst[PATH_MAX + 32], sha[65], *data;
	size_t len = 0;

	vm_path(vm, FIRMWARE_VARS, path, sizeof(path));
	if ((data = read_file_private(path, 16 << 20, &len)) == NULL) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return NULL;
	}
	snprintf(dst, sizeof(dst), "%s/" FIRMWARE_VARS, dir);
	if (write_file_atomic(dst, data, len, 0600) < 0) {
		snprintf(err, errlen, "%s: %s", dst, strerror(errno));
		free(data);
		return NULL;
	}
	sha256_hex(data, len, sha);
	free(data);
	return json_pack("{s:s, s:I, s:s}", "file", FIRMWARE_VARS, "size",
	    (json_int_t)len, "sha256", sha);
}

int
firmware_vars_check(const json_t *m, const char *dir, char *err,
    size_t errlen)
{
	const char *want = json_string_value(json_object_get(m, "sha256"));
	char path[PATH_MAX + 32], sha[65], *data;
	size_t len = 0;

	snprintf(path, sizeof(path), "%s/" FIRMWARE_VARS, dir);
	if ((data = read_file_private(path, 16 << 20, &len)) == NULL)
		return snprintf(err, errlen, "%s: %s", path, strerror(errno)),
		    -1;
	sha256_hex(data, len, sha);
	free(data);
	if (want == NULL || strcmp(want, sha) != 0)
		return snprintf(err, errlen, "%s: its SHA-256 is not the "
		    "manifest's", path), -1;
	return 0;
}

int
firmware_vars_restore(const struct vm *vm, const char *dir, char *err,
    size_t errlen)
{
	char src[PATH_MAX + 32], path[PATH_MAX], *data;
	size_t len = 0;
	int rc;

	snprintf(src, sizeof(src), "%s/" FIRMWARE_VARS, dir);
	if ((data = read_file_private(src, 16 << 20, &len)) == NULL)
		return snprintf(err, errlen, "%s: %s", src, strerror(errno)), -1;
	vm_path(vm, FIRMWARE_VARS, path, sizeof(path));
	unlink(path);
	if ((rc = write_file_atomic(path, data, len, 0600)) < 0)
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
	free(data);
	return rc;
}
