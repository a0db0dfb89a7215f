/*
 * cmd_migrate.c - `vmgr migrate NAME --to REMOTE`: move a running VM, with
 * its disks, to another vmgrd host, following its progress until it ends;
 * `vmgr migrate NAME --cancel`; `vmgr migrations`: every migration this
 * host took part in, with what it cost.
 */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../core/spec.h"

static void
figures(json_t *m)
{
	double dt = json_number_value(json_object_get(m, "downtime_ms"));
	double tt = json_number_value(json_object_get(m, "total_ms"));
	long long db = json_integer_value(json_object_get(m, "disk_bytes"));
	long long mb = json_integer_value(json_object_get(m, "memory_bytes"));

	printf("%s to %s: %s", jstr(m, "vm"), jstr(m, "to"), jstr(m, "state"));
	if (strcmp(jstr(m, "state"), "completed") == 0 && strcmp(jstr(m,
	    "mode"), "offline") == 0)
		printf(" (offline): %.1f MiB of files in %.1f s, total %.1f s",
		    (double)db / 1048576, json_number_value(json_object_get(m,
		    "disk_ms")) / 1000, tt / 1000);
	else if (strcmp(jstr(m, "state"), "completed") == 0)
		printf(": downtime %.0f ms (%.0f ms until it ran there), total "
		    "%.1f s, disks %lld MiB in %.1f s, memory %lld MiB in %lld "
		    "passes", dt, json_number_value(json_object_get(m,
		    "switchover_ms")), tt / 1000, db >> 20, json_number_value(
		    json_object_get(m, "disk_ms")) / 1000, mb >> 20,
		    (long long)json_integer_value(json_object_get(m,
		    "memory_passes")));
	if (json_object_get(m, "error"))
		printf(": %s", jstr(m, "error"));
	printf("\n");
	if (json_object_get(m, "note"))
		printf("note: %s\n", jstr(m, "note"));
}

/* Follow migration id until it ends; a line of progress on a terminal. */
static int
follow(const char *id)
{
	int tty = isatty(STDERR_FILENO) && !cli.json, rc;
	char path[128], last[64] = "";
	json_t *m;

	snprintf(path, sizeof(path), "/v1/migrations/%s", id);
	for (;;) {
		if ((m = api_get(path, &rc)) == NULL)
			return rc;
		const char *st = jstr(m, "state"), *ph = jstr(m, "phase");
		if (strcmp(st, "running") != 0)
			break;
		if (tty) {
			long long tot = json_integer_value(json_object_get(m,
			    "memory_total"));
			long long rem = json_integer_value(json_object_get(m,
			    "memory_remaining"));
			long long dsz = json_integer_value(json_object_get(m,
			    "disk_size"));
			long long dby = json_integer_value(json_object_get(m,
			    "disk_bytes"));
			fprintf(stderr, "\r%-12s", ph);
			if (strcmp(ph, "disks") == 0 && dsz > 0)
				fprintf(stderr, " %3lld%% of %lld MiB%22s",
				    (dby > dsz ? dsz : dby) * 100 / dsz,
				    dsz >> 20, "");
			else if (strcmp(ph, "memory") == 0 && tot > 0)
				fprintf(stderr, " %3lld%% of %lld MiB, pass %lld, "
				    "%.0f Mbit/s   ", (tot - rem) * 100 / tot,
				    tot >> 20, (long long)json_integer_value(
				    json_object_get(m, "memory_passes")),
				    json_number_value(json_object_get(m,
				    "mbps")));
			else
				fprintf(stderr, "%40s", "");
		} else if (!cli.json && strcmp(last, ph) != 0)
			printf("%s...\n", ph);
		snprintf(last, sizeof(last), "%s", ph);
		json_decref(m);
		usleep(250 * 1000);
	}
	if (tty)
		fprintf(stderr, "\r%60s\r", "");
	rc = strcmp(jstr(m, "state"), "completed") == 0 ? 0 : EXIT_REFUSED;
	if (cli.json)
		print_json(m);
	else
		figures(m);
	json_decref(m);
	return rc;
}

/* The migration of vm that is running here, or NULL (said so). */
static json_t *
running_of(const char *vm, int *rc)
{
	json_t *all = api_get("/v1/migrations", rc), *m, *found = NULL;
	size_t i;

	if (all == NULL)
		return NULL;
	json_array_foreach(all, i, m)
		if (strcmp(jstr(m, "vm"), vm) == 0 && strcmp(jstr(m, "state"),
		    "running") == 0 && strcmp(jstr(m, "role"), "out") == 0)
			found = json_incref(m);
	json_decref(all);
	if (found == NULL) {
		fprintf(stderr, "vmgr: %s is not migrating from here\n", vm);
		*rc = EXIT_REFUSED;
	}
	return found;
}

int
cmd_migrate(int argc, char **argv)
{
	const char *to = NULL;
	int cancel = 0, wait = 1, rc;
	json_t *body, *r;
	char path[256];

	if (argc < 2 || argv[1][0] == '-')
		return usage_error("migrate", "give the VM's name");
	if (!spec_name_valid(argv[1]))
		return usage_error("migrate", "\"%.64s\" is not a VM name",
		    argv[1]);
	body = json_object();
	for (int a = 2; a < argc; a++) {
		const char *o = argv[a], *v = a + 1 < argc ? argv[a + 1] : NULL;
		long long n;
		uint64_t bytes;
		if (strcmp(o, "--to") == 0 && v)
			to = v, a++;
		else if (strcmp(o, "--cancel") == 0)
			cancel = 1;
		else if (strcmp(o, "--no-wait") == 0)
			wait = 0;
		else if (strcmp(o, "--auto-converge") == 0)
			json_object_set_new(body, "auto_converge", json_true());
		else if (strcmp(o, "--postcopy") == 0)
			json_object_set_new(body, "postcopy", json_true());
		else if (strcmp(o, "--offline") == 0)
			json_object_set_new(body, "offline", json_true());
		else if (strcmp(o, "--max-downtime") == 0 && v) {
			char *end;
			n = strtoll(v, &end, 10);
			if (end == v || n <= 0 || (*end && strcmp(end, "ms") != 0 &&
			    strcmp(end, "s") != 0)) {
				json_decref(body);
				return usage_error("migrate", "--max-downtime: a "
				    "time such as 300ms or 1s");
			}
			json_object_set_new(body, "max_downtime_ms", json_integer(
			    strcmp(end, "s") == 0 ? n * 1000 : n));
			a++;
		} else if (strcmp(o, "--bandwidth") == 0 && v) {
			if (spec_size_parse(v, &bytes) < 0 || bytes == 0) {
				json_decref(body);
				return usage_error("migrate", "--bandwidth: bytes "
				    "per second, such as 100M or 1G");
			}
			json_object_set_new(body, "bandwidth", json_integer(
			    (json_int_t)bytes));
			a++;
		} else if (strcmp(o, "--timeout") == 0 && v) {
			if ((n = atoll(v)) <= 0) {
				json_decref(body);
				return usage_error("migrate", "--timeout: seconds");
			}
			json_object_set_new(body, "timeout_s", json_integer(n));
			a++;
		} else {
			json_decref(body);
			return usage_error("migrate", "unknown option \"%s\"", o);
		}
	}
	if (cancel) {
		json_decref(body);
		if ((r = running_of(argv[1], &rc)) == NULL)
			return rc;
		snprintf(path, sizeof(path), "/v1/migrations/%s/cancel",
		    jstr(r, "id"));
		json_decref(r);
		if ((r = api_send("POST", path, NULL, 60, &rc)) == NULL)
			return rc;
		if (cli.json)
			print_json(r);
		else
			printf("cancelled the migration of %s; it stays here\n",
			    argv[1]);
		json_decref(r);
		return 0;
	}
	if (to == NULL) {
		json_decref(body);
		return usage_error("migrate", "--to REMOTE is needed (vmgr "
		    "remote list)");
	}
	json_object_set_new(body, "to", json_string(to));
	snprintf(path, sizeof(path), "/v1/vms/%s/migrate", argv[1]);
	r = api_send("POST", path, body, 60, &rc);
	json_decref(body);
	if (r == NULL)
		return rc;
	if (!wait) {
		if (cli.json)
			print_json(r);
		else
			printf("migrating %s to %s (migration %s)\n", argv[1], to,
			    jstr(r, "id"));
		json_decref(r);
		return 0;
	}
	char id[40];
	snprintf(id, sizeof(id), "%s", jstr(r, "id"));
	json_decref(r);
	return follow(id);
}

static const char *
when(json_t *m)
{
	static char buf[32];
	time_t t = (time_t)(json_integer_value(json_object_get(m,
	    "started_at")) / 1000);

	strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S", localtime(&t));
	return buf;
}

int
cmd_migrations(int argc, char **argv)
{
	json_t *all, *m;
	size_t i;
	int rc;

	(void)argv;
	if (argc > 1)
		return usage_error("migrations", "takes no arguments");
	if ((all = api_get("/v1/migrations", &rc)) == NULL)
		return rc;
	if (cli.json) {
		print_json(all);
		json_decref(all);
		return 0;
	}
	printf("%-19s %-14s %-12s %-12s %-7s %-10s %-11s %9s %9s %s\n",
	    "STARTED", "VM", "FROM", "TO", "MODE", "STATE", "PHASE", "DOWNTIME",
	    "TOTAL", "ERROR");
	json_array_foreach(all, i, m) {
		char dt[16] = "-", tt[16] = "-";
		if (strcmp(jstr(m, "role"), "out") == 0 && strcmp(jstr(m,
		    "state"), "completed") == 0) {
			if (strcmp(jstr(m, "mode"), "live") == 0)
				snprintf(dt, sizeof(dt), "%.0fms",
				    json_number_value(json_object_get(m,
				    "downtime_ms")));
			snprintf(tt, sizeof(tt), "%.1fs", json_number_value(
			    json_object_get(m, "total_ms")) / 1000);
		}
		printf("%-19s %-14s %-12.12s %-12.12s %-7s %-10s %-11s %9s %9s "
		    "%s\n", when(m), jstr(m, "vm"), jstr(m, "from"), jstr(m,
		    "to"), jstr(m, "mode"), jstr(m, "state"), jstr(m, "phase"),
		    dt, tt, jstr(m, "error"));
	}
	json_decref(all);
	return 0;
}
