/*
 * cmd_host.c - `vmgr host`: the host as vmgrd sees it.
 */
#include "cli.h"

#include <stdio.h>

int
cmd_host(int argc, char **argv)
{
	json_t *h, *counts, *n;
	const char *state;
	char mem[32], avail[32];
	int rc;

	if (argc > 1)
		return usage_error("host", "unexpected argument \"%s\"",
		    argv[1]);
	if ((h = api_get("/v1/host", &rc)) == NULL)
		return rc;
	if (cli.json) {
		print_json(h);
		json_decref(h);
		return 0;
	}
#define S(k) json_string_value(json_object_get(h, k))
#define I(k) (long long)json_number_value(json_object_get(h, k))
	printf("hostname:     %s\n", S("hostname"));
	printf("cpus:         %lld\n", I("cpus"));
	printf("memory:       %s (%s available)\n", fmt_mib(I("memory_mib"),
	    mem, sizeof(mem)), fmt_mib(I("memory_available_mib"), avail,
	    sizeof(avail)));
	printf("accel:        %s (%s)\n", S("accel"), S("accel_reason"));
	printf("qemu:         %s (%s)\n", S("qemu_version"), S("qemu_binary"));
	printf("kernel:       %s\n", S("kernel"));
	printf("cgroups:      %s\n", S("cgroup_mode"));
#define SUB(o, k) json_string_value(json_object_get(json_object_get(h, o), k))
	printf("nat:          %s (%s)\n", SUB("nat", "backend"),
	    SUB("nat", "reason"));
	printf("isolated:     %s switch (%s)\n", SUB("switch", "backend"),
	    SUB("switch", "reason"));
#undef SUB
	printf("state dir:    %s\n", S("state_dir"));
	json_t *cap = json_object_get(h, "capacity");
	json_t *res = json_object_get(h, "reserved");
	json_t *al = json_object_get(h, "allocated");
	json_t *fr = json_object_get(h, "free");
	json_t *en = json_object_get(h, "enforcement");
#define N(o, k) json_number_value(json_object_get(o, k))
	printf("capacity:     %g cpus (x %g overcommit for fixed vCPUs), %.0f "
	    "MiB (x %g)\n", N(cap, "cpus"), N(cap, "cpu_ratio"),
	    N(cap, "memory_mib"), N(cap, "memory_ratio"));
	printf("reserved:     %g vCPUs, %.0f MiB\n", N(res, "cpus"),
	    N(res, "memory_mib"));
	printf("allocated:    %.2f cpus, %.0f MiB\n", N(al, "cpus"),
	    N(al, "memory_mib"));
	printf("free:         %g vCPUs, %.0f MiB\n", N(fr, "cpus"),
	    N(fr, "memory_mib"));
	printf("enforced:     %s (%s)\n", json_is_true(json_object_get(en,
	    "enforced")) ? "true" : "false", json_string_value(
	    json_object_get(en, "reason")));
	json_t *sc = json_object_get(h, "scheduler");
	printf("scheduler:    %s, quantum %gs, %zu queued\n",
	    json_string_value(json_object_get(sc, "policy")),
	    N(sc, "quantum_s"), json_array_size(json_object_get(sc, "queue")));
#undef N
	printf("vmgrd:        %s, %lld of %lld API connections open\n",
	    S("vmgrd_version"), (long long)json_integer_value(json_object_get(
	    json_object_get(h, "api"), "connections")), (long long)
	    json_integer_value(json_object_get(json_object_get(h, "api"),
	    "max_connections")));
	printf("vms:          %lld", I("vms_total"));
	counts = json_object_get(h, "vms");
	const char *sep = " (";
	json_object_foreach(counts, state, n) {
		if (json_integer_value(n) == 0)
			continue;
		printf("%s%lld %s", sep, (long long)json_integer_value(n),
		    state);
		sep = ", ";
	}
	printf("%s\n", sep[0] == ',' ? ")" : "");
#undef S
#undef I
	json_decref(h);
	return 0;
}
