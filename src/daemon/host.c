/*
 * host.c - facts about the host, probed once at start-up: the accelerator
 * (KVM when /dev/kvm really creates a VM, else TCG), QEMU's version, the
 * cgroup layout, the capacity VMs may have.  GET /v1/host is status.c's.
 */
#include "daemon.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/statfs.h>
#include <sys/utsname.h>
#include <unistd.h>
#include <linux/kvm.h>
#include <linux/magic.h>

#include "../lib/log.h"
#include "../lib/util.h"
#include "../qemu/proc.h"

/*
 * Some hosts (nested virtualization above all) create KVM VMs but fail
 * QEMU's vCPU set-up.  A paused QEMU with no devices tells in ~60 ms.
 */
static void
probe_qemu_kvm(void)
{
	char *argv[] = { vmgrd->qemu_binary, "-machine", "q35,accel=kvm",
	    "-cpu", "host", "-S", "-nodefaults", "-no-user-config",
	    "-display", "none", "-m", "16", "-qmp", "stdio", NULL };
	char out[2048], *line, *last = NULL, *save = NULL;

	if (proc_run_sync(argv, "{\"execute\":\"qmp_capabilities\"}\n"
	    "{\"execute\":\"quit\"}\n", out, sizeof(out)) == 0)
		return;
	for (line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL,
	    "\n", &save))
		if (strncmp(line, "qemu-system", 11) == 0 && !last)
			last = line;
	snprintf(vmgrd->accel, sizeof(vmgrd->accel), "tcg");
	snprintf(vmgrd->accel_reason, sizeof(vmgrd->accel_reason),
	    "QEMU cannot use /dev/kvm here: %.80s", last ? last : "probe failed");
}

/*
 * /dev/kvm can exist and open yet refuse to create a VM (nested setups,
 * missing modules); only KVM_CREATE_VM tells.
 */
static void
probe_accel(void)
{
	const char *want = getenv("VMGR_ACCEL");
	int fd, vmfd;

	if (want && strcmp(want, "tcg") == 0) {
		snprintf(vmgrd->accel, sizeof(vmgrd->accel), "tcg");
		snprintf(vmgrd->accel_reason, sizeof(vmgrd->accel_reason),
		    "chosen with VMGR_ACCEL=tcg");
		return;
	}
	snprintf(vmgrd->accel, sizeof(vmgrd->accel), "tcg");
	if ((fd = open("/dev/kvm", O_RDWR | O_CLOEXEC)) < 0) {
		snprintf(vmgrd->accel_reason, sizeof(vmgrd->accel_reason),
		    "/dev/kvm: %s", strerror(errno));
		return;
	}
	if (ioctl(fd, KVM_GET_API_VERSION, 0) != KVM_API_VERSION) {
		snprintf(vmgrd->accel_reason, sizeof(vmgrd->accel_reason),
		    "/dev/kvm: unexpected API version");
	} else if ((vmfd = ioctl(fd, KVM_CREATE_VM, 0)) < 0) {
		snprintf(vmgrd->accel_reason, sizeof(vmgrd->accel_reason),
		    "KVM_CREATE_VM: %s", strerror(errno));
	} else {
		close(vmfd);
		snprintf(vmgrd->accel, sizeof(vmgrd->accel), "kvm");
		snprintf(vmgrd->accel_reason, sizeof(vmgrd->accel_reason),
		    "/dev/kvm works");
	}
	close(fd);
	if (strcmp(vmgrd->accel, "kvm") == 0)
		probe_qemu_kvm();
}

static void
probe_cgroup(void)
{
	struct statfs fs;

	if (statfs("/sys/fs/cgroup", &fs) == 0 && fs.f_type ==
	    CGROUP2_SUPER_MAGIC)
		snprintf(vmgrd->cgroup_mode, sizeof(vmgrd->cgroup_mode), "v2");
	else if (statfs("/sys/fs/cgroup/unified", &fs) == 0 && fs.f_type ==
	    CGROUP2_SUPER_MAGIC)
		snprintf(vmgrd->cgroup_mode, sizeof(vmgrd->cgroup_mode),
		    "hybrid");
	else if (access("/sys/fs/cgroup/memory", F_OK) == 0)
		snprintf(vmgrd->cgroup_mode, sizeof(vmgrd->cgroup_mode), "v1");
	else
		snprintf(vmgrd->cgroup_mode, sizeof(vmgrd->cgroup_mode),
		    "none");
}

int
host_probe(char *err, size_t errlen)
{
	char out[512];
	char *argv[] = { vmgrd->qemu_binary, "--version", NULL };
	char *img_argv[] = { vmgrd->qemu_img, "--version", NULL };

	if (proc_run_sync(argv, NULL, out, sizeof(out)) < 0) {
		snprintf(err, errlen, "cannot run %s --version: is QEMU "
		    "installed (Debian package qemu-system-x86)?",
		    vmgrd->qemu_binary);
		return -1;
	}
	/* "QEMU emulator version 7.2.22 (Debian ...)" */
	const char *v = strstr(out, "version ");
	if (v) {
		v += strlen("version ");
		snprintf(vmgrd->qemu_version, sizeof(vmgrd->qemu_version),
		    "%.*s", (int)strcspn(v, " \n"), v);
	}
	if (proc_run_sync(img_argv, NULL, out, sizeof(out)) < 0) {
		snprintf(err, errlen, "cannot run %s --version: is qemu-img "
		    "installed (Debian package qemu-utils)?", vmgrd->qemu_img);
		return -1;
	}
	probe_accel();
	probe_cgroup();
	return 0;
}

long long
host_meminfo_kib(const char *key)
{
	char *buf = read_file("/proc/meminfo", 1 << 16, NULL), *p;
	long long v = -1;

	if (buf == NULL)
		return -1;
	if ((p = strstr(buf, key)) != NULL)
		v = strtoll(p + strlen(key), NULL, 10);
	free(buf);
	return v;
}

/* What vmgrd may give to VMs: the machine, unless told less. */
void
host_capacity(void)
{
	if (vmgrd->cap.cpus <= 0)
		vmgrd->cap.cpus = (double)sysconf(_SC_NPROCESSORS_ONLN);
	if (vmgrd->cap.memory_mib <= 0)
		vmgrd->cap.memory_mib = (double)(host_meminfo_kib("MemTotal:") / 1024);
	if (vmgrd->cap.cpu_ratio <= 0)
		vmgrd->cap.cpu_ratio = 4.0;
	if (vmgrd->cap.memory_ratio <= 0)
		vmgrd->cap.memory_ratio = 1.0;
}


static char id[33];

/*
 * This vmgrd's id: 128 random bits made at its first start and kept in
 * STATE/host_id, so another vmgrd (a remote, a migration's other end)
 * can tell it from any other, and from itself.  "" until loaded.
 */
const char *
host_id(void)
{
	return id;
}

int
host_id_load(char *err, size_t errlen)
{
	char path[PATH_MAX], *s;
	unsigned char r[16];

	snprintf(path, sizeof(path), "%s/host_id", vmgrd->state_dir);
	if ((s = read_file(path, 64, NULL)) != NULL) {
		s[strcspn(s, "\n")] = '\0';
		if (strlen(s) == 32 && strspn(s, "0123456789abcdef") == 32) {
			memcpy(id, s, 33);
			free(s);
			return 0;
		}
		log_warnx("%s is not an id of 32 hex digits: made anew", path);
		free(s);
	}
	if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r)) {
		snprintf(err, errlen, "getrandom: %s", strerror(errno));
		return -1;
	}
	for (size_t i = 0; i < sizeof(r); i++)
		snprintf(id + 2 * i, 3, "%02x", r[i]);
	char line[40];
	snprintf(line, sizeof(line), "%s\n", id);
	if (write_file_atomic(path, line, strlen(line), 0644) < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		id[0] = '\0';
		return -1;
	}
	return 0;
}
