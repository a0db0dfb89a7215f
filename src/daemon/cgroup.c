/*
 * cgroup.c - enforcement of the allocation on the host: one cgroup per VM
 * below a cgroup of vmgrd's own (per state dir), with a CPU weight from the
 * entitlement, a CPU quota for fixed VMs and a memory limit.  cgroup v2
 * where the host has the cpu and memory controllers there, v1 otherwise.
 * When neither can be written, vmgrd still computes the allocation and says
 * `enforced: false` with the reason; nothing pretends.
 */
#include "daemon.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../lib/log.h"
#include "../lib/util.h"

#define CPU_PERIOD_US	100000

static struct {
	int	mode;		/* 0 none, 1 v1, 2 v2 */
	char	cpu[PATH_MAX - 64];	/* v1 cpu parent, or the v2 parent */
	char	mem[PATH_MAX - 64];	/* v1 memory parent */
} cg;

/* The path of our own cgroup in a hierarchy, from /proc/self/cgroup. */
static int
own_cgroup(const char *controller, char *buf, size_t len)
{
	char *s = read_file("/proc/self/cgroup", 1 << 16, NULL), *line, *save;
	int found = -1;

	if (s == NULL)
		return -1;
	for (line = strtok_r(s, "\n", &save); line; line = strtok_r(NULL,
	    "\n", &save)) {
		char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') :
		    NULL;
		if (c2 == NULL)
			continue;
		*c2 = '\0';
		const char *ctrls = c1 + 1;
		int match = controller == NULL ? strcmp(line, "0") == 0 &&
		    *ctrls == '\0' : 0;
		if (controller) {
			char list[256], *t, *s2;
			snprintf(list, sizeof(list), "%s", ctrls);
			for (t = strtok_r(list, ",", &s2); t; t = strtok_r(NULL,
			    ",", &s2))
				if (strcmp(t, controller) == 0)
					match = 1;
		}
		if (match) {
			snprintf(buf, len, "%s", strcmp(c2 + 1, "/") == 0 ? "" :
			    c2 + 1);
			found = 0;
			break;
		}
	}
	free(s);
	return found;
}

static int
write_str(const char *dir, const char *file, const char *val)
{
	char path[PATH_MAX];
	int fd, rc = 0;

	snprintf(path, sizeof(path), "%s/%s", dir, file);
	if ((fd = open(path, O_WRONLY | O_CLOEXEC)) < 0)
		return -1;
	if (write(fd, val, strlen(val)) < 0)
		rc = -1;
	close(fd);
	return rc;
}

static int
state_hash(void)
{
	unsigned h = 2166136261u;

	for (const char *p = vmgrd->state_dir; *p; p++)
		h = (h ^ (unsigned char)*p) * 16777619u;
	return (int)(h & 0xffffff);
}

static int
try_v2(char *why, size_t len)
{
	char own[PATH_MAX / 2], *ctrl;

	if ((ctrl = read_file("/sys/fs/cgroup/cgroup.controllers", 4096,
	    NULL)) == NULL)
		return -1;
	int ok = strstr(ctrl, "cpu") && strstr(ctrl, "memory");
	free(ctrl);
	if (!ok || own_cgroup(NULL, own, sizeof(own)) < 0) {
		snprintf(why, len, "cgroup v2 lacks the cpu or memory "
		    "controller");
		return -1;
	}
	snprintf(cg.cpu, sizeof(cg.cpu), "/sys/fs/cgroup%s/vmgr-%06x", own,
	    state_hash());
	if (mkdir(cg.cpu, 0755) < 0 && errno != EEXIST) {
		snprintf(why, len, "cannot create %.100s: %s", cg.cpu,
		    strerror(errno));
		return -1;
	}
	if (write_str(cg.cpu, "cgroup.subtree_control", "+cpu +memory") < 0) {
		snprintf(why, len, "cannot enable cpu and memory in %.80s: %s "
		    "(delegate them to vmgrd's cgroup)", cg.cpu,
		    strerror(errno));
		rmdir(cg.cpu);
		return -1;
	}
	return 0;
}

static int
try_v1(char *why, size_t len)
{
	char own[PATH_MAX / 2];

	if (access("/sys/fs/cgroup/cpu/cpu.shares", F_OK) < 0 ||
	    access("/sys/fs/cgroup/memory/memory.limit_in_bytes", F_OK) < 0) {
		snprintf(why, len, "no cgroup v1 cpu and memory hierarchies");
		return -1;
	}
	if (own_cgroup("cpu", own, sizeof(own)) < 0)
		own[0] = '\0';
	snprintf(cg.cpu, sizeof(cg.cpu), "/sys/fs/cgroup/cpu%s/vmgr-%06x",
	    own, state_hash());
	if (own_cgroup("memory", own, sizeof(own)) < 0)
		own[0] = '\0';
	snprintf(cg.mem, sizeof(cg.mem), "/sys/fs/cgroup/memory%s/vmgr-%06x",
	    own, state_hash());
	if ((mkdir(cg.cpu, 0755) < 0 && errno != EEXIST) ||
	    (mkdir(cg.mem, 0755) < 0 && errno != EEXIST)) {
		snprintf(why, len, "cannot create %.100s: %s", errno == EACCES ||
		    errno == EPERM || errno == EROFS ? "vmgrd's cgroups" :
		    cg.cpu, strerror(errno));
		rmdir(cg.cpu);
		return -1;
	}
	return 0;
}

void
cgroup_probe(void)
{
	char why2[192], why1[192];

	vmgrd->enforced = 0;
	if (getenv("VMGR_NO_CGROUPS")) {
		snprintf(vmgrd->enforce_reason, sizeof(vmgrd->enforce_reason),
		    "disabled with VMGR_NO_CGROUPS");
		return;
	}
	if (try_v2(why2, sizeof(why2)) == 0) {
		cg.mode = 2;
	} else if (try_v1(why1, sizeof(why1)) == 0) {
		cg.mode = 1;
	} else {
		snprintf(vmgrd->enforce_reason, sizeof(vmgrd->enforce_reason),
		    "%s", why1);
		return;
	}
	vmgrd->enforced = 1;
	snprintf(vmgrd->enforce_reason, sizeof(vmgrd->enforce_reason),
	    "cgroup %s under %.200s", cg.mode == 2 ? "v2" : "v1", cg.cpu);
	snprintf(vmgrd->cgroup_mode, sizeof(vmgrd->cgroup_mode), "%s",
	    cg.mode == 2 ? "v2" : "v1");
}

/* The VM's cgroup directories; mem is "" on v2 (one hierarchy). */
static void
vm_dirs(const struct vm *vm, char *cpu, char *mem, size_t len)
{
	snprintf(cpu, len, "%s/vm-%lld", cg.cpu, (long long)vm->id);
	if (cg.mode == 1)
		snprintf(mem, len, "%s/vm-%lld", cg.mem, (long long)vm->id);
	else
		mem[0] = '\0';
}

int
cgroup_prepare(const struct vm *vm, char procs[2][PATH_MAX])
{
	char cpu[PATH_MAX - 16], mem[PATH_MAX - 16];

	procs[0][0] = procs[1][0] = '\0';
	if (!vmgrd->enforced)
		return 0;
	vm_dirs(vm, cpu, mem, sizeof(cpu));
	if ((mkdir(cpu, 0755) < 0 && errno != EEXIST) ||
	    (mem[0] && mkdir(mem, 0755) < 0 && errno != EEXIST)) {
		log_warn("%s: %s: mkdir", __func__, vm->spec.name);
		return -1;
	}
	snprintf(procs[0], PATH_MAX, "%s/cgroup.procs", cpu);
	if (mem[0])
		snprintf(procs[1], PATH_MAX, "%s/cgroup.procs", mem);
	return 0;
}

int
cgroup_apply(struct vm *vm)
{
	char cpu[PATH_MAX - 16], mem[PATH_MAX - 16], v[64];
	double e = vm->entitlement_cpu;
	long long limit = ((long long)vm->limit_memory_mib) << 20;
	int rc = 0;

	if (!vmgrd->enforced)
		return 0;
	vm_dirs(vm, cpu, mem, sizeof(cpu));
	if (cg.mode == 1) {
		long shares = (long)(e * 1024 + 0.5);
		snprintf(v, sizeof(v), "%ld", shares < 2 ? 2 : shares > 262144 ?
		    262144 : shares);
		rc |= write_str(cpu, "cpu.shares", v);
		snprintf(v, sizeof(v), "%d", CPU_PERIOD_US);
		rc |= write_str(cpu, "cpu.cfs_period_us", v);
		snprintf(v, sizeof(v), "%ld", vm->quota_cpus > 0 ?
		    (long)(vm->quota_cpus * CPU_PERIOD_US) : -1L);
		rc |= write_str(cpu, "cpu.cfs_quota_us", v);
		snprintf(v, sizeof(v), "%lld", limit);
		rc |= write_str(mem, "memory.limit_in_bytes", v);
	} else {
		long weight = (long)(e * 100 + 0.5);
		snprintf(v, sizeof(v), "%ld", weight < 1 ? 1 : weight > 10000 ?
		    10000 : weight);
		rc |= write_str(cpu, "cpu.weight", v);
		if (vm->quota_cpus > 0)
			snprintf(v, sizeof(v), "%ld %d", (long)(vm->quota_cpus *
			    CPU_PERIOD_US), CPU_PERIOD_US);
		else
			snprintf(v, sizeof(v), "max %d", CPU_PERIOD_US);
		rc |= write_str(cpu, "cpu.max", v);
		snprintf(v, sizeof(v), "%lld", limit);
		rc |= write_str(cpu, "memory.max", v);
	}
	if (rc)
		log_warn("%s: %s: writing limits", __func__, vm->spec.name);
	return rc ? -1 : 0;
}

/* What the cgroup files hold now, as `vmgr info` shows it. */
json_t *
cgroup_json(const struct vm *vm)
{
	char cpu[PATH_MAX - 16], mem[PATH_MAX - 16], path[PATH_MAX], *s;
	json_t *o = json_object();
	static const char *const v1[][2] = { { "cpu", "cpu.shares" },
	    { "cpu", "cpu.cfs_quota_us" }, { "cpu", "cpu.cfs_period_us" },
	    { "mem", "memory.limit_in_bytes" } };
	static const char *const v2[][2] = { { "cpu", "cpu.weight" },
	    { "cpu", "cpu.max" }, { "cpu", "memory.max" } };

	if (!vmgrd->enforced || vm->pid <= 0)
		return o;
	vm_dirs(vm, cpu, mem, sizeof(cpu));
	json_object_set_new(o, "path", json_string(cpu));
	size_t n = cg.mode == 1 ? 4 : 3;
	for (size_t i = 0; i < n; i++) {
		const char *const *f = cg.mode == 1 ? v1[i] : v2[i];
		snprintf(path, sizeof(path), "%s/%s", strcmp(f[0], "cpu") == 0 ?
		    cpu : mem, f[1]);
		if ((s = read_file(path, 256, NULL)) == NULL)
			continue;
		s[strcspn(s, "\n")] = '\0';
		json_object_set_new(o, f[1], json_string(s));
		free(s);
	}
	return o;
}

void
cgroup_remove(const struct vm *vm)
{
	char cpu[PATH_MAX - 16], mem[PATH_MAX - 16];

	if (!vmgrd->enforced)
		return;
	vm_dirs(vm, cpu, mem, sizeof(cpu));
	/*
	 * The exited QEMU's threads may not all be gone yet (EBUSY); the
	 * directory is then reused by the next start, or goes with vmgrd's.
	 */
	if (rmdir(cpu) < 0 && errno != ENOENT && errno != EBUSY)
		log_warn("%s: rmdir %s", __func__, cpu);
	if (mem[0] && rmdir(mem) < 0 && errno != ENOENT && errno != EBUSY)
		log_warn("%s: rmdir %s", __func__, mem);
}
