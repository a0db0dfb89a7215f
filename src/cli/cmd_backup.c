/*
 * cmd_backup.c - `vmgr backup`: create (with progress on a terminal),
 * list, show, verify, restore, delete and prune.
 */
#include "cli.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../lib/util.h"

static long long
jint(json_t *o, const char *k)
{
	return (long long)json_integer_value(json_object_get(o, k));
}

static void
show(json_t *b)
{
	char when[32], size[32], vsize[32];
	json_t *d;
	size_t i;

	printf("id:         %lld\nvm:         %s\nkind:       %s",
	    jint(b, "id"), jstr(b, "vm"), jstr(b, "kind"));
	if (jint(b, "parent"))
		printf(" (on backup %lld)", jint(b, "parent"));
	printf("\nstate:      %s\ndir:        %s\n", jstr(b, "state"),
	    jstr(b, "dir"));
	printf("taken:      %s\nsize:       %s\n", fmt_when(jint(b,
	    "created_at"), when, sizeof(when)), fmt_bytes(jint(b, "size_bytes"),
	    size, sizeof(size)));
	printf("verified:   %s", json_is_null(json_object_get(b, "verified")) ?
	    "never" : json_is_true(json_object_get(b, "verified")) ? "ok" :
	    "FAILED");
	if (jint(b, "verified_at"))
		printf(" (%s)", fmt_when(jint(b, "verified_at"), when,
		    sizeof(when)));
	printf("\n");
	if (*jstr(b, "consistency"))
		printf("consistent: %s (%s)\n", jstr(b, "consistency"),
		    jstr(b, "consistency_reason"));
	json_array_foreach(json_object_get(b, "disks"), i, d)
		printf("disk %lld:     %s  %s of %s  sha256 %.16s...\n",
		    jint(d, "index"), jstr(d, "volume"), fmt_bytes(jint(d,
		    "size"), size, sizeof(size)), fmt_bytes(jint(d,
		    "virtual_size"), vsize, sizeof(vsize)), jstr(d, "sha256"));
	if (*jstr(b, "error"))
		printf("error:      %s\n", jstr(b, "error"));
}

static int
list(const char *vm)
{
	char path[128], when[32], size[32], kind[40];
	json_t *resp, *b;
	size_t i;
	int rc;

	snprintf(path, sizeof(path), "/v1/backups%s%s", vm ? "?vm=" : "",
	    vm ? vm : "");
	if ((resp = api_get(path, &rc)) == NULL)
		return rc;
	if (cli.json)
		print_json(resp);
	else {
		printf("%-6s %-16s %-18s %-20s %9s %s\n", "ID", "VM", "KIND",
		    "TAKEN", "SIZE", "VERIFIED");
		json_array_foreach(resp, i, b) {
			if (jint(b, "parent"))
				snprintf(kind, sizeof(kind), "incremental<%lld",
				    jint(b, "parent"));
			else
				snprintf(kind, sizeof(kind), "%s", jstr(b, "kind"));
			printf("%-6lld %-16s %-18s %-20s %9s %s\n", jint(b, "id"),
			    jstr(b, "vm"), kind, fmt_when(jint(b, "created_at"),
			    when, sizeof(when)), strcmp(jstr(b, "state"),
			    "complete") ? jstr(b, "state") : fmt_bytes(jint(b,
			    "size_bytes"), size, sizeof(size)),
			    json_is_null(json_object_get(b, "verified")) ? "-" :
			    json_is_true(json_object_get(b, "verified")) ? "ok" :
			    "FAILED");
		}
	}
	json_decref(resp);
	return 0;
}

static void
bar(long long done, long long total, double elapsed)
{
	char d[32], t[32];
	int width = 30, fill = total ? (int)(width * done / total) : 0;

	fprintf(stderr, "\r[%.*s%*s] %3d%%  %s / %s  %.0fs ", fill,
	    "##############################", width - fill, "",
	    total ? (int)(100 * done / total) : 0, fmt_bytes(done, d,
	    sizeof(d)), fmt_bytes(total, t, sizeof(t)), elapsed);
	fflush(stderr);
}

static void
print_done(json_t *b)
{
	char size[32];

	if (cli.json)
		print_json(b);
	else
		printf("backup %lld of %s: %s, %s in %s%s%s\n", jint(b, "id"),
		    jstr(b, "vm"), jstr(b, "kind"), fmt_bytes(jint(b,
		    "size_bytes"), size, sizeof(size)), jstr(b, "dir"),
		    *jstr(b, "consistency") ? ", consistency: " : "",
		    jstr(b, "consistency"));
}

/*
 * Start a backup.  On a terminal, follow it with a progress bar until it
 * is complete or has failed; otherwise vmgrd answers when it is done.
 */
static int
create(int argc, char **argv)
{
	json_t *body = json_pack("{s:s}", "vm", argv[2]), *resp, *b;
	char path[64], abs[PATH_MAX];
	int rc, tty = isatty(2) && !cli.json;
	struct timespec ts, t0;

	for (int a = 3; a < argc; a++) {
		long long mib;
		if (strcmp(argv[a], "--incremental") == 0)
			json_object_set_new(body, "incremental", json_true());
		else if (strcmp(argv[a], "--bwlimit") == 0 && a + 1 < argc) {
			if (parse_size_mib(argv[++a], &mib) < 0 || mib <= 0) {
				json_decref(body);
				return usage_error("backup", "--bwlimit takes a rate "
				    "per second such as 50M, not \"%s\"", argv[a]);
			}
			json_object_set_new(body, "bwlimit_mib", json_integer(mib));
		}
		else if (strcmp(argv[a], "--no-freeze") == 0)
			json_object_set_new(body, "freeze", json_false());
		else if (strcmp(argv[a], "--freeze-timeout") == 0 &&
		    a + 1 < argc) {
			long long secs;
			if (parse_duration_s(argv[++a], &secs) < 0 || secs < 1 ||
			    secs > 600) {
				json_decref(body);
				return usage_error("backup", "--freeze-timeout "
				    "takes a duration from 1s to 10m");
			}
			json_object_set_new(body, "freeze_timeout_s",
			    json_integer(secs));
		}
		else if (strcmp(argv[a], "--store") == 0 && a + 1 < argc) {
			if (realpath(argv[++a], abs) == NULL) {
				json_decref(body);
				return usage_error("backup", "cannot find the "
				    "store %s", argv[a]);
			}
			json_object_set_new(body, "store", json_string(abs));
		} else {
			json_decref(body);
			return usage_error("backup", "unknown argument \"%s\"",
			    argv[a]);
		}
	}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	/* Without a terminal to show progress on, vmgrd answers when done. */
	resp = api_send("POST", tty ? "/v1/backups" : "/v1/backups?wait=1",
	    body, tty ? 60 : 0, &rc);
	json_decref(body);
	if (resp == NULL)
		return rc;
	if (!tty) {
		print_done(resp);
		json_decref(resp);
		return 0;
	}
	snprintf(path, sizeof(path), "/v1/backups/%lld", jint(resp, "id"));
	json_decref(resp);
	/* Polled often at first (small backups end fast), then every 200 ms. */
	for (useconds_t nap = 10000;; nap = nap < 200000 ? nap * 2 : 200000) {
		if ((b = api_get(path, &rc)) == NULL)
			return rc;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		double el = (double)(ts.tv_sec - t0.tv_sec) +
		    (double)(ts.tv_nsec - t0.tv_nsec) / 1e9;
		if (strcmp(jstr(b, "state"), "running") != 0) {
			if (tty)
				fprintf(stderr, "\r%60s\r", "");
			break;
		}
		json_t *p = json_object_get(b, "progress");
		if (tty && p)
			bar(jint(p, "done_bytes"), jint(p, "total_bytes"), el);
		json_decref(b);
		usleep(nap);
	}
	if (strcmp(jstr(b, "state"), "complete") != 0) {
		fprintf(stderr, "vmgr: backup %lld of %s failed: %s\n",
		    jint(b, "id"), argv[2], jstr(b, "error"));
		json_decref(b);
		return EXIT_REFUSED;
	}
	print_done(b);
	json_decref(b);
	return 0;
}

static int
verify(const char *path)
{
	json_t *resp, *f;
	size_t i;
	int rc, ok;

	if ((resp = api_send("POST", path, NULL, 0, &rc)) == NULL)
		return rc;
	ok = json_is_true(json_object_get(resp, "ok"));
	if (cli.json)
		print_json(resp);
	else {
		json_array_foreach(json_object_get(resp, "files"), i, f)
			printf("%-4s %s%s%s\n", json_is_true(json_object_get(f,
			    "ok")) ? "ok" : "BAD", jstr(f, "path"),
			    *jstr(f, "error") ? ": " : "", jstr(f, "error"));
		if (*jstr(resp, "error"))
			printf("error: %s\n", jstr(resp, "error"));
		printf("backup %lld: %s\n", jint(resp, "id"), ok ?
		    "verified" : "DAMAGED");
	}
	json_decref(resp);
	return ok ? 0 : EXIT_REFUSED;
}

int
cmd_backup(int argc, char **argv)
{
	const char *sub = argc > 1 ? argv[1] : "list";
	char path[128];
	json_t *resp, *body = NULL;
	int rc;

	if (strcmp(sub, "list") == 0 && argc <= 3)
		return list(argc == 3 ? argv[2] : NULL);
	if (argc < 3 || argv[2][0] == '-')
		return usage_error("backup", "give a VM name or a backup id");
	if (strcmp(sub, "create") == 0)
		return create(argc, argv);
	if (strcmp(sub, "prune") == 0) {
		long long keep = -1;
		char *end;
		if (argc == 5 && strcmp(argv[3], "--keep") == 0)
			keep = strtoll(argv[4], &end, 10);
		if (keep < 1 || *end)
			return usage_error("backup", "prune VM --keep N (N >= 1)");
		body = json_pack("{s:s, s:I}", "vm", argv[2], "keep",
		    (json_int_t)keep);
		resp = api_send("POST", "/v1/backups/prune", body, 0, &rc);
		json_decref(body);
		if (resp == NULL)
			return rc;
		if (cli.json)
			print_json(resp);
		else
			printf("%s: kept %zu, deleted %zu, merged %zu\n", argv[2],
			    json_array_size(json_object_get(resp, "kept")),
			    json_array_size(json_object_get(resp, "deleted")),
			    json_array_size(json_object_get(resp, "merged")));
		json_decref(resp);
		return 0;
	}
	snprintf(path, sizeof(path), "/v1/backups/%s", argv[2]);
	if (strcmp(sub, "show") == 0 && argc == 3)
		return cli_show(path, show);
	if (strcmp(sub, "delete") == 0 && argc == 3)
		return cli_delete(path, "backup", argv[2]);
	if (strcmp(sub, "verify") == 0 && argc == 3) {
		strncat(path, "/verify", sizeof(path) - strlen(path) - 1);
		return verify(path);
	}
	if (strcmp(sub, "restore") == 0 && (argc == 3 || (argc == 5 &&
	    strcmp(argv[3], "--as") == 0))) {
		strncat(path, "/restore", sizeof(path) - strlen(path) - 1);
		body = argc == 5 ? json_pack("{s:s}", "as", argv[4]) : NULL;
		resp = api_send("POST", path, body, 0, &rc);
		json_decref(body);
		if (resp == NULL)
			return rc;
		if (cli.json)
			print_json(resp);
		else
			printf("restored backup %s as %s (%s)\n", argv[2],
			    jstr(resp, "name"), jstr(resp, "state"));
		json_decref(resp);
		return 0;
	}
	return usage_error("backup", "unknown subcommand or arguments \"%s\"",
	    sub);
}
