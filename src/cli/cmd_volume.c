/*
 * cmd_volume.c - `vmgr volume`: the volume pool (create, clone, import,
 * list, show, resize, delete).
 */
#include "cli.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/util.h"

static void
show(json_t *v)
{
	char a[32], b[32], when[32];

	printf("name:       %s\npath:       %s\n", jstr(v, "name"),
	    jstr(v, "path"));
	printf("size:       %s\nallocated:  %s\n", fmt_bytes((long long)
	    json_integer_value(json_object_get(v, "size_bytes")), a, sizeof(a)),
	    fmt_bytes((long long)json_integer_value(json_object_get(v,
	    "allocated_bytes")), b, sizeof(b)));
	if (*jstr(v, "backing"))
		printf("backing:    %s (linked clone)\n", jstr(v, "backing"));
	printf("used by:    %s\n", *jstr(v, "used_by") ? jstr(v, "used_by") :
	    "-");
	if (*jstr(v, "owner"))
		printf("owner:      %s (deleted with it)\n", jstr(v, "owner"));
	printf("snapshots:  %lld\nclones:     %lld%s\ncreated:    %s\n",
	    (long long)json_integer_value(json_object_get(v, "snapshots")),
	    (long long)json_integer_value(json_object_get(v, "clones")),
	    json_is_true(json_object_get(v, "read_only")) ? " (read-only base)"
	    : "", fmt_when((long long)json_integer_value(json_object_get(v,
	    "created_at")), when, sizeof(when)));
	if (*jstr(v, "error"))
		printf("error:      %s\n", jstr(v, "error"));
}

static int
list(void)
{
	json_t *resp, *v;
	char a[32], b[32];
	size_t i;
	int rc;

	if ((resp = api_get("/v1/volumes", &rc)) == NULL)
		return rc;
	if (cli.json)
		print_json(resp);
	else {
		printf("%-20s %8s %10s %-16s %-16s %s\n", "NAME", "SIZE",
		    "ALLOCATED", "BACKING", "USED BY", "SNAPSHOTS");
		json_array_foreach(resp, i, v)
			printf("%-20s %8s %10s %-16s %-16s %lld\n",
			    jstr(v, "name"), fmt_bytes((long long)
			    json_integer_value(json_object_get(v, "size_bytes")),
			    a, sizeof(a)), fmt_bytes((long long)json_integer_value(
			    json_object_get(v, "allocated_bytes")), b, sizeof(b)),
			    *jstr(v, "backing") ? jstr(v, "backing") : "-",
			    *jstr(v, "used_by") ? jstr(v, "used_by") : "-",
			    (long long)json_integer_value(json_object_get(v,
			    "snapshots")));
	}
	json_decref(resp);
	return 0;
}

/* POST body (stolen), then print the volume. */
static int
send(const char *method, const char *path, json_t *body)
{
	json_t *resp;
	int rc;

	resp = api_send(method, path, body, 3600, &rc);
	json_decref(body);
	if (resp == NULL)
		return rc;
	return cli_print(resp, show);
}

int
cmd_volume(int argc, char **argv)
{
	const char *sub = argc > 1 ? argv[1] : "list";
	char path[256];
	json_t *body;
	int rc;

	if (strcmp(sub, "list") == 0 && argc <= 2)
		return list();
	if (argc < 3 || argv[2][0] == '-')
		return usage_error("volume", "give a volume name");
	snprintf(path, sizeof(path), "/v1/volumes/%s", argv[2]);
	if (strcmp(sub, "show") == 0 && argc == 3)
		return cli_show(path, show);
	if (strcmp(sub, "delete") == 0 && argc == 3)
		return cli_delete(path, "volume", argv[2]);
	if (strcmp(sub, "import") == 0 && argc == 4) {
		char abs[PATH_MAX];
		if (realpath(argv[3], abs) == NULL)
			return usage_error("volume", "cannot find %s", argv[3]);
		return send("POST", "/v1/volumes", json_pack("{s:s, s:s}",
		    "name", argv[2], "import", abs));
	}
	if (strcmp(sub, "resize") == 0 && argc == 4) {
		const char *size = argv[3];
		int grow = size[0] == '+';
		uint64_t bytes;
		if (cli_size(size + grow, &bytes) < 0)
			return usage_error("volume", "resize takes a size such as "
			    "4G or +512M, not \"%s\"", size);
		if (grow) {
			json_t *cur = api_get(path, &rc);
			if (cur == NULL)
				return rc;
			bytes += (uint64_t)json_integer_value(json_object_get(cur,
			    "size_bytes"));
			json_decref(cur);
		}
		snprintf(path, sizeof(path), "/v1/volumes/%s/resize", argv[2]);
		return send("POST", path, json_pack("{s:I}", "size",
		    (json_int_t)bytes));
	}
	if (strcmp(sub, "create") != 0)
		return usage_error("volume", "unknown subcommand or arguments "
		    "\"%s\"", sub);
	body = json_pack("{s:s}", "name", argv[2]);
	for (int a = 3; a < argc; a++) {
		if (strcmp(argv[a], "--size") == 0 && a + 1 < argc) {
			uint64_t bytes;
			if (cli_size(argv[++a], &bytes) < 0) {
				json_decref(body);
				return usage_error("volume", "--size takes a size "
				    "such as 2G or 512M, not \"%s\"", argv[a]);
			}
			json_object_set_new(body, "size", json_integer(
			    (json_int_t)bytes));
		} else if (strcmp(argv[a], "--from") == 0 && a + 1 < argc)
			json_object_set_new(body, "from", json_string(argv[++a]));
		else {
			json_decref(body);
			return usage_error("volume", "unknown argument \"%s\"",
			    argv[a]);
		}
	}
	if (!json_object_get(body, "size") && !json_object_get(body,
	    "from")) {
		json_decref(body);
		return usage_error("volume", "create needs --size or --from");
	}
	return send("POST", "/v1/volumes", body);
}
