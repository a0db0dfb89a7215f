/*
 * cmd_sched.c - vmgr's scheduling commands: `set` (a VM's resources and
 * scheduling, PATCH /v1/vms/NAME), `queue` and `scheduler` (GET and PUT
 * /v1/scheduler).
 */
#include "cli.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/util.h"

/*
 * Options shared by `create` and `set`: put each into the spec object
 * (create: nested under resources/schedule) or the PATCH body (flat).
 * Returns 1 when argv[*i] was one of them, 0 when not, -1 on a bad value.
 */
int
resource_option(const char *cmd, int argc, char **argv, int *i, json_t *res,
    json_t *sched)
{
	const char *a = argv[*i], *val = *i + 1 < argc ? argv[*i + 1] : NULL;
	long long n;
	char *end;

	if (strcmp(a, "--preemptible") == 0) {
		json_object_set_new(sched, "preemptible", json_true());
		return 1;
	}
	if (strcmp(a, "--no-preemptible") == 0) {
		json_object_set_new(sched, "preemptible", json_false());
		return 1;
	}
	if (strcmp(a, "--policy") && strcmp(a, "--priority") &&
	    strcmp(a, "--weight") && strcmp(a, "--min-memory") &&
	    strcmp(a, "--runtime"))
		return 0;
	if (val == NULL) {
		usage_error(cmd, "%s needs a value", a);
		return -1;
	}
	(*i)++;
	if (strcmp(a, "--policy") == 0)
		json_object_set_new(res, "policy", json_string(val));
	else if (strcmp(a, "--priority") == 0) {
		errno = 0;
		n = strtoll(val, &end, 10);
		if (errno || *end || end == val) {
			usage_error(cmd, "--priority takes a number 1 to 10");
			return -1;
		}
		json_object_set_new(res, "priority", json_integer(n));
	} else if (strcmp(a, "--weight") == 0) {
		double w = strtod(val, &end);
		if (*end || end == val || !isfinite(w)) {
			usage_error(cmd, "--weight takes a number above 0");
			return -1;
		}
		json_object_set_new(res, "weight", json_real(w));
	} else if (strcmp(a, "--min-memory") == 0) {
		if (parse_size_mib(val, &n) < 0) {
			usage_error(cmd, "--min-memory takes a size (128M)");
			return -1;
		}
		json_object_set_new(res, "min_memory_mib", json_integer(n));
	} else {
		if (parse_duration_s(val, &n) < 0 || n == 0) {
			usage_error(cmd, "--runtime takes a duration (10m)");
			return -1;
		}
		json_object_set_new(sched, "expected_runtime_s",
		    json_integer(n));
	}
	return 1;
}

int
cmd_set(int argc, char **argv)
{
	json_t *body = json_object(), *resp = NULL, *keys = NULL;
	const char *name = NULL;
	char path[256];
	long long n;
	int rc = EXIT_USAGE;

	for (int i = 1; i < argc; i++) {
		int r = resource_option("set", argc, argv, &i, body, body);
		if (r < 0)
			goto out;
		if (r > 0)
			continue;
		if (strcmp(argv[i], "--vcpus") == 0 && i + 1 < argc) {
			char *end;
			n = strtoll(argv[++i], &end, 10);
			if (*end) {
				rc = usage_error("set", "--vcpus takes a number");
				goto out;
			}
			json_object_set_new(body, "vcpus", json_integer(n));
		} else if (strcmp(argv[i], "--memory") == 0 && i + 1 < argc) {
			if (parse_size_mib(argv[++i], &n) < 0) {
				rc = usage_error("set", "--memory takes a size");
				goto out;
			}
			json_object_set_new(body, "memory_mib", json_integer(n));
		} else if (strcmp(argv[i], "--autostart") == 0 ||
		    strcmp(argv[i], "--no-autostart") == 0) {
			json_object_set_new(body, "autostart", json_boolean(
			    argv[i][2] == 'a'));
		} else if (strcmp(argv[i], "--eject") == 0) {
			json_object_set_new(body, "cdrom", json_null());
		} else if (strcmp(argv[i], "--cdrom") == 0 && i + 1 < argc) {
			char abs[PATH_MAX];
			if (realpath(argv[++i], abs) == NULL) {
				rc = usage_error("set", "cannot find %s", argv[i]);
				goto out;
			}
			json_object_set_new(body, "cdrom", json_string(abs));
		} else if (strcmp(argv[i], "--ssh-key") == 0 && i + 1 < argc) {
			if (keys == NULL)
				keys = json_array();
			if ((rc = read_ssh_keys("set", argv[++i], keys)) != 0)
				goto out;
		} else if (argv[i][0] == '-') {
			rc = usage_error("set", "unknown option \"%s\"", argv[i]);
			goto out;
		} else if (name == NULL)
			name = argv[i];
		else {
			rc = usage_error("set", "give one VM name");
			goto out;
		}
	}
	if (name == NULL || (json_object_size(body) == 0 && keys == NULL)) {
		rc = usage_error("set", "give a VM name and what to change");
		goto out;
	}
	snprintf(path, sizeof(path), "/v1/vms/%s", name);
	/* --ssh-key adds to the keys the VM has, for its next boot. */
	if (keys) {
		json_t *vm = api_get(path, &rc), *ci, *have;
		if (vm == NULL)
			goto out;
		ci = json_object_get(json_object_get(vm, "spec"), "cloud_init");
		ci = ci ? json_deep_copy(ci) : json_object();
		if ((have = json_object_get(ci, "ssh_authorized_keys")) == NULL)
			json_object_set_new(ci, "ssh_authorized_keys", have =
			    json_array());
		json_array_extend(have, keys);
		json_object_set_new(body, "cloud_init", ci);
		json_decref(vm);
	}
	if ((resp = api_send("PATCH", path, body, 30, &rc)) == NULL)
		goto out;
	if (cli.json)
		print_json(resp);
	else {
		json_t *r = json_object_get(json_object_get(resp, "spec"),
		    "resources");
		printf("%s: policy %s, priority %lld, weight %g, min memory "
		    "%lldM\n", name, json_string_value(json_object_get(r,
		    "policy")), (long long)json_number_value(json_object_get(r,
		    "priority")), json_number_value(json_object_get(r,
		    "weight")), (long long)json_number_value(json_object_get(r,
		    "min_memory_mib")));
	}
	rc = 0;
out:
	json_decref(body);
	json_decref(resp);
	json_decref(keys);
	return rc;
}

static void
print_scheduler(json_t *s)
{
	json_t *v;
	size_t i;

	printf("policy %s, quantum %gs\n\n", jstr(s, "policy"),
	    json_number_value(json_object_get(s, "quantum_s")));
	if (json_array_size(json_object_get(s, "queue")) == 0)
		printf("queue: empty\n");
	else
		printf("%-4s %-16s %-8s %-4s %-9s %-24s %s\n", "POS", "NAME",
		    "STATE", "PRIO", "RUNTIME", "EXPECTED ADMISSION", "WAITING "
		    "FOR");
	json_array_foreach(json_object_get(s, "queue"), i, v) {
		char rt[32] = "-";
		long long r = (long long)json_number_value(json_object_get(v,
		    "expected_runtime_s"));
		const char *exp = json_string_value(json_object_get(v,
		    "expected_admission"));
		if (r > 0)
			fmt_duration(r, rt, sizeof(rt));
		printf("%-4lld %-16s %-8s %-4lld %-9s %-24s %s\n",
		    (long long)json_integer_value(json_object_get(v,
		    "position")), jstr(v, "name"), jstr(v, "state"),
		    (long long)json_integer_value(json_object_get(v,
		    "priority")), rt, exp ? exp : "unknown", jstr(v, "reason"));
	}
	printf("\nadmitted: %zu\n", json_array_size(json_object_get(s,
	    "admitted")));
	json_array_foreach(json_object_get(s, "admitted"), i, v) {
		json_t *left = json_object_get(v, "slice_left_s");
		printf("  %-16s %-8s %5.2f cpus %7.0f MiB%s", jstr(v, "name"),
		    jstr(v, "state"), json_number_value(json_object_get(v,
		    "cpus")), json_number_value(json_object_get(v,
		    "memory_mib")), json_is_true(json_object_get(v,
		    "preemptible")) ? "  preemptible" : "");
		if (left)
			printf(", slice ends in %.1fs", json_number_value(left));
		printf("\n");
	}
}

int
cmd_queue(int argc, char **argv)
{
	json_t *resp;
	int rc;

	if (argc > 1)
		return usage_error("queue", "unexpected argument \"%s\"",
		    argv[1]);
	if ((resp = api_get("/v1/scheduler", &rc)) == NULL)
		return rc;
	if (cli.json)
		print_json(json_object_get(resp, "queue"));
	else
		print_scheduler(resp);
	json_decref(resp);
	return 0;
}

int
cmd_scheduler(int argc, char **argv)
{
	json_t *body = NULL, *resp = NULL;
	long long q;
	int rc;

	if (argc == 1 || (argc == 2 && strcmp(argv[1], "show") == 0)) {
		resp = api_get("/v1/scheduler", &rc);
	} else if (strcmp(argv[1], "set") == 0) {
		body = json_object();
		for (int i = 2; i < argc; i++) {
			if (strcmp(argv[i], "--policy") == 0 && i + 1 < argc)
				json_object_set_new(body, "policy",
				    json_string(argv[++i]));
			else if (strcmp(argv[i], "--quantum") == 0 && i + 1 <
			    argc) {
				if (parse_duration_s(argv[++i], &q) < 0) {
					json_decref(body);
					return usage_error("scheduler", "--quantum"
					    " takes a duration such as 30s");
				}
				json_object_set_new(body, "quantum_s",
				    json_integer(q));
			} else {
				json_decref(body);
				return usage_error("scheduler", "unknown "
				    "argument \"%s\"", argv[i]);
			}
		}
		if (json_object_size(body) == 0) {
			json_decref(body);
			return usage_error("scheduler", "set what? --policy "
			    "and/or --quantum");
		}
		resp = api_send("PUT", "/v1/scheduler", body, 30, &rc);
	} else
		return usage_error("scheduler", "unknown argument \"%s\"",
		    argv[1]);
	json_decref(body);
	if (resp == NULL)
		return rc;
	return cli_print(resp, print_scheduler);
}
