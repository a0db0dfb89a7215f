/*
 * cmd_events.c - `vmgr events`: the lifecycle log, once or followed.
 */
#include "cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/spec.h"

void
print_event_line(json_t *ev)
{
	const char *from = json_string_value(json_object_get(ev, "from"));
	const char *reason = json_string_value(json_object_get(ev, "reason"));

	printf("%6lld  %s  %-12s %-8s -> %-8s %-9s %s\n",
	    (long long)json_integer_value(json_object_get(ev, "seq")),
	    json_string_value(json_object_get(ev, "time")),
	    json_string_value(json_object_get(ev, "vm")),
	    from ? from : "-",
	    json_string_value(json_object_get(ev, "to")),
	    json_string_value(json_object_get(ev, "event")),
	    reason ? reason : "");
}

static void
stream_line(const char *line, void *arg)
{
	json_t *ev;

	(void)arg;
	if (*line == '\0')
		return;
	if (cli.json) {
		printf("%s\n", line);
	} else if ((ev = json_loads(line, 0, NULL)) != NULL) {
		if (json_object_get(ev, "error"))
			print_api_error(400, ev);
		else
			print_event_line(ev);
		json_decref(ev);
	}
	fflush(stdout);
}

int
cmd_events(int argc, char **argv)
{
	long long since = 0, limit = 1000;
	const char *vm = NULL;
	int follow = 0;
	char path[512];
	json_t *resp = NULL, *ev;
	long status;
	int rc;
	size_t i;

	for (int a = 1; a < argc; a++) {
		long long *dst = NULL;
		if (strcmp(argv[a], "--follow") == 0 || strcmp(argv[a], "-f") ==
		    0)
			follow = 1;
		else if (strcmp(argv[a], "--since") == 0)
			dst = &since;
		else if (strcmp(argv[a], "--limit") == 0)
			dst = &limit;
		else if (argv[a][0] == '-')
			return usage_error("events", "unknown option \"%s\"",
			    argv[a]);
		else if (vm == NULL)
			vm = argv[a];
		else
			return usage_error("events", "give at most one VM");
		if (dst) {
			char *end;
			if (a + 1 >= argc)
				return usage_error("events", "%s needs a "
				    "number", argv[a]);
			errno = 0;
			*dst = strtoll(argv[++a], &end, 10);
			if (errno || *end || *dst < 0)
				return usage_error("events", "%s needs a "
				    "number", argv[a - 1]);
		}
	}
	if (vm && !spec_name_valid(vm))
		return usage_error("events", "\"%s\" is not a valid VM name",
		    vm);
	snprintf(path, sizeof(path), "/v1/events?since=%lld&limit=%lld%s%s%s",
	    since, limit, vm ? "&vm=" : "", vm ? vm : "",
	    follow ? "&follow=1" : "");
	if (follow) {
		status = api_stream(path, stream_line, NULL);
		return status == 200 ? 0 : EXIT_REFUSED;
	}
	if ((resp = api_get(path, &rc)) == NULL)
		return rc;
	if (cli.json)
		print_json(resp);
	else {
		printf("%6s  %-24s  %-12s %-8s    %-8s %-9s %s\n", "SEQ",
		    "TIME", "VM", "FROM", "TO", "EVENT", "REASON");
		json_array_foreach(resp, i, ev)
			print_event_line(ev);
	}
	json_decref(resp);
	return 0;
}
