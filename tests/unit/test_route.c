/*
 * test_route.c - the API's router (src/core/route.c) by a table of
 * requests: each endpoint reached with its names, every method it does
 * not take refused with 405 naming those it does, invalid names 400,
 * escapes decoded per segment (so "%2F" cannot split a name), unknown
 * paths 404, and query keys limited to what the endpoint takes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "core/route.h"

#define G	ROUTE_GET
#define P	ROUTE_POST
#define D	ROUTE_DELETE

static const struct ok_case {
	unsigned	 method;
	const char	*path;
	enum route_id	 id;
	const char	*arg0, *arg1;
	enum route_body	 body;
} ok_cases[] = {
	{ G, "/metrics", R_METRICS, NULL, NULL, BODY_NONE },
	{ G, "/v1/host", R_HOST, NULL, NULL, BODY_NONE },
	{ G, "/v1/stats", R_STATS, NULL, NULL, BODY_NONE },
	{ G, "/v1/events", R_EVENTS, NULL, NULL, BODY_NONE },
	{ G, "/v1/scheduler", R_SCHED_GET, NULL, NULL, BODY_NONE },
	{ ROUTE_PUT, "/v1/scheduler", R_SCHED_PUT, NULL, NULL, BODY_OBJECT },
	{ G, "/v1/vms", R_VM_LIST, NULL, NULL, BODY_NONE },
	{ G, "/v1/vms/", R_VM_LIST, NULL, NULL, BODY_NONE },
	{ P, "/v1/vms", R_VM_CREATE, NULL, NULL, BODY_OBJECT },
	{ G, "/v1/vms/web", R_VM_GET, "web", NULL, BODY_NONE },
	{ G, "//v1//vms//web", R_VM_GET, "web", NULL, BODY_NONE },
	{ ROUTE_PATCH, "/v1/vms/web", R_VM_PATCH, "web", NULL, BODY_OBJECT },
	{ D, "/v1/vms/web-1.a_b", R_VM_DELETE, "web-1.a_b", NULL, BODY_NONE },
	{ G, "/v1/vms/w%65b", R_VM_GET, "web", NULL, BODY_NONE },
	{ G, "/v1/vms/web/stats", R_VM_STATS, "web", NULL, BODY_NONE },
	{ G, "/v1/vms/web/console", R_VM_CONSOLE, "web", NULL, BODY_NONE },
	{ G, "/v1/vms/web/screenshot", R_VM_SCREENSHOT, "web", NULL, BODY_NONE },
	{ P, "/v1/vms/web/exec", R_VM_EXEC, "web", NULL, BODY_OBJECT },
	{ P, "/v1/vms/web/password", R_VM_PASSWORD, "web", NULL, BODY_OBJECT },
	{ P, "/v1/vms/web/freeze", R_VM_FREEZE, "web", NULL, BODY_OPTIONAL },
	{ P, "/v1/vms/web/thaw", R_VM_THAW, "web", NULL, BODY_OPTIONAL },
	{ P, "/v1/vms/web/ping", R_VM_PING, "web", NULL, BODY_OPTIONAL },
	{ P, "/v1/vms/web/start", R_VM_ACTION, "web", "start", BODY_OPTIONAL },
	{ P, "/v1/vms/web/explode", R_VM_ACTION, "web", "explode",
	    BODY_OPTIONAL },
	{ P, "/v1/vms/snapshots/snapshots", R_SNAP_CREATE, "snapshots", NULL,
	    BODY_OBJECT },
	{ G, "/v1/vms/web/snapshots", R_SNAP_LIST, "web", NULL, BODY_NONE },
	{ G, "/v1/vms/web/snapshots/s1", R_SNAP_GET, "web", "s1", BODY_NONE },
	{ D, "/v1/vms/web/snapshots/s1", R_SNAP_DELETE, "web", "s1",
	    BODY_NONE },
	{ P, "/v1/vms/web/snapshots/s1/revert", R_SNAP_REVERT, "web", "s1",
	    BODY_OPTIONAL },
	{ G, "/v1/networks", R_NET_LIST, NULL, NULL, BODY_NONE },
	{ P, "/v1/networks", R_NET_CREATE, NULL, NULL, BODY_OBJECT },
	{ G, "/v1/networks/lan", R_NET_GET, "lan", NULL, BODY_NONE },
	{ D, "/v1/networks/lan", R_NET_DELETE, "lan", NULL, BODY_NONE },
	{ G, "/v1/volumes", R_VOL_LIST, NULL, NULL, BODY_NONE },
	{ P, "/v1/volumes", R_VOL_CREATE, NULL, NULL, BODY_OBJECT },
	{ G, "/v1/volumes/data", R_VOL_GET, "data", NULL, BODY_NONE },
	{ D, "/v1/volumes/data", R_VOL_DELETE, "data", NULL, BODY_NONE },
	{ P, "/v1/volumes/data/resize", R_VOL_RESIZE, "data", NULL,
	    BODY_OBJECT },
	{ G, "/v1/backups", R_BK_LIST, NULL, NULL, BODY_NONE },
	{ P, "/v1/backups", R_BK_CREATE, NULL, NULL, BODY_OBJECT },
	{ P, "/v1/backups/prune", R_BK_PRUNE, NULL, NULL, BODY_OBJECT },
	{ G, "/v1/backups/42", R_BK_GET, "42", NULL, BODY_NONE },
	{ D, "/v1/backups/42", R_BK_DELETE, "42", NULL, BODY_NONE },
	{ P, "/v1/backups/42/verify", R_BK_VERIFY, "42", NULL, BODY_OPTIONAL },
	{ P, "/v1/backups/7/restore", R_BK_RESTORE, "7", NULL, BODY_OPTIONAL },
	{ G, "/v1/remotes", R_REMOTE_LIST, NULL, NULL, BODY_NONE },
	{ P, "/v1/remotes", R_REMOTE_ADD, NULL, NULL, BODY_OBJECT },
	{ G, "/v1/remotes/hostb", R_REMOTE_GET, "hostb", NULL, BODY_NONE },
	{ D, "/v1/remotes/hostb", R_REMOTE_DELETE, "hostb", NULL, BODY_NONE },
	{ P, "/v1/vms/web/migrate", R_VM_MIGRATE, "web", NULL, BODY_OBJECT },
	{ G, "/v1/migrations", R_MIG_LIST, NULL, NULL, BODY_NONE },
	{ P, "/v1/migrations", R_MIG_IN, NULL, NULL, BODY_OBJECT },
	{ G, "/v1/migrations/0123abcd", R_MIG_GET, "0123abcd", NULL, BODY_NONE },
	{ P, "/v1/migrations/0123abcd/commit", R_MIG_ACTION, "0123abcd",
	    "commit", BODY_OPTIONAL },
};

static void
test_endpoints(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(ok_cases) / sizeof(ok_cases[0]); i++) {
		const struct ok_case *c = &ok_cases[i];
		struct route r;
		int rc = route_match(c->method, c->path, &r);
		if (rc != 0)
			fail_msg("%s %s: %d %s", route_method_name(c->method),
			    c->path, r.status, r.message);
		assert_int_equal(r.id, c->id);
		assert_int_equal(r.body, c->body);
		if (c->arg0)
			assert_string_equal(r.arg[0], c->arg0);
		else
			assert_null(r.arg[0]);
		if (c->arg1)
			assert_string_equal(r.arg[1], c->arg1);
		else
			assert_null(r.arg[1]);
	}
	struct route r;
	assert_int_equal(route_match(G, "/v1/backups/42", &r), 0);
	assert_int_equal(r.num, 42);
}

static const struct bad_case {
	unsigned	 method;
	const char	*path;
	int		 status;
	const char	*code;
	const char	*message;	/* a part of it */
} bad_cases[] = {
	{ ROUTE_PUT, "/v1/vms/web", 405, "method_not_allowed",
	    "use GET, PATCH or DELETE on /v1/vms/NAME" },
	{ D, "/v1/vms", 405, "method_not_allowed", "use GET or POST on /v1/vms" },
	{ G, "/v1/vms/web/start", 405, "method_not_allowed",
	    "use POST on /v1/vms/NAME/ACTION" },
	{ P, "/v1/vms/web/stats", 405, "method_not_allowed",
	    "use GET on /v1/vms/NAME/stats" },
	{ G, "/v1/vms/web/snapshots/s1/revert", 405, "method_not_allowed",
	    "use POST on /v1/vms/NAME/snapshots/TAG/revert" },
	{ G, "/v1/backups/prune", 405, "method_not_allowed",
	    "use POST on /v1/backups/prune" },
	{ P, "/metrics", 405, "method_not_allowed", "use GET on /metrics" },
	{ 0, "/v1/vms", 405, "method_not_allowed", "use GET or POST" },
	{ G, "/v1/vms/Bad..Name", 400, "invalid_name",
	    "\"Bad..Name\" is not a valid VM name" },
	{ G, "/v1/vms/..", 400, "invalid_name", "valid VM name" },
	{ G, "/v1/vms/%2e%2e", 400, "invalid_name", "\"..\" is not" },
	{ G, "/v1/vms/a%2Fb", 400, "invalid_name", "\"a/b\" is not" },
	{ G, "/v1/vms/web/snapshots/..%2f..", 400, "invalid_name",
	    "valid snapshot name" },
	{ G, "/v1/networks/-x", 400, "invalid_name", "valid network name" },
	{ P, "/v1/volumes/A/resize", 400, "invalid_name", "valid volume name" },
	{ G, "/v1/vms/a%00b", 400, "invalid_path", "escape" },
	{ G, "/v1/vms/a%2", 400, "invalid_path", "escape" },
	{ G, "/v1/vms/a%zz", 400, "invalid_path", "escape" },
	{ G, "v1/vms", 400, "invalid_path", "path" },
	{ G, NULL, 400, "invalid_path", "path" },
	{ G, "/", 404, "not_found", "no such endpoint" },
	{ G, "/v1", 404, "not_found", "no such endpoint" },
	{ G, "/v2/vms", 404, "not_found", "no such endpoint" },
	{ G, "/v1/nothing", 404, "not_found", "no such endpoint" },
	{ G, "/v1/vms/web/snapshots/s1/revert/x", 404, "not_found", "" },
	{ G, "/a/b/c/d/e/f/g/h", 404, "not_found", "" },
	{ G, "/v1/backups/abc", 404, "not_found", "" },
	{ G, "/v1/backups/-1", 404, "not_found", "" },
	{ G, "/v1/backups/99999999999999999999", 404, "not_found", "" },
	{ P, "/v1/vms/web/Start", 404, "not_found", "" },
	{ P, "/v1/volumes/data/shrink", 404, "not_found", "" },
};

static void
test_refused(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
		const struct bad_case *c = &bad_cases[i];
		struct route r;
		if (route_match(c->method, c->path, &r) == 0)
			fail_msg("%s: matched %d", c->path ? c->path : "NULL",
			    r.id);
		if (r.status != c->status || strcmp(r.code, c->code) != 0 ||
		    strstr(r.message, c->message) == NULL)
			fail_msg("%s: %d %s \"%s\"", c->path ? c->path : "NULL",
			    r.status, r.code, r.message);
	}
}

static void
test_long_path(void **state)
{
	char path[ROUTE_PATH_MAX + 16];
	struct route r;

	(void)state;
	memset(path, 'a', sizeof(path) - 1);
	path[0] = '/';
	path[sizeof(path) - 1] = '\0';
	assert_int_equal(route_match(G, path, &r), -1);
	assert_int_equal(r.status, 400);
	/* The longest name fits, one more does not. */
	snprintf(path, sizeof(path), "/v1/vms/%063d", 0);
	assert_int_equal(route_match(G, path, &r), 0);
	snprintf(path, sizeof(path), "/v1/vms/%064d", 0);
	assert_int_equal(route_match(G, path, &r), -1);
	assert_int_equal(r.status, 400);
}

static void
test_query_keys(void **state)
{
	struct route r;

	(void)state;
	assert_int_equal(route_match(G, "/v1/events", &r), 0);
	assert_true(route_query_allowed(&r, "since"));
	assert_true(route_query_allowed(&r, "vm"));
	assert_true(route_query_allowed(&r, "follow"));
	assert_false(route_query_allowed(&r, "sinc"));
	assert_false(route_query_allowed(&r, "since,limit"));
	assert_false(route_query_allowed(&r, ""));
	assert_int_equal(route_match(G, "/v1/vms", &r), 0);
	assert_false(route_query_allowed(&r, "vm"));
	assert_int_equal(route_match(P, "/v1/backups", &r), 0);
	assert_true(route_query_allowed(&r, "wait"));
	assert_int_equal(route_match(G, "/v1/vms/web/console", &r), 0);
	assert_true(route_query_allowed(&r, "tail"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_endpoints),
		cmocka_unit_test(test_refused),
		cmocka_unit_test(test_long_path),
		cmocka_unit_test(test_query_keys),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
