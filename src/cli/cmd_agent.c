/*
 * cmd_agent.c - commands that work inside the guest through its agent:
 * exec (a command's output and exit status) and set-password.
 */
#include "cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "../lib/util.h"

/* exec's own failures, as timeout(1) and env(1) report theirs. */
#define EXIT_EXEC_TIMEOUT	124
#define EXIT_EXEC_FAILED	125

static int
write_all(int fd, const unsigned char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Decode a base64 stream of the reply onto fd; 1 if it was cut short. */
static int
put_stream(json_t *resp, const char *key, const char *trunc, int fd)
{
	size_t n = 0;
	unsigned char *raw = base64_decode(jstr(resp, key), &n);

	if (raw) {
		write_all(fd, raw, n);
		free(raw);
	}
	return json_is_true(json_object_get(resp, trunc));
}

int
cmd_exec(int argc, char **argv)
{
	const char *name = NULL;
	long long timeout = 60;
	int i, with_stdin = 0;
	json_t *env = json_array(), *args = json_array(), *body, *resp = NULL;
	char path[256];
	long status;

	for (i = 1; i < argc && strcmp(argv[i], "--") != 0; i++) {
		if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc) {
			if (parse_duration_s(argv[++i], &timeout) < 0 ||
			    timeout < 1 || timeout > 86400) {
				json_decref(env);
				json_decref(args);
				return usage_error("exec", "--timeout takes a "
				    "duration such as 30s or 5m");
			}
		} else if (strcmp(argv[i], "--env") == 0 && i + 1 < argc &&
		    strchr(argv[i + 1], '=')) {
			json_array_append_new(env, json_string(argv[++i]));
		} else if (strcmp(argv[i], "--stdin") == 0 ||
		    strcmp(argv[i], "-i") == 0) {
			with_stdin = 1;
		} else if (argv[i][0] != '-' && name == NULL) {
			name = argv[i];
		} else {
			json_decref(env);
			json_decref(args);
			return usage_error("exec", "unexpected \"%s\" (the "
			    "command goes after --)", argv[i]);
		}
	}
	if (name == NULL || i + 1 >= argc) {
		json_decref(env);
		json_decref(args);
		return usage_error("exec", "give a VM name, then -- and the "
		    "command");
	}
	for (i++; i < argc; i++)
		json_array_append_new(args, json_string(argv[i]));
	body = json_pack("{s:o, s:I}", "argv", args, "timeout_s",
	    (json_int_t)timeout);
	if (json_array_size(env))
		json_object_set(body, "env", env);
	json_decref(env);
	if (with_stdin) {
		/* At most what the API takes: 6 MiB, sent as base64. */
		size_t cap = 6 << 20, len = 0;
		unsigned char *in = malloc(cap + 1);
		ssize_t r;
		while (in && len <= cap && (r = read(0, in + len, cap + 1 -
		    len)) != 0) {
			if (r < 0 && errno == EINTR)
				continue;
			if (r < 0)
				break;
			len += (size_t)r;
		}
		if (in == NULL || len > cap) {
			free(in);
			json_decref(body);
			fprintf(stderr, "vmgr exec: standard input is over 6 "
			    "MiB\n");
			return EXIT_EXEC_FAILED;
		}
		char *b = base64_encode(in, len);
		free(in);
		json_object_set_new(body, "input", json_string(b ? b : ""));
		free(b);
	}
	snprintf(path, sizeof(path), "/v1/vms/%s/exec", name);
	status = api_call("POST", path, body, &resp, NULL, timeout + 30);
	json_decref(body);
	if (status < 0)
		return EXIT_EXEC_FAILED;
	if (status != 200) {
		print_api_error(status, resp);
		int rc = status == 504 ? EXIT_EXEC_TIMEOUT : EXIT_EXEC_FAILED;
		json_decref(resp);
		return rc;
	}
	if (cli.json) {
		print_json(resp);
		json_decref(resp);
		return 0;
	}
	int cut = put_stream(resp, "stdout", "stdout_truncated", 1);
	cut |= put_stream(resp, "stderr", "stderr_truncated", 2);
	if (cut)
		fprintf(stderr, "vmgr exec: the output was cut short (1 MiB "
		    "per stream at most)\n");
	json_t *code = json_object_get(resp, "exit_code");
	json_t *sig = json_object_get(resp, "signal");
	int rc = json_is_integer(code) ? (int)json_integer_value(code) :
	    json_is_integer(sig) ? 128 + (int)json_integer_value(sig) : 0;
	json_decref(resp);
	return rc;
}

/* A line from the terminal without echo, or from stdin. */
static char *
read_secret(const char *prompt)
{
	struct termios old, quiet;
	char *line = NULL;
	size_t cap = 0;
	int tty = isatty(0) && tcgetattr(0, &old) == 0;

	if (tty) {
		fprintf(stderr, "%s", prompt);
		quiet = old;
		quiet.c_lflag &= (tcflag_t)~ECHO;
		tcsetattr(0, TCSAFLUSH, &quiet);
	}
	ssize_t n = getline(&line, &cap, stdin);
	if (tty) {
		tcsetattr(0, TCSAFLUSH, &old);
		fprintf(stderr, "\n");
	}
	if (n < 0) {
		free(line);
		return NULL;
	}
	line[strcspn(line, "\r\n")] = '\0';
	return line;
}

int
cmd_set_password(int argc, char **argv)
{
	const char *name = NULL, *user = NULL, *file = NULL;
	char *text = NULL, *hash, path[256];
	int rc;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--password-file") == 0 && i + 1 < argc)
			file = argv[++i];
		else if (argv[i][0] == '-')
			return usage_error("set-password", "unknown option "
			    "\"%s\"", argv[i]);
		else if (name == NULL)
			name = argv[i];
		else if (user == NULL)
			user = argv[i];
		else
			return usage_error("set-password", "give a VM and a "
			    "user name");
	}
	if (user == NULL)
		return usage_error("set-password", "give a VM and a user name");
	if (file) {
		size_t len;
		if ((text = read_file(file, 4096, &len)) == NULL) {
			fprintf(stderr, "vmgr set-password: %s: %s\n", file,
			    strerror(errno));
			return EXIT_USAGE;
		}
		text[strcspn(text, "\r\n")] = '\0';
	} else {
		char *again;
		if ((text = read_secret("New password: ")) == NULL)
			return usage_error("set-password", "no password read");
		if (isatty(0)) {
			again = read_secret("Again: ");
			int same = again && strcmp(again, text) == 0;
			if (again)
				explicit_bzero(again, strlen(again));
			free(again);
			if (!same) {
				explicit_bzero(text, strlen(text));
				free(text);
				return usage_error("set-password", "the two "
				    "passwords differ");
			}
		}
	}
	if (text[0] == '\0') {
		free(text);
		return usage_error("set-password", "the password is empty");
	}
	hash = cli_password_hash("set-password", text);
	explicit_bzero(text, strlen(text));
	free(text);
	if (hash == NULL)
		return EXIT_USAGE;
	json_t *body = json_pack("{s:s, s:s}", "user", user, "password_hash",
	    hash), *resp;
	explicit_bzero(hash, strlen(hash));
	free(hash);
	snprintf(path, sizeof(path), "/v1/vms/%s/password", name);
	resp = api_send("POST", path, body, 60, &rc);
	json_decref(body);
	if (resp == NULL)
		return rc;
	if (cli.json)
		print_json(resp);
	else
		printf("set the password of %s in %s\n", user, name);
	json_decref(resp);
	return 0;
}

/* vmgr freeze NAME [--timeout DURATION] | vmgr thaw NAME */
int
cmd_freeze(int argc, char **argv)
{
	int thaw = strcmp(argv[0], "thaw") == 0, rc;
	const char *name = NULL;
	long long timeout = -1;
	json_t *body = NULL, *resp;
	char path[256];

	for (int i = 1; i < argc; i++) {
		if (!thaw && strcmp(argv[i], "--timeout") == 0 && i + 1 < argc) {
			if (parse_duration_s(argv[++i], &timeout) < 0 ||
			    timeout < 1 || timeout > 3600)
				return usage_error(argv[0], "--timeout takes a "
				    "duration from 1s to 1h");
		} else if (argv[i][0] == '-' || name)
			return usage_error(argv[0], "give one VM name");
		else
			name = argv[i];
	}
	if (name == NULL)
		return usage_error(argv[0], "give one VM name");
	if (timeout > 0)
		body = json_pack("{s:I}", "timeout_s", (json_int_t)timeout);
	snprintf(path, sizeof(path), "/v1/vms/%s/%s", name, argv[0]);
	resp = api_send("POST", path, body, 120, &rc);
	json_decref(body);
	if (resp == NULL)
		return rc;
	if (cli.json)
		print_json(resp);
	else if (thaw)
		printf("thawed %lld file systems of %s\n", (long long)
		    json_integer_value(json_object_get(resp, "thawed")), name);
	else
		printf("froze %lld file systems of %s; vmgrd thaws them by %s "
		    "(or `vmgr thaw %s`)\n", (long long)json_integer_value(
		    json_object_get(resp, "frozen")), name, jstr(resp,
		    "thaw_by"), name);
	json_decref(resp);
	return 0;
}
