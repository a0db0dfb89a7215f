/*
 * cmd_net.c - `vmgr network`: create, list, show and delete the networks
 * VMs attach to with `--nic NAME`: isolated ones, bridges of vmgr's own,
 * and bridges of the host's that vmgr adopts.
 */
#include "cli.h"

#include <stdio.h>
#include <string.h>

static void
show(json_t *n)
{
	json_t *m;
	size_t i;

	printf("name:     %s\ntype:     %s\nsubnet:   %s\ncreated:  %s\n",
	    jstr(n, "name"), jstr(n, "type"), *jstr(n, "subnet") ? jstr(n,
	    "subnet") : "(its network's)", jstr(n, "created_at"));
	if (*jstr(n, "bridge"))
		printf("bridge:   %s%s\n", jstr(n, "bridge"), json_is_true(
		    json_object_get(n, "adopted")) ? " (adopted: used as it is, "
		    "never deleted)" : "");
	if (json_is_true(json_object_get(n, "nat")))
		printf("nat:      to the host's uplink (nftables table ip "
		    "vmgr_%lld)\n", (long long)json_integer_value(
		    json_object_get(n, "id")));
	if (json_object_get(n, "mtu"))
		printf("mtu:      %lld\n", (long long)json_integer_value(
		    json_object_get(n, "mtu")));
	if (strcmp(jstr(n, "state"), "down") == 0)
		printf("state:    down: %s\n", jstr(n, "error"));
	json_array_foreach(json_object_get(n, "members"), i, m)
		printf("member:   %s nic %lld  %s  %s%s\n", jstr(m, "vm"),
		    (long long)json_integer_value(json_object_get(m, "nic")),
		    jstr(m, "mac"), jstr(m, "ip"), json_is_true(json_object_get(m,
		    "running")) ? "  (running)" : "");
}

int
cmd_network(int argc, char **argv)
{
	const char *sub = argc > 1 ? argv[1] : "list";
	json_t *resp = NULL, *body, *n;
	char path[256];
	size_t i;
	int rc;

	if (strcmp(sub, "list") == 0 && argc <= 2) {
		if ((resp = api_get("/v1/networks", &rc)) == NULL)
			return rc;
		if (cli.json)
			print_json(resp);
		else {
			printf("%-16s %-9s %-18s %-15s %-4s %s\n", "NAME", "TYPE",
			    "SUBNET", "BRIDGE", "VMS", "STATE");
			json_array_foreach(resp, i, n)
				printf("%-16s %-9s %-18s %-15s %-4zu %s\n",
				    jstr(n, "name"), jstr(n, "type"), *jstr(n,
				    "subnet") ? jstr(n, "subnet") : "-", *jstr(n,
				    "bridge") ? jstr(n, "bridge") : "-",
				    json_array_size(json_object_get(n, "members")),
				    jstr(n, "state"));
		}
		json_decref(resp);
		return 0;
	}
	if (argc < 3 || argv[2][0] == '-')
		return usage_error("network", "give a network name");
	snprintf(path, sizeof(path), "/v1/networks/%s", argv[2]);
	if (strcmp(sub, "show") == 0 && argc == 3)
		return cli_show(path, show);
	if (strcmp(sub, "delete") == 0 && argc == 3)
		return cli_delete(path, "network", argv[2]);
	if (strcmp(sub, "create") != 0)
		return usage_error("network", "unknown subcommand \"%s\"", sub);
	body = json_pack("{s:s}", "name", argv[2]);
	for (int a = 3; a < argc; a++) {
		if ((strcmp(argv[a], "--subnet") == 0 || strcmp(argv[a],
		    "--type") == 0) && a + 1 < argc) {
			json_object_set_new(body, argv[a] + 2,
			    json_string(argv[a + 1]));
			a++;
		} else if ((strcmp(argv[a], "--bridge-name") == 0 ||
		    strcmp(argv[a], "--adopt-bridge") == 0) && a + 1 < argc) {
			/* Either implies a bridge network. */
			json_object_set_new(body, argv[a][2] == 'b' ? "bridge" :
			    "adopt", json_string(argv[a + 1]));
			if (!json_object_get(body, "type"))
				json_object_set_new(body, "type",
				    json_string("bridge"));
			a++;
		} else if (strcmp(argv[a], "--nat") == 0) {
			json_object_set_new(body, "nat", json_true());
		} else if (strcmp(argv[a], "--mtu") == 0 && a + 1 < argc) {
			char *end;
			long v = strtol(argv[++a], &end, 10);
			if (*argv[a] == '\0' || *end) {
				json_decref(body);
				return usage_error("network", "--mtu: a number of "
				    "bytes, such as 1500");
			}
			json_object_set_new(body, "mtu", json_integer(v));
		} else {
			json_decref(body);
			return usage_error("network", "unknown argument \"%s\"",
			    argv[a]);
		}
	}
	resp = api_send("POST", "/v1/networks", body, 30, &rc);
	json_decref(body);
	if (resp == NULL)
		return rc;
	if (cli.json)
		print_json(resp);
	else
		printf("created network %s (%s, %s%s%s%s)\n", jstr(resp, "name"),
		    jstr(resp, "type"), *jstr(resp, "subnet") ? jstr(resp,
		    "subnet") : "adopted", *jstr(resp, "bridge") ? ", bridge " :
		    "", jstr(resp, "bridge"), json_is_true(json_object_get(resp,
		    "nat")) ? ", NAT to the uplink" : "");
	json_decref(resp);
	return 0;
}
