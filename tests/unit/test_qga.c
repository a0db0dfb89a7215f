/*
 * test_qga.c - the guest agent client (src/qemu/qga.c) over a recorded
 * transport: what it writes is captured, what the agent would answer is fed
 * in by hand, and time is given to qga_tick().  The agent answers in order
 * without ids, may be absent, late or restarted; the client must stay in
 * step and never hand one command's reply to another.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/util.h"
#include "qemu/qga.h"

static char	sent[1 << 14];
static size_t	sentlen;
static char	trace[4096];
static int	closed;

static int
rec_send(const char *data, size_t len, void *io_arg)
{
	(void)io_arg;
	if (sentlen + len >= sizeof(sent))
		return -1;
	memcpy(sent + sentlen, data, len);
	sentlen += len;
	sent[sentlen] = '\0';
	return 0;
}

static void
on_closed(struct qga *g, const char *why, void *arg)
{
	(void)g;
	(void)arg;
	closed = 1;
	snprintf(trace + strlen(trace), sizeof(trace) - strlen(trace),
	    "closed(%s) ", why);
}

/* Trace "TAG=RESULT " or "TAG!ERROR ". */
static void
on_reply(struct qga *g, json_t *result, const char *error, void *arg)
{
	char *s = result ? json_dumps(result, JSON_COMPACT | JSON_ENCODE_ANY) :
	    NULL;

	(void)g;
	snprintf(trace + strlen(trace), sizeof(trace) - strlen(trace),
	    "%s%c%s ", (const char *)arg, result ? '=' : '!',
	    result ? s : error);
	free(s);
}

static struct qga *
fresh(void)
{
	sentlen = 0;
	sent[0] = '\0';
	trace[0] = '\0';
	closed = 0;
	return qga_new_io(rec_send, NULL, on_closed, NULL);
}

/* The id of the last sync written, or 0. */
static unsigned long long
last_sync_id(void)
{
	const char *p = NULL, *q = sent;

	while ((q = strstr(q, "guest-sync-delimited")) != NULL)
		p = q++;
	if (p == NULL)
		return 0;
	p = strstr(p, "\"id\":");
	return p ? strtoull(p + 5, NULL, 10) : 0;
}

static void
feed(struct qga *g, const char *s)
{
	qga_input(g, s, strlen(s));
}

static void
answer_sync(struct qga *g, unsigned long long id)
{
	char buf[128];

	snprintf(buf, sizeof(buf), "\xff{\"return\": %llu}\n", id);
	feed(g, buf);
}

/* The first command is preceded by 0xFF and a sync; garbage before the
 * agent's own 0xFF (a parse error for our 0xFF, a stale reply) is skipped. */
static void
test_sync_first(void **state)
{
	struct qga *g = fresh();

	(void)state;
	assert_int_equal(qga_command(g, "guest-ping", NULL, 5, 0, on_reply,
	    "ping"), 0);
	assert_int_equal((unsigned char)sent[0], 0xff);
	assert_non_null(strstr(sent, "guest-sync-delimited"));
	assert_null(strstr(sent, "guest-ping"));	/* not before the sync */
	unsigned long long id = last_sync_id();
	assert_true(id > 0);
	feed(g, "{\"error\": {\"class\": \"GenericError\", \"desc\": \"Invalid "
	    "JSON syntax\"}}\n{\"return\": {\"stale\": 1}}\n");
	assert_string_equal(trace, "");
	/* A stale sync's reply (another id) after a 0xFF: still skipped. */
	answer_sync(g, id + 1);
	assert_int_equal(qga_in_step(g), 0);
	assert_null(strstr(sent, "guest-ping"));
	answer_sync(g, id);
	assert_int_equal(qga_in_step(g), 1);
	assert_non_null(strstr(sent, "{\"execute\":\"guest-ping\"}\n"));
	feed(g, "{\"return\": {}}\n");
	assert_string_equal(trace, "ping={} ");
	qga_free(g);
}

/* In step, commands go one at a time, each reply to its own command. */
static void
test_one_at_a_time(void **state)
{
	struct qga *g = fresh();

	(void)state;
	qga_command(g, "guest-ping", NULL, 5, 0, on_reply, "a");
	answer_sync(g, last_sync_id());
	feed(g, "{\"return\": {}}\n");
	sentlen = 0;
	sent[0] = '\0';
	qga_command(g, "guest-get-host-name", NULL, 5, 0, on_reply, "b");
	qga_command(g, "guest-info", NULL, 5, 0, on_reply, "c");
	assert_non_null(strstr(sent, "guest-get-host-name"));
	assert_null(strstr(sent, "guest-info"));
	assert_null(strstr(sent, "guest-sync"));	/* in step: no sync */
	assert_int_equal(qga_pending(g), 2);
	feed(g, "{\"return\": {\"host-name\": \"web\"}}\r\n");
	assert_non_null(strstr(sent, "guest-info"));
	feed(g, "{\"error\": {\"class\": \"GenericError\", \"desc\": \"nope\"}}"
	    "\n");
	assert_string_equal(trace, "a={} b={\"host-name\":\"web\"} c!nope ");
	assert_int_equal(qga_pending(g), 0);
	qga_free(g);
}

/* A missed deadline costs one timeout; the late reply that follows is not
 * handed to the next command, which syncs first. */
static void
test_timeout_then_resync(void **state)
{
	struct qga *g = fresh();

	(void)state;
	qga_command(g, "guest-exec-status", NULL, 2, 0, on_reply, "slow");
	answer_sync(g, last_sync_id());
	qga_command(g, "guest-ping", NULL, 2, 0, on_reply, "next");
	qga_tick(g, now_mono() + 1);
	assert_string_equal(trace, "");
	qga_tick(g, now_mono() + 3);
	assert_string_equal(trace, "slow!the guest agent did not answer "
	    "within 2 s ");
	assert_int_equal(qga_in_step(g), 0);
	unsigned long long id = last_sync_id();
	/* The slow command's reply, late, then the new sync's. */
	feed(g, "{\"return\": {\"exited\": true}}\n");
	answer_sync(g, id);
	feed(g, "{\"return\": {}}\n");
	assert_string_equal(trace, "slow!the guest agent did not answer "
	    "within 2 s next={} ");
	qga_free(g);
}

/* No agent: the sync misses, and every waiting command fails at once. */
static void
test_no_agent(void **state)
{
	struct qga *g = fresh();

	(void)state;
	qga_command(g, "guest-ping", NULL, 1, 0, on_reply, "a");
	qga_command(g, "guest-info", NULL, 1, 0, on_reply, "b");
	qga_tick(g, now_mono() + 2);
	assert_string_equal(trace, "a!the guest agent did not answer within "
	    "1 s b!the guest agent did not answer within 1 s ");
	assert_int_equal(qga_pending(g), 0);
	qga_free(g);
}

/* guest-shutdown answers nothing: done once written, and out of step. */
static void
test_no_reply(void **state)
{
	struct qga *g = fresh();

	(void)state;
	qga_command(g, "guest-shutdown", json_pack("{s:s}", "mode",
	    "powerdown"), 5, QGA_NO_REPLY, on_reply, "off");
	answer_sync(g, last_sync_id());
	assert_non_null(strstr(sent, "\"mode\":\"powerdown\""));
	qga_tick(g, now_mono());
	assert_string_equal(trace, "off={} ");
	assert_int_equal(qga_in_step(g), 0);
	qga_free(g);
}

/* Bytes nobody asked for, or a reply that is no JSON: out of step. */
static void
test_garbage(void **state)
{
	struct qga *g = fresh();

	(void)state;
	qga_command(g, "guest-ping", NULL, 5, 0, on_reply, "a");
	answer_sync(g, last_sync_id());
	feed(g, "not json\n");
	assert_string_equal(trace, "a!the guest agent sent a reply that is "
	    "not a JSON object ");
	assert_int_equal(qga_in_step(g), 0);
	feed(g, "{\"return\": {}}\n");	/* unasked: ignored */
	assert_string_equal(trace, "a!the guest agent sent a reply that is "
	    "not a JSON object ");
	qga_free(g);
}

static int	freed_in_cb;

static void
free_in_reply(struct qga *g, json_t *result, const char *error, void *arg)
{
	(void)result;
	(void)error;
	(void)arg;
	freed_in_cb++;
	qga_free(g);
}

/* Freed from its own callback, with more queued: those fail, once. */
static void
test_free_in_callback(void **state)
{
	struct qga *g = fresh();

	(void)state;
	freed_in_cb = 0;
	qga_command(g, "guest-ping", NULL, 5, 0, free_in_reply, NULL);
	qga_command(g, "guest-info", NULL, 5, 0, on_reply, "b");
	answer_sync(g, last_sync_id());
	feed(g, "{\"return\": {}}\n");
	assert_int_equal(freed_in_cb, 1);
	assert_string_equal(trace, "b!connection closed ");
}

/* A write that fails closes the client and fails what waits. */
static void
test_send_fails(void **state)
{
	struct qga *g = fresh();

	(void)state;
	sentlen = sizeof(sent) - 1;	/* the next send overflows */
	qga_command(g, "guest-ping", NULL, 5, 0, on_reply, "a");
	assert_int_equal(closed, 1);
	assert_string_equal(trace, "a!cannot write to the guest agent "
	    "closed(cannot write to the guest agent) ");
	assert_int_equal(qga_command(g, "guest-ping", NULL, 5, 0, on_reply,
	    "b"), -1);
	qga_free(g);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sync_first),
		cmocka_unit_test(test_one_at_a_time),
		cmocka_unit_test(test_timeout_then_resync),
		cmocka_unit_test(test_no_agent),
		cmocka_unit_test(test_no_reply),
		cmocka_unit_test(test_garbage),
		cmocka_unit_test(test_free_in_callback),
		cmocka_unit_test(test_send_fails),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
