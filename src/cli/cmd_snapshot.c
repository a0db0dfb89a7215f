/*
 * cmd_snapshot.c - `vmgr snapshot`: internal snapshots of a VM's disks,
 * with or without its memory.
 */
#include "cli.h"

#include <stdio.h>
#include <string.h>

int
cmd_snapshot(int argc, char **argv)
{
	const char *sub = argc > 1 ? argv[1] : "";
	char path[320], when[32], size[32];
	json_t *resp, *s;
	size_t i;
	int rc, memory = 0, nofreeze = 0;

	if (argc < 3 || argv[2][0] == '-')
		return usage_error("snapshot", "give a subcommand and a VM name");
	snprintf(path, sizeof(path), "/v1/vms/%s/snapshots", argv[2]);
	if (strcmp(sub, "list") == 0 && argc == 3) {
		if ((resp = api_get(path, &rc)) == NULL)
			return rc;
		if (cli.json)
			print_json(resp);
		else {
			printf("%-24s %-20s %-8s %s\n", "NAME", "TAKEN", "MEMORY",
			    "VM CLOCK");
			json_array_foreach(resp, i, s)
				printf("%-24s %-20s %-8s %.1fs%s\n",
				    jstr(s, "name"), fmt_when((long long)
				    json_integer_value(json_object_get(s,
				    "created_at")), when, sizeof(when)),
				    json_is_true(json_object_get(s, "memory")) ?
				    fmt_bytes((long long)json_integer_value(
				    json_object_get(s, "vm_state_bytes")), size,
				    sizeof(size)) : "-",
				    (double)json_integer_value(json_object_get(s,
				    "vm_clock_ms")) / 1000, json_is_false(
				    json_object_get(s, "complete")) ?
				    "  (not on every disk)" : "");
		}
		json_decref(resp);
		return 0;
	}
	if (argc < 4 || argv[3][0] == '-')
		return usage_error("snapshot", "give a snapshot name");
	for (int a = 4; a < argc; a++) {
		if (strcmp(sub, "create") == 0 && strcmp(argv[a], "--memory") == 0)
			memory = 1;
		else if (strcmp(sub, "create") == 0 &&
		    strcmp(argv[a], "--no-freeze") == 0)
			nofreeze = 1;
		else
			return usage_error("snapshot", "unknown argument \"%s\"",
			    argv[a]);
	}
	if (strcmp(sub, "create") == 0) {
		json_t *body = json_pack("{s:s, s:b}", "name", argv[3], "memory",
		    memory);
		if (nofreeze)
			json_object_set_new(body, "freeze", json_false());
		resp = api_send("POST", path, body, 3600, &rc);
		json_decref(body);
	} else if (strcmp(sub, "revert") == 0 || strcmp(sub, "delete") == 0) {
		size_t n = strlen(path);
		snprintf(path + n, sizeof(path) - n, "/%s%s", argv[3],
		    strcmp(sub, "revert") == 0 ? "/revert" : "");
		resp = api_send(strcmp(sub, "revert") == 0 ? "POST" : "DELETE",
		    path, NULL, 3600, &rc);
	} else
		return usage_error("snapshot", "unknown subcommand \"%s\"", sub);
	if (resp == NULL)
		return rc;
	if (cli.json)
		print_json(resp);
	else if (strcmp(sub, "create") == 0)
		printf("took snapshot %s of %s%s%s%s\n", argv[3], argv[2],
		    memory ? " with its memory" : "", *jstr(resp,
		    "consistency") ? ", consistency: " : "", jstr(resp,
		    "consistency"));
	else if (strcmp(sub, "delete") == 0)
		printf("deleted snapshot %s of %s\n", argv[3], argv[2]);
	else
		printf("reverted %s to %s; it is %s%s\n", argv[2], argv[3],
		    jstr(resp, "vm_state"), json_is_true(json_object_get(resp,
		    "backup_tracking_reset")) ? " (its next backup is a full "
		    "one)" : "");
	json_decref(resp);
	return 0;
}
