/*
 * cmd_remote.c - `vmgr remote`: the other vmgrd hosts this vmgrd knows.
 * add reads the token (and the CA) from the user's files and hands them
 * to vmgrd, which keeps them and checks that the remote answers with that
 * token; nothing prints the token again.
 */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>


#define TOKEN_FILE_MAX	4096
#define CA_FILE_MAX	(256 << 10)

static void
show(json_t *r)
{
	printf("name:     %s\nurl:      %s\nca:       %s\nadded:    %s\n",
	    jstr(r, "name"), jstr(r, "url"), jstr(r, "ca"), jstr(r,
	    "added_at"));
	if (json_is_true(json_object_get(r, "reachable")))
		printf("answers:  yes: vmgrd %s on %s\n", jstr(r,
		    "vmgrd_version"), jstr(r, "hostname"));
	else
		printf("answers:  no: %s\n", jstr(r, "error"));
}

/* A file's text without its trailing newlines, or NULL (said why). */
static char *
slurp(const char *opt, const char *path, size_t max)
{
	char *s = cli_option_file(opt, path, max);
	size_t len = s ? strlen(s) : 0;

	while (len > 0 && (s[len - 1] == '\n' || s[len - 1] == '\r'))
		s[--len] = '\0';
	return s;
}

static int
add(int argc, char **argv)
{
	const char *token_file = NULL, *ca_file = NULL;
	char *token, *ca = NULL;
	json_t *body, *r;
	int rc;

	if (argc < 4 || argv[2][0] == '-' || argv[3][0] == '-')
		return usage_error("remote", "add NAME URL --token-file FILE "
		    "[--cacert FILE]");
	for (int a = 4; a < argc; a++) {
		if (strcmp(argv[a], "--token-file") == 0 && a + 1 < argc)
			token_file = argv[++a];
		else if (strcmp(argv[a], "--cacert") == 0 && a + 1 < argc)
			ca_file = argv[++a];
		else
			return usage_error("remote", "unknown option \"%s\"",
			    argv[a]);
	}
	if (token_file == NULL)
		return usage_error("remote", "add needs --token-file FILE (the "
		    "remote vmgrd's --token-file)");
	if ((token = slurp("--token-file", token_file, TOKEN_FILE_MAX)) ==
	    NULL)
		return EXIT_REFUSED;
	if (ca_file && (ca = slurp("--cacert", ca_file, CA_FILE_MAX)) ==
	    NULL) {
		free(token);
		return EXIT_REFUSED;
	}
	body = json_pack("{s:s, s:s, s:s}", "name", argv[2], "url", argv[3],
	    "token", token);
	if (ca)
		json_object_set_new(body, "cacert", json_string(ca));
	memset(token, 0, strlen(token));
	free(token);
	free(ca);
	r = api_send("POST", "/v1/remotes", body, 60, &rc);
	json_decref(body);
	if (r == NULL)
		return rc;
	if (cli.json)
		print_json(r);
	else
		printf("added remote %s: %s (vmgrd %s on %s)\n", jstr(r, "name"),
		    jstr(r, "url"), jstr(r, "vmgrd_version"), jstr(r,
		    "hostname"));
	json_decref(r);
	return 0;
}

int
cmd_remote(int argc, char **argv)
{
	const char *sub = argc > 1 ? argv[1] : "list";
	json_t *resp, *r;
	char path[256];
	size_t i;
	int rc;

	if (strcmp(sub, "list") == 0 && argc <= 2) {
		if ((resp = api_get("/v1/remotes", &rc)) == NULL)
			return rc;
		if (cli.json)
			print_json(resp);
		else {
			printf("%-16s %-40s %s\n", "NAME", "URL", "CA");
			json_array_foreach(resp, i, r)
				printf("%-16s %-40s %s\n", jstr(r, "name"),
				    jstr(r, "url"), jstr(r, "ca"));
		}
		json_decref(resp);
		return 0;
	}
	if (strcmp(sub, "add") == 0)
		return add(argc, argv);
	if (argc != 3 || argv[2][0] == '-')
		return usage_error("remote", "give a remote's name");
	snprintf(path, sizeof(path), "/v1/remotes/%s", argv[2]);
	if (strcmp(sub, "show") == 0)
		return cli_show(path, show);
	if (strcmp(sub, "remove") == 0 || strcmp(sub, "delete") == 0)
		return cli_delete(path, "remote", argv[2]);
	return usage_error("remote", "unknown subcommand \"%s\"", sub);
}
