/*
 * cli.h - what vmgr's command files share: the API client, output helpers
 * and the command table.  Every command is a thin layer over one or a few
 * API calls; --json prints the API's own objects.
 */
#ifndef VMGR_CLI_H
#define VMGR_CLI_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* Exit codes: 0 ok, 1 the request was refused or failed, 2 usage. */
#define EXIT_REFUSED	1
#define EXIT_USAGE	2

struct cli {
	char	sock[4096];
	int	json;
	char	remote[128];	/* --remote NAME: through vmgrd to that host */
};
extern struct cli cli;

struct command {
	const char	*name;
	int		(*run)(int argc, char **argv);
	const char	*usage;		/* one line */
	const char	*help;		/* the rest of `vmgr help NAME` */
};
const struct command *command_find(const char *name);
extern const struct command commands[];

/*
 * Call the API: method and path (with query), body or NULL (not stolen).
 * Returns the HTTP status, or -1 when vmgrd cannot be reached (a message
 * has been printed).  *resp gets the parsed JSON reply, or NULL when the
 * reply is not JSON; *raw (if not NULL) the raw text.  timeout_s 0 = none.
 */
long	api_call(const char *method, const char *path, json_t *body,
	    json_t **resp, char **raw, long timeout_s);

/*
 * GET a JSON object: the reply, or NULL with the error printed and *rc
 * set to the exit code.
 */
json_t	*api_get(const char *path, int *rc);

/* The same for any method and body (not stolen); any 2xx is success. */
json_t	*api_send(const char *method, const char *path, json_t *body,
	    long timeout_s, int *rc);

/* A GET whose reply is bytes (a PNG): *data malloc'd, *len long. */
long	api_get_bytes(const char *path, char **data, size_t *len,
	    long timeout_s);

/*
 * Stream a GET: each complete line of the reply is passed to cb as it
 * arrives.  Returns the HTTP status or -1.
 */
long	api_stream(const char *path, void (*cb)(const char *line, void *),
	    void *arg);

/* Print the API's error object (or a generic one) to stderr; returns 1. */
int	print_api_error(long status, json_t *resp);

/* The string o[k], or "" when absent or not a string. */
const char *jstr(json_t *o, const char *k);

/* Print v as pretty JSON on stdout. */
void	print_json(json_t *v);

/* "usage: vmgr ..." for cmd on stderr; returns EXIT_USAGE. */
int	usage_error(const char *cmd, const char *fmt, ...)
	    __attribute__((format(printf, 2, 3)));

/* Human formatting of a memory size in MiB: "128M", "2G". */
char	*fmt_mib(long long mib, char *buf, size_t len);

/*
 * A crypt(3) hash of a password, made here (SHA-512, a random salt) so the
 * password never leaves; a hash given is taken as it is.  Malloc'd, or
 * NULL after saying why (as cmd).
 */
char	*cli_password_hash(const char *cmd, const char *text);

/* The command functions, one file per group. */
int	cmd_host(int, char **);
int	cmd_list(int, char **);
int	cmd_info(int, char **);
int	cmd_create(int, char **);
int	cmd_action(int, char **);
int	cmd_delete(int, char **);
int	cmd_exec(int, char **);
int	cmd_set_password(int, char **);
int	cmd_freeze(int, char **);
int	cmd_screenshot(int, char **);
int	cmd_vnc(int, char **);
int	cmd_console(int, char **);
int	cmd_events(int, char **);
int	cmd_help(int, char **);
int	cmd_set(int, char **);
int	cmd_queue(int, char **);
int	cmd_scheduler(int, char **);
int	cmd_stats(int, char **);
int	cmd_top(int, char **);
int	cmd_network(int, char **);
int	cmd_volume(int, char **);
int	cmd_image(int, char **);
/* The keys of an OpenSSH .pub file appended to keys: 0, or the exit status. */
int	read_ssh_keys(const char *cmd, const char *path, json_t *keys);
int	cmd_ssh(int, char **);
int	cmd_snapshot(int, char **);
int	cmd_backup(int, char **);
int	cmd_remote(int, char **);
int	cmd_migrate(int, char **);
int	cmd_migrations(int, char **);

/* Print a reply (--json: as is; else with show) and free it.  0. */
int	cli_print(json_t *resp, void (*show)(json_t *));

/* A small text file given to option opt, whole; NULL after saying why. */
char	*cli_option_file(const char *opt, const char *path, size_t max);

/* GET path and print it (--json: as is; else with show).  Exit code. */
int	cli_show(const char *path, void (*show)(json_t *));

/* DELETE path and say "deleted WHAT NAME" (--json: the reply).  Exit code. */
int	cli_delete(const char *path, const char *what, const char *name);

/* Human formatting of a byte count: "512B", "1.5G". */
char	*fmt_bytes(double bytes, char *buf, size_t len);

/* A size given to the CLI ("512M", "10G", "1.5G"; a plain number is MiB)
 * in bytes, as spec_size_parse() takes it.  0, or -1. */
int	cli_size(const char *s, uint64_t *bytes);

/* "2026-11-26 06:12:33" (local time) for unix milliseconds. */
char	*fmt_when(long long ms, char *buf, size_t len);

/* --policy, --priority, --weight, --min-memory, --runtime, --preemptible. */
int	resource_option(const char *cmd, int argc, char **argv, int *i,
	    json_t *res, json_t *sched);

/* Print an event object as one human line. */
void	print_event_line(json_t *ev);

#endif
