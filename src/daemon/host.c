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
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/statfs.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
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

#define PROBE_BOOT_S	10

/*
 * Run argv with its output on a pipe until it prints want, exits, or
 * timeout_s pass; it is killed then.  1 when it printed want, 0 when not,
 * -1 when it could not run.
 */
static int
run_until(char *const argv[], const char *want, int timeout_s)
{
	char buf[8192];
	size_t len = 0;
	int p[2], found = 0, status;
	double end = now_mono() + timeout_s;
	pid_t pid;

	if (pipe2(p, O_CLOEXEC) < 0)
		return -1;
	if ((pid = fork()) < 0) {
		close(p[0]);
		close(p[1]);
		return -1;
	}
	if (pid == 0) {
		int null = open("/dev/null", O_RDWR);
		setpgid(0, 0);
		dup2(null, 0);
		dup2(p[1], 1);
		dup2(p[1], 2);
		execvp(argv[0], argv);
		_exit(127);
	}
	close(p[1]);
	while (!found) {
		struct pollfd pf = { .fd = p[0], .events = POLLIN };
		int left = (int)((end - now_mono()) * 1000);
		ssize_t n;
		if (left <= 0 || poll(&pf, 1, left) <= 0)
			break;
		if ((n = read(p[0], buf + len, sizeof(buf) - 1 - len)) <= 0)
			break;
		len += (size_t)n;
		buf[len] = '\0';
		found = strstr(buf, want) != NULL;
		if (len > sizeof(buf) / 2) {	/* keep the tail */
			memmove(buf, buf + len - 64, 64);
			len = 64;
		}
	}
	close(p[0]);
	kill(-pid, SIGKILL);
	kill(pid, SIGKILL);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	return found;
}

/*
 * KVM can pass QEMU's set-up and still hang every guest (nested hosts
 * whose virtual CPU lacks what a kernel turns on: the decompressor prints,
 * then nothing).  So the built-in guest must boot under KVM to its
 * GUEST-READY within PROBE_BOOT_S, or vmgrd takes TCG and says why.  The
 * verdict is kept for this boot of the host, QEMU and its binary (in
 * /run/vmgr as root, else in the state dir): it costs about a second where
 * KVM works and PROBE_BOOT_S where it does not.
 */
static void
probe_kvm_boot(void)
{
	char kernel[PATH_MAX + 16], initrd[PATH_MAX + 16], cache[PATH_MAX];
	char key[512], *boot, *old;
	char *argv[] = { vmgrd->qemu_binary, "-machine", "q35,accel=kvm",
	    "-cpu", "host", "-nodefaults", "-no-user-config", "-display",
	    "none", "-m", "128", "-no-reboot", "-serial", "stdio", "-kernel",
	    kernel, "-initrd", initrd, "-append",
	    "console=ttyS0 quiet panic=-1", NULL };
	int ok;

	snprintf(kernel, sizeof(kernel), "%s/tiny/vmlinuz", vmgrd->images_dir);
	snprintf(initrd, sizeof(initrd), "%s/tiny/initrd.img",
	    vmgrd->images_dir);
	if (access(kernel, R_OK) < 0 || access(initrd, R_OK) < 0)
		return;		/* no guest to try: QEMU's set-up must do */
	boot = read_file("/proc/sys/kernel/random/boot_id", 64, NULL);
	snprintf(key, sizeof(key), "%.40s %.64s %.300s", boot ? boot : "?",
	    vmgrd->qemu_version, vmgrd->qemu_binary);
	free(boot);
	for (char *c = key; *c; c++)
		if (*c == '\n')
			*c = ' ';
	if (geteuid() == 0) {
		mkdir("/run/vmgr", 0755);
		snprintf(cache, sizeof(cache), "/run/vmgr/kvm-probe");
	} else
		snprintf(cache, sizeof(cache), "%s/kvm-probe",
		    vmgrd->state_dir);
	if ((old = read_file(cache, 4096, NULL)) != NULL) {
		size_t n = strlen(key);
		if (strncmp(old, key, n) == 0 && old[n] == '\n') {
			ok = strncmp(old + n + 1, "ok", 2) == 0;
			free(old);
			goto verdict;
		}
		free(old);
	}
	log_info("probing KVM: booting the built-in guest under it (at most "
	    "%d s, once per boot of the host)", PROBE_BOOT_S);
	ok = run_until(argv, "GUEST-READY", PROBE_BOOT_S) == 1;
	char line[600];
	snprintf(line, sizeof(line), "%s\n%s\n", key, ok ? "ok" : "hangs");
	if (write_file_atomic(cache, line, strlen(line), 0644) < 0)
		log_warn("%s: %s", __func__, cache);
verdict:
	if (ok)
		return;
	snprintf(vmgrd->accel, sizeof(vmgrd->accel), "tcg");
	snprintf(vmgrd->accel_reason, sizeof(vmgrd->accel_reason),
	    "/dev/kvm opens, but the built-in guest did not boot under KVM in "
	    "%d s (a nested host?)", PROBE_BOOT_S);
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
	if (strcmp(vmgrd->accel, "kvm") == 0)
		probe_kvm_boot();
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
