/*
 * cmd_image.c - `vmgr image`: the image catalog (import, build, list,
 * show, delete).  A build runs in vmgrd; this polls it and prints each
 * step as it begins.
 */
#include "cli.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../lib/util.h"

static void
show(json_t *v)
{
	char a[32], b[32], when[32];
	json_t *users = json_object_get(v, "used_by"), *u;
	size_t i;

	printf("name:       %s\ntype:       %s\nstate:      %s\n", jstr(v,
	    "name"), jstr(v, "type"), jstr(v, "state"));
	if (*jstr(v, "progress"))
		printf("progress:   %s\n", jstr(v, "progress"));
	if (strcmp(jstr(v, "state"), "ready") != 0)
		return;
	printf("path:       %s\n", jstr(v, "path"));
	if (*jstr(v, "format"))
		printf("format:     %s\n", jstr(v, "format"));
	printf("size:       %s\n", fmt_bytes((double)json_integer_value(
	    json_object_get(v, "size_bytes")), a, sizeof(a)));
	if (json_object_get(v, "allocated_bytes"))
		printf("allocated:  %s\n", fmt_bytes((double)json_integer_value(
		    json_object_get(v, "allocated_bytes")), b, sizeof(b)));
	printf("firmware:   %s\n", jstr(v, "firmware"));
	if (*jstr(v, "partitions"))
		printf("partitions: %s\n", jstr(v, "partitions"));
	printf("source:     %s\n", jstr(v, "source"));
	if (json_object_get(v, "created_at"))
		printf("created:    %s\n", fmt_when((long long)json_integer_value(
		    json_object_get(v, "created_at")), when, sizeof(when)));
	printf("used by:    ");
	json_array_foreach(users, i, u)
		printf("%s%s", i ? ", " : "", json_string_value(u));
	printf("%s\n", json_array_size(users) ? "" : "-");
}

static int
list(void)
{
	json_t *resp, *v;
	char a[32];
	size_t i;
	int rc;

	if ((resp = api_get("/v1/images", &rc)) == NULL)
		return rc;
	if (cli.json) {
		print_json(resp);
		json_decref(resp);
		return 0;
	}
	printf("%-20s %-7s %-9s %8s %-8s %s\n", "NAME", "TYPE", "STATE", "SIZE",
	    "FIRMWARE", "USED BY");
	json_array_foreach(resp, i, v) {
		json_t *users = json_object_get(v, "used_by");
		printf("%-20s %-7s %-9s %8s %-8s %zu VM%s\n", jstr(v, "name"),
		    jstr(v, "type"), jstr(v, "state"), json_object_get(v,
		    "size_bytes") ? fmt_bytes((double)json_integer_value(
		    json_object_get(v, "size_bytes")), a, sizeof(a)) : "-",
		    *jstr(v, "firmware") ? jstr(v, "firmware") : "-",
		    json_array_size(users), json_array_size(users) == 1 ? "" :
		    "s");
	}
	json_decref(resp);
	return 0;
}

/* Wait for a build, printing each new step; 0 when the image is ready. */
static int
follow(const char *name)
{
	char path[256], last[512] = "";
	time_t t0 = time(NULL);
	json_t *v;
	int rc;

	snprintf(path, sizeof(path), "/v1/images/%s", name);
	for (;;) {
		if ((v = api_get(path, &rc)) == NULL) {
			fprintf(stderr, "vmgr image: the build of %s ended "
			    "without an image; vmgrd's log and the image "
			    "cache's %s.log say why\n", name, name);
			return rc ? rc : 1;
		}
		const char *state = jstr(v, "state");
		const char *p = jstr(v, "progress");
		if (!cli.json && *p && strcmp(p, last) != 0) {
			printf("[%4lds] %s\n", (long)(time(NULL) - t0), p);
			fflush(stdout);
			snprintf(last, sizeof(last), "%s", p);
		}
		if (strcmp(state, "ready") == 0) {
			rc = cli_print(v, show);
			return rc;
		}
		json_decref(v);
		usleep(500 * 1000);
	}
}

int
cmd_image(int argc, char **argv)
{
	const char *sub = argc > 1 ? argv[1] : "list";
	char path[256], abs[PATH_MAX];
	json_t *resp, *body;
	int rc;

	if (strcmp(sub, "list") == 0 && argc <= 2)
		return list();
	if (argc < 3 || argv[2][0] == '-')
		return usage_error("image", "give an image name");
	snprintf(path, sizeof(path), "/v1/images/%s", argv[2]);
	if (strcmp(sub, "show") == 0 && argc == 3)
		return cli_show(path, show);
	if (strcmp(sub, "delete") == 0 && argc == 3)
		return cli_delete(path, "image", argv[2]);
	if (strcmp(sub, "import") == 0 && argc == 4) {
		if (realpath(argv[3], abs) == NULL)
			return usage_error("image", "cannot find %s", argv[3]);
		if (!cli.json)
			printf("importing %s as %s...\n", abs, argv[2]);
		body = json_pack("{s:s, s:s}", "name", argv[2], "import", abs);
		resp = api_send("POST", "/v1/images", body, 3600, &rc);
		json_decref(body);
		return resp ? cli_print(resp, show) : rc;
	}
	if (strcmp(sub, "build") == 0 && argc >= 3) {
		const char *recipe = argv[2];
		int rebuild = 0;
		for (int a = 3; a < argc; a++) {
			if (strcmp(argv[a], "--rebuild") == 0)
				rebuild = 1;
			else if (strcmp(argv[a], "--recipe") == 0 && a + 1 < argc)
				recipe = argv[++a];
			else
				return usage_error("image", "unknown argument "
				    "\"%s\"", argv[a]);
		}
		body = json_pack("{s:s, s:s, s:b}", "name", argv[2], "build",
		    recipe, "rebuild", rebuild);
		resp = api_send("POST", "/v1/images", body, 3600, &rc);
		json_decref(body);
		if (resp == NULL)
			return rc;
		if (strcmp(jstr(resp, "state"), "ready") == 0)	/* cached */
			return cli_print(resp, show);
		json_decref(resp);
		if (!cli.json)
			printf("building %s from the Debian archive (a few "
			    "minutes)\n", argv[2]);
		return follow(argv[2]);
	}
	return usage_error("image", "unknown subcommand or arguments \"%s\"",
	    sub);
}
