/*
 * test_qmp.c - the QMP client (src/qemu/qmp.c) against sessions recorded
 * from a real QEMU (tests/qmp/NAME.txt, see tests/qmp/README.md).  The replay
 * feeds QEMU's lines through qmp_input(), issues each command the recording
 * shows the client sending, and checks the client sent exactly those bytes
 * and called back in the recorded order; hand-made input covers broken peers
 * and freeing the client from inside its own callbacks.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>

#include "lib/util.h"
#include "qemu/qmp.h"

#define MAXID		32
#define NELEM(a)	(sizeof(a) / sizeof((a)[0]))

/* What the callbacks saw, in order. */
static struct {
	struct qmp	*q;
	char		 trace[8192];	/* "ready ev:STOP ret:2" */
	int		 ready, closed;
	char		 why[256];
	json_t		*events;	/* [{"event": N, "data": D}] */
	struct reply {
		int	 calls;
		json_t	*result;	/* a copy, or NULL */
		char	 error[256];
	} replies[MAXID];
	/* qmp_free() from inside the callback traced as this ("err:2"). */
	const char	*free_in;
	int		 freed;
} rec;

/* What the client sent. */
static char	sent[1 << 16];
static size_t	sentlen;
static int	send_fails;

static void
trace(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void
trace(const char *fmt, ...)
{
	size_t n = strlen(rec.trace);
	char tok[128];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(tok, sizeof(tok), fmt, ap);
	va_end(ap);
	snprintf(rec.trace + n, sizeof(rec.trace) - n, "%s%s", n ? " " : "",
	    tok);
	if (rec.free_in && strcmp(rec.free_in, tok) == 0) {
		rec.free_in = NULL;
		rec.freed = 1;
		qmp_free(rec.q);	/* rec.q stays valid until we return */
	}
}

static void
on_ready(struct qmp *q, void *arg)
{
	assert_ptr_equal(q, rec.q);
	assert_ptr_equal(arg, &rec);
	assert_true(qmp_is_ready(q));
	rec.ready++;
	trace("ready");
}

static void
on_event(struct qmp *q, const char *name, json_t *data, void *arg)
{
	assert_ptr_equal(q, rec.q);
	assert_ptr_equal(arg, &rec);
	json_array_append_new(rec.events, json_pack("{s:s, s:O*}", "event",
	    name, "data", data));
	trace("ev:%s", name);
}

static void
on_closed(struct qmp *q, const char *why, void *arg)
{
	assert_ptr_equal(q, rec.q);
	assert_ptr_equal(arg, &rec);
	assert_false(qmp_is_ready(q));
	rec.closed++;
	snprintf(rec.why, sizeof(rec.why), "%s", why);
	trace("closed");
}

static const struct qmp_handlers handlers = {
	.ready = on_ready, .event = on_event, .closed = on_closed,
};

static void
on_reply(struct qmp *q, json_t *result, const char *error, void *arg)
{
	struct reply *r = arg;
	int id = (int)(r - rec.replies);

	assert_ptr_equal(q, rec.q);
	assert_true((result == NULL) != (error == NULL));
	r->calls++;
	if (result) {
		json_decref(r->result);
		r->result = json_deep_copy(result);
		trace("ret:%d", id);
	} else {
		snprintf(r->error, sizeof(r->error), "%s", error);
		trace("err:%d", id);
	}
}

static int
capture(const char *data, size_t len, void *io_arg)
{
	assert_ptr_equal(io_arg, sent);
	if (send_fails)
		return -1;
	assert_true(sentlen + len < sizeof(sent));
	memcpy(sent + sentlen, data, len);
	sentlen += len;
	return 0;
}

/* The next line the client sent, without its newline; NULL if none. */
static char *
sent_line(void)
{
	char *nl = memchr(sent, '\n', sentlen), *s;
	size_t n;

	if (nl == NULL)
		return NULL;
	n = (size_t)(nl - sent);
	s = strndup(sent, n);
	assert_non_null(s);
	memmove(sent, nl + 1, sentlen - n - 1);
	sentlen -= n + 1;
	return s;
}

static int
setup(void **state)
{
	(void)state;
	memset(&rec, 0, sizeof(rec));
	rec.events = json_array();
	sentlen = 0;
	send_fails = 0;
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	if (!rec.freed)		/* else freed by a callback already */
		qmp_free(rec.q);
	rec.q = NULL;
	json_decref(rec.events);
	for (int i = 0; i < MAXID; i++)
		json_decref(rec.replies[i].result);
	return 0;
}

static struct qmp *
new_client(void)
{
	rec.q = qmp_new_io(capture, sent, &handlers, &rec);
	assert_non_null(rec.q);
	return rec.q;
}

static void
input(const char *s)
{
	qmp_input(rec.q, s, strlen(s));
}

static int
command(const char *cmd, json_t *args, int id)
{
	return qmp_command(rec.q, cmd, args, on_reply, &rec.replies[id]);
}

/*
 * Recorded sessions.  Lines: "S: JSON" (QEMU sent JSON, then CRLF), "C: JSON"
 * (the client sent JSON, then LF), "E:" (QEMU closed the connection).
 */
struct line {
	char	 kind;
	char	*text;
};

struct session {
	char		*buf;
	struct line	 lines[256];
	int		 n;
};

static void
session_load(const char *name, struct session *s)
{
	char path[1024], *p, *nl;
	const char *slash = strrchr(__FILE__, '/');

	/* tests/unit/test_qmp.c -> tests/unit/../qmp/NAME.txt */
	snprintf(path, sizeof(path), "%.*s/../qmp/%s.txt",
	    slash ? (int)(slash - __FILE__) : 1, slash ? __FILE__ : ".", name);
	s->buf = read_file(path, 1 << 20, NULL);
	if (s->buf == NULL)
		fail_msg("cannot read %s (run from the top of the tree)", path);
	s->n = 0;
	for (p = s->buf; *p; p = nl + 1) {
		if ((nl = strchr(p, '\n')) == NULL)
			fail_msg("%s: last line has no newline", path);
		*nl = '\0';
		if (*p == '#' || *p == '\0')
			continue;
		assert_true(s->n < (int)NELEM(s->lines));
		if (strcmp(p, "E:") == 0)
			s->lines[s->n++] = (struct line){ 'E', NULL };
		else if ((p[0] == 'S' || p[0] == 'C') && p[1] == ':' &&
		    p[2] == ' ')
			s->lines[s->n++] = (struct line){ p[0], p + 3 };
		else
			fail_msg("%s: bad line \"%s\"", path, p);
	}
}

/* The callback a server line must cause, by the protocol. */
static void
expect_token(const char *text, char *buf, size_t len)
{
	json_t *m = json_loads(text, 0, NULL);
	json_t *id = json_object_get(m, "id");

	assert_non_null(m);
	buf[0] = '\0';
	if (json_object_get(m, "event"))
		snprintf(buf, len, "ev:%s", json_string_value(
		    json_object_get(m, "event")));
	else if (json_integer_value(id) == 1)
		snprintf(buf, len, "%s", json_object_get(m, "return") ?
		    "ready" : "closed");
	else if (id)
		snprintf(buf, len, "%s:%d", json_object_get(m, "return") ?
		    "ret" : "err", (int)json_integer_value(id));
	json_decref(m);
}

/* Send the command of a recorded client line the way vmgrd would. */
static void
issue(const char *text)
{
	json_t *m = json_loads(text, 0, NULL);
	json_t *args;
	int id;

	assert_non_null(m);
	id = (int)json_integer_value(json_object_get(m, "id"));
	assert_true(id > 1 && id < MAXID);
	assert_true(qmp_is_ready(rec.q));
	args = json_object_get(m, "arguments");
	assert_int_equal(command(json_string_value(json_object_get(m,
	    "execute")), args ? json_incref(args) : NULL, id), 0);
	json_decref(m);
}

enum feed { FEED_LINES, FEED_SPLIT, FEED_CHUNKS };

/*
 * Replay a session: each server line is fed whole (FEED_LINES), in two
 * pieces cut `split` bytes in (FEED_SPLIT), or runs of server lines in one
 * call (FEED_CHUNKS).  Checks the bytes sent and the order of callbacks.
 */
static void
replay(const struct session *s, enum feed how, size_t split)
{
	char want[8192] = "", tok[128], chunk[65536];
	size_t clen = 0;

	new_client();
	for (int i = 0; i <= s->n; i++) {
		const struct line *l = i < s->n ? &s->lines[i] : NULL;

		if (how == FEED_CHUNKS && clen &&
		    (l == NULL || l->kind != 'S')) {
			qmp_input(rec.q, chunk, clen);
			clen = 0;
		}
		if (l == NULL)
			break;
		if (l->kind == 'S') {
			size_t len = strlen(l->text) + 2;
			char line[8192];

			assert_true(len < sizeof(line));
			snprintf(line, sizeof(line), "%s\r\n", l->text);
			expect_token(l->text, tok, sizeof(tok));
			if (*tok) {
				size_t wl = strlen(want);

				snprintf(want + wl, sizeof(want) - wl, "%s%s",
				    wl ? " " : "", tok);
			}
			if (how == FEED_CHUNKS) {
				assert_true(clen + len < sizeof(chunk));
				memcpy(chunk + clen, line, len);
				clen += len;
			} else if (how == FEED_SPLIT && split < len) {
				char before[8192];

				snprintf(before, sizeof(before), "%s",
				    rec.trace);
				qmp_input(rec.q, line, split);
				/* Half a line does nothing. */
				assert_string_equal(rec.trace, before);
				qmp_input(rec.q, line + split, len - split);
			} else
				qmp_input(rec.q, line, len);
		} else if (l->kind == 'C') {
			char *got;

			if (memchr(sent, '\n', sentlen) == NULL)
				issue(l->text);
			got = sent_line();
			assert_non_null(got);
			assert_string_equal(got, l->text);
			free(got);
		}
	}
	/* Nothing sent that the recording does not show. */
	assert_int_equal(sentlen, 0);
	if (strcmp(rec.trace, want) != 0)
		fail_msg("callbacks \"%s\", want \"%s\"", rec.trace, want);
	assert_int_equal(rec.ready, 1);
	assert_int_equal(rec.closed, 0);
	for (int id = 0; id < MAXID; id++)
		assert_true(rec.replies[id].calls <= 1);
}

static json_t *
event_data(int i, const char *name)
{
	json_t *e = json_array_get(rec.events, (size_t)i);

	assert_non_null(e);
	assert_string_equal(json_string_value(json_object_get(e, "event")),
	    name);
	return json_object_get(e, "data");
}

static void
assert_status(int id, const char *status, int running)
{
	json_t *r = rec.replies[id].result;

	assert_int_equal(rec.replies[id].calls, 1);
	assert_non_null(r);
	assert_string_equal(json_string_value(json_object_get(r, "status")),
	    status);
	assert_int_equal(json_is_true(json_object_get(r, "running")),
	    running);
}

static void
assert_empty_return(int id)
{
	assert_int_equal(rec.replies[id].calls, 1);
	assert_true(json_is_object(rec.replies[id].result));
	assert_int_equal(json_object_size(rec.replies[id].result), 0);
}

static void
test_replay_status(void **unused)
{
	struct session s;

	(void)unused;
	session_load("status", &s);
	replay(&s, FEED_LINES, 0);
	/* query-status, cont, stop, cont, query-status. */
	assert_status(2, "prelaunch", 0);
	for (int id = 3; id <= 5; id++)
		assert_empty_return(id);
	assert_status(6, "running", 1);
	assert_int_equal(json_array_size(rec.events), 3);
	assert_null(event_data(0, "RESUME"));
	assert_null(event_data(1, "STOP"));
	assert_null(event_data(2, "RESUME"));
	free(s.buf);
}

static void
test_replay_error(void **unused)
{
	struct session s;

	(void)unused;
	session_load("error", &s);
	replay(&s, FEED_LINES, 0);
	assert_int_equal(rec.replies[2].calls, 1);
	assert_null(rec.replies[2].result);
	assert_string_equal(rec.replies[2].error,
	    "The command no-such-command has not been found");
	assert_int_equal(rec.replies[3].calls, 1);
	assert_null(rec.replies[3].result);
	assert_string_equal(rec.replies[3].error,
	    "Parameter 'bogus' is unexpected");
	/* The connection survives an error reply. */
	assert_status(4, "prelaunch", 0);
	free(s.buf);
}

static void
test_replay_quit(void **unused)
{
	struct session s;
	json_t *d;

	(void)unused;
	session_load("quit", &s);
	replay(&s, FEED_LINES, 0);
	assert_empty_return(2);
	assert_int_equal(json_array_size(rec.events), 1);
	d = event_data(0, "SHUTDOWN");
	assert_true(json_is_false(json_object_get(d, "guest")));
	assert_string_equal(json_string_value(json_object_get(d, "reason")),
	    "host-qmp-quit");
	free(s.buf);
}

static void
test_replay_poweroff(void **unused)
{
	struct session s;
	int powerdown = -1, shutdown = -1;

	(void)unused;
	session_load("poweroff", &s);
	replay(&s, FEED_LINES, 0);
	/* qmp_capabilities, cont, system_powerdown */
	assert_empty_return(2);
	assert_empty_return(3);
	for (int i = 0; i < (int)json_array_size(rec.events); i++) {
		const char *name = json_string_value(json_object_get(
		    json_array_get(rec.events, (size_t)i), "event"));
		if (strcmp(name, "POWERDOWN") == 0)
			powerdown = i;
		else if (strcmp(name, "SHUTDOWN") == 0) {
			json_t *d = event_data(i, "SHUTDOWN");
			assert_true(json_is_true(json_object_get(d, "guest")));
			assert_string_equal(json_string_value(
			    json_object_get(d, "reason")), "guest-shutdown");
			shutdown = i;
		}
	}
	assert_true(powerdown >= 0);
	assert_true(shutdown > powerdown);
	free(s.buf);
}

/* Every session with every line cut at every byte. */
static void
test_replay_split(void **unused)
{
	static const char *const names[] = { "status", "error", "quit",
	    "poweroff" };

	(void)unused;
	for (size_t i = 0; i < NELEM(names); i++) {
		struct session s;
		size_t longest = 0;

		session_load(names[i], &s);
		for (int j = 0; j < s.n; j++)
			if (s.lines[j].kind == 'S' &&
			    strlen(s.lines[j].text) + 2 > longest)
				longest = strlen(s.lines[j].text) + 2;
		for (size_t k = 0; k < longest; k++) {
			teardown(NULL);
			setup(NULL);
			replay(&s, FEED_SPLIT, k);
		}
		teardown(NULL);
		setup(NULL);
		replay(&s, FEED_CHUNKS, 0);
		free(s.buf);
	}
}

static const char greeting[] = "{\"QMP\": {\"version\": {\"qemu\": "
    "{\"micro\": 22, \"minor\": 2, \"major\": 7}, \"package\": \"\"}, "
    "\"capabilities\": [\"oob\"]}}\r\n";

/* A client past qmp_capabilities, with nothing left in `sent`. */
static void
ready_client(void)
{
	char *l;

	new_client();
	input(greeting);
	l = sent_line();
	assert_non_null(l);
	assert_string_equal(l, "{\"execute\":\"qmp_capabilities\",\"id\":1}");
	free(l);
	input("{\"return\": {}, \"id\": 1}\r\n");
	assert_int_equal(rec.ready, 1);
	assert_int_equal(sentlen, 0);
}

static void
test_not_ready(void **unused)
{
	(void)unused;
	new_client();
	assert_false(qmp_is_ready(rec.q));
	/* Refused, and the arguments freed (ASan would see a leak). */
	assert_int_equal(command("query-status", json_pack("{s:i}", "x", 1),
	    2), -1);
	assert_int_equal(sentlen, 0);
	input(greeting);
	/* qmp_capabilities is out but not answered: still refused. */
	assert_false(qmp_is_ready(rec.q));
	assert_int_equal(command("query-status", NULL, 2), -1);
	input("{\"return\": {}, \"id\": 1}\r\n");
	assert_true(qmp_is_ready(rec.q));
	assert_int_equal(command("query-status", NULL, 2), 0);
	assert_int_equal(rec.replies[2].calls, 0);
	assert_string_equal(rec.trace, "ready");
}

static void
test_commands_sent(void **unused)
{
	char *l;

	(void)unused;
	ready_client();
	assert_int_equal(command("query-status", NULL, 2), 0);
	assert_int_equal(command("human-monitor-command", json_pack("{s:s}",
	    "command-line", "info \"x\"\n"), 3), 0);
	assert_int_equal(qmp_command(rec.q, "cont", NULL, NULL, NULL), 0);
	l = sent_line();
	assert_string_equal(l, "{\"execute\":\"query-status\",\"id\":2}");
	free(l);
	l = sent_line();
	assert_string_equal(l, "{\"execute\":\"human-monitor-command\","
	    "\"id\":3,\"arguments\":{\"command-line\":\"info \\\"x\\\"\\n\"}}");
	free(l);
	l = sent_line();
	assert_string_equal(l, "{\"execute\":\"cont\",\"id\":4}");
	free(l);
	assert_null(sent_line());
	/* Out of order, and one with no callback: each reply finds its own. */
	input("{\"return\": {}, \"id\": 4}\r\n"
	    "{\"return\": \"ok\\r\\n\", \"id\": 3}\r\n"
	    "{\"return\": {\"status\": \"running\", \"running\": true}, "
	    "\"id\": 2}\r\n");
	assert_string_equal(rec.trace, "ready ret:3 ret:2");
	assert_string_equal(json_string_value(rec.replies[3].result), "ok\r\n");
	assert_status(2, "running", 1);
	/* A second reply for an answered id is ignored. */
	input("{\"return\": {}, \"id\": 2}\r\n");
	assert_int_equal(rec.replies[2].calls, 1);
	/* The queue is still sound: a new command gets the next id. */
	assert_int_equal(command("stop", NULL, 5), 0);
	l = sent_line();
	assert_string_equal(l, "{\"execute\":\"stop\",\"id\":5}");
	free(l);
	input("{\"return\": {}, \"id\": 5}\r\n");
	assert_empty_return(5);
}

/* Lines that are not for us, or not for anyone, change nothing. */
static void
test_ignored_input(void **unused)
{
	(void)unused;
	ready_client();
	assert_int_equal(command("query-status", NULL, 2), 0);
	input("\n");
	input("\r\n");
	input("[1, 2]\r\n");
	input("{\"return\": {}}\r\n");
	input("{\"return\": {}, \"id\": \"2\"}\r\n");
	input("{\"return\": {}, \"id\": 99}\r\n");
	input("{\"event\": 7}\r\n");
	assert_string_equal(rec.trace, "ready");
	assert_true(qmp_is_ready(rec.q));
	/* An event without data. */
	input("{\"event\": \"STOP\", \"timestamp\": {\"seconds\": 1, "
	    "\"microseconds\": 2}}\r\n");
	assert_null(event_data(0, "STOP"));
	/* A reply with neither return nor error is an error. */
	input("{\"id\": 2}\r\n");
	assert_string_equal(rec.replies[2].error, "QMP error");
	assert_string_equal(rec.trace, "ready ev:STOP err:2");
}

static void
test_invalid_json(void **unused)
{
	(void)unused;
	ready_client();
	assert_int_equal(command("query-status", NULL, 2), 0);
	assert_int_equal(command("cont", NULL, 3), 0);
	input("{\"return\": {}, \"id\": 2}\r\n{\"return\": {}, \"id\r\n"
	    "{\"return\": {}, \"id\": 3}\r\n");
	assert_int_equal(rec.replies[2].calls, 1);
	assert_non_null(rec.replies[2].result);
	assert_int_equal(rec.replies[3].calls, 1);
	assert_null(rec.replies[3].result);
	assert_string_equal(rec.replies[3].error, "QMP sent invalid JSON");
	assert_int_equal(rec.closed, 1);
	assert_string_equal(rec.why, "QMP sent invalid JSON");
	assert_string_equal(rec.trace, "ready ret:2 err:3 closed");
	assert_false(qmp_is_ready(rec.q));
	/* Closed: no more commands, no more input. */
	sentlen = 0;
	assert_int_equal(command("cont", NULL, 4), -1);
	assert_int_equal(sentlen, 0);
	input("{\"event\": \"STOP\"}\r\n");
	assert_string_equal(rec.trace, "ready ret:2 err:3 closed");
	/* Freeing a closed client calls nothing more. */
	qmp_free(rec.q);
	rec.q = NULL;
	assert_string_equal(rec.trace, "ready ret:2 err:3 closed");
}

static void
test_bad_greeting(void **unused)
{
	(void)unused;
	new_client();
	input("{\"return\": {}, \"id\": 1}\r\n");
	assert_int_equal(rec.closed, 1);
	assert_string_equal(rec.why, "no QMP greeting");
	assert_int_equal(sentlen, 0);
}

static void
test_capabilities_refused(void **unused)
{
	(void)unused;
	new_client();
	input(greeting);
	input("{\"id\": 1, \"error\": {\"class\": \"GenericError\", "
	    "\"desc\": \"Capabilities negotiation is already complete\"}}\r\n");
	assert_int_equal(rec.ready, 0);
	assert_int_equal(rec.closed, 1);
	assert_string_equal(rec.why,
	    "Capabilities negotiation is already complete");
}

static void
test_send_fails(void **unused)
{
	(void)unused;
	new_client();
	send_fails = 1;
	input(greeting);
	assert_int_equal(rec.closed, 1);
	assert_string_equal(rec.why, "cannot send qmp_capabilities");

	teardown(NULL);
	setup(NULL);
	ready_client();
	send_fails = 1;
	assert_int_equal(command("cont", NULL, 2), -1);
	assert_int_equal(rec.replies[2].calls, 0);
	send_fails = 0;
	qmp_free(rec.q);
	rec.q = NULL;
	assert_int_equal(rec.replies[2].calls, 0);
}

static void
test_line_too_long(void **unused)
{
	size_t len = (4 << 20) + 1;
	char *big = malloc(len);

	(void)unused;
	assert_non_null(big);
	memset(big, ' ', len);
	ready_client();
	assert_int_equal(command("cont", NULL, 2), 0);
	qmp_input(rec.q, big, len);
	free(big);
	assert_int_equal(rec.closed, 1);
	assert_string_equal(rec.why, "QMP message too long");
	assert_string_equal(rec.replies[2].error, "QMP message too long");
}

static void
test_free_pending(void **unused)
{
	(void)unused;
	ready_client();
	assert_int_equal(command("query-status", NULL, 2), 0);
	assert_int_equal(command("cont", NULL, 3), 0);
	qmp_free(rec.q);
	rec.q = NULL;
	for (int id = 2; id <= 3; id++) {
		assert_int_equal(rec.replies[id].calls, 1);
		assert_null(rec.replies[id].result);
		assert_string_equal(rec.replies[id].error, "connection closed");
	}
	assert_string_equal(rec.trace, "ready err:2 err:3");
	qmp_free(NULL);
}

/*
 * qmp_free() from inside each kind of callback.  The rest of the input is
 * dropped and the pending commands fail with "connection closed"; run
 * under ASan (make SANITIZE=1 unit) or valgrind to catch a use after free.
 */
static void
test_free_in_callback(void **unused)
{
	static const char rest[] = "{\"event\": \"STOP\"}\r\n"
	    "{\"return\": {}, \"id\": 2}\r\n"
	    "{\"id\": 3, \"error\": {\"desc\": \"no\"}}\r\n"
	    "{\"event\": \"RESUME\"}\r\n"
	    "not json\r\n"
	    "{\"event\": \"STOP\"}\r\n";
	static const struct {
		const char	*in;	/* free in this callback */
		const char	*input;	/* after commands 2 and 3 */
		const char	*want;	/* the callbacks made */
		const char	*err3;	/* command 3's error */
	} cases[] = {
		{ "ready", NULL, "ready", NULL },
		{ "ev:STOP", rest, "ready ev:STOP err:2 err:3",
		  "connection closed" },
		{ "ret:2", rest, "ready ev:STOP ret:2 err:3",
		  "connection closed" },
		{ "err:3", rest, "ready ev:STOP ret:2 err:3", "no" },
		{ "closed", rest, "ready ev:STOP ret:2 err:3 ev:RESUME closed",
		  "no" },
		/* In a command failed by the close; "closed" is not called. */
		{ "err:2", "not json\r\n{\"event\": \"STOP\"}\r\n",
		  "ready err:2 err:3", "QMP sent invalid JSON" },
	};

	(void)unused;
	for (size_t i = 0; i < NELEM(cases); i++) {
		teardown(NULL);
		setup(NULL);
		rec.free_in = cases[i].in;
		new_client();
		input(greeting);
		free(sent_line());
		if (cases[i].input == NULL) {
			/* Freed as capabilities complete, with input left. */
			input("{\"return\": {}, \"id\": 1}\r\n"
			    "{\"event\": \"STOP\"}\r\n");
		} else {
			input("{\"return\": {}, \"id\": 1}\r\n");
			assert_int_equal(command("query-status", NULL, 2), 0);
			assert_int_equal(command("cont", NULL, 3), 0);
			input(cases[i].input);
		}
		assert_true(rec.freed);
		rec.q = NULL;
		if (strcmp(rec.trace, cases[i].want) != 0)
			fail_msg("free in %s: callbacks \"%s\", want \"%s\"",
			    cases[i].in, rec.trace, cases[i].want);
		for (int id = 2; id <= 3; id++)
			assert_true(rec.replies[id].calls <= 1);
		if (cases[i].err3)
			assert_string_equal(rec.replies[3].error,
			    cases[i].err3);
	}
}

/* Free from a pending command's callback while qmp_free() fails it. */
static void
test_free_in_free(void **unused)
{
	(void)unused;
	ready_client();
	assert_int_equal(command("query-status", NULL, 2), 0);
	assert_int_equal(command("cont", NULL, 3), 0);
	rec.free_in = "err:2";
	qmp_free(rec.q);
	assert_true(rec.freed);
	rec.q = NULL;
	assert_string_equal(rec.trace, "ready err:2 err:3");
	assert_string_equal(rec.replies[3].error, "connection closed");
}

/*
 * The socket transport: qmp_new() on one end of a socketpair, this test as
 * QEMU on the other.  A command with no reply times out; then EOF closes.
 */
struct sock_test {
	struct event_base	*base;
	int			 step;
};

static void
sock_read(evutil_socket_t fd, short what, void *arg)
{
	static const char caps_ok[] = "{\"return\": {}, \"id\": 1}\r\n";
	struct sock_test *t = arg;
	char buf[4096];
	ssize_t n;

	(void)what;
	n = read(fd, buf, sizeof(buf) - 1);
	assert_true(n > 0);
	buf[n] = '\0';
	if (t->step == 0) {
		assert_string_equal(buf,
		    "{\"execute\":\"qmp_capabilities\",\"id\":1}\n");
		assert_int_equal(write(fd, caps_ok, strlen(caps_ok)),
		    (ssize_t)strlen(caps_ok));
	} else
		assert_string_equal(buf, "{\"execute\":\"cont\",\"id\":2}\n");
	t->step++;
}

/* Run the loop until *flag is set; at most 10 s. */
static void
run_until(struct event_base *base, const int *flag)
{
	double t0 = now_mono();

	while (!*flag && now_mono() - t0 < 10)
		event_base_loop(base, EVLOOP_ONCE);
	assert_true(*flag);
}

static void
test_socket_transport(void **unused)
{
	struct sock_test t = { 0 };
	struct event *rd;
	int sv[2];
	double t0;

	(void)unused;
	t.base = event_base_new();
	assert_non_null(t.base);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	assert_int_equal(fd_set_nonblock(sv[0], 1), 0);
	rec.q = qmp_new(t.base, sv[0], &handlers, &rec);
	assert_non_null(rec.q);
	qmp_set_timeout(rec.q, 0.5);
	rd = event_new(t.base, sv[1], EV_READ | EV_PERSIST, sock_read, &t);
	event_add(rd, NULL);
	assert_int_equal(write(sv[1], greeting, strlen(greeting)),
	    (ssize_t)strlen(greeting));
	run_until(t.base, &rec.ready);
	assert_int_equal(t.step, 1);

	/* No reply: timed out, after the timeout and within a 1 s tick. */
	t0 = now_mono();
	assert_int_equal(command("cont", NULL, 2), 0);
	run_until(t.base, &rec.replies[2].calls);
	assert_true(now_mono() - t0 >= 0.5);
	assert_true(now_mono() - t0 < 3);
	assert_non_null(strstr(rec.replies[2].error, "did not answer within"));
	assert_int_equal(rec.closed, 1);
	assert_non_null(strstr(rec.why, "did not answer within"));
	assert_int_equal(t.step, 2);
	qmp_free(rec.q);		/* closes sv[0] */
	rec.q = NULL;
	event_free(rd);
	close(sv[1]);

	/* EOF from QEMU's side, with a command waiting for the greeting. */
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	assert_int_equal(fd_set_nonblock(sv[0], 1), 0);
	rec.closed = 0;
	rec.q = qmp_new(t.base, sv[0], &handlers, &rec);
	assert_non_null(rec.q);
	close(sv[1]);
	run_until(t.base, &rec.closed);
	assert_string_equal(rec.why, "connection closed");
	assert_false(qmp_is_ready(rec.q));
	qmp_free(rec.q);
	rec.q = NULL;
	event_base_free(t.base);
}

/*
 * A descriptor passed after commands still queued: they go out first, in
 * order, and the descriptor comes with the getfd line (a socket
 * bufferevent's output is frozen at the front, so the client must thaw it).
 */
static void
test_fd_after_queued(void **unused)
{
	static const char caps_ok[] = "{\"return\": {}, \"id\": 1}\r\n";
	struct event_base *base = event_base_new();
	char got[4096] = "", cbuf[CMSG_SPACE(sizeof(int))];
	int sv[2], pfd[2], passed = -1;
	size_t len = 0;

	(void)unused;
	assert_non_null(base);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	assert_int_equal(fd_set_nonblock(sv[0], 1), 0);
	assert_int_equal(pipe(pfd), 0);
	rec.q = qmp_new(base, sv[0], &handlers, &rec);
	assert_non_null(rec.q);
	assert_int_equal(write(sv[1], greeting, strlen(greeting)),
	    (ssize_t)strlen(greeting));
	while (strchr(got, '\n') == NULL) {
		event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
		ssize_t n = recv(sv[1], got + len, sizeof(got) - len - 1,
		    MSG_DONTWAIT);
		if (n > 0)
			got[len += (size_t)n] = '\0';
	}
	assert_int_equal(write(sv[1], caps_ok, strlen(caps_ok)),
	    (ssize_t)strlen(caps_ok));
	run_until(base, &rec.ready);

	/* Two commands queued, not yet written; then the descriptor. */
	assert_int_equal(command("stop", NULL, 2), 0);
	assert_int_equal(command("query-status", NULL, 3), 0);
	assert_int_equal(qmp_command_fd(rec.q, "getfd", json_pack("{s:s}",
	    "fdname", "x"), pfd[0], on_reply, &rec.replies[4]), 0);
	event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);

	len = 0;
	got[0] = '\0';
	while (len < sizeof(got) - 1 && strstr(got, "getfd") == NULL) {
		struct iovec iov = { got + len, sizeof(got) - len - 1 };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
		    .msg_control = cbuf, .msg_controllen = sizeof(cbuf) };
		ssize_t n = recvmsg(sv[1], &mh, 0);
		assert_true(n > 0);
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
		if (c && c->cmsg_type == SCM_RIGHTS) {
			assert_int_equal(passed, -1);
			memcpy(&passed, CMSG_DATA(c), sizeof(int));
			/* It came with the getfd line, not before. */
			assert_non_null(strstr(got + len, "getfd"));
		}
		got[len += (size_t)n] = '\0';
	}
	assert_string_equal(got,
	    "{\"execute\":\"stop\",\"id\":2}\n"
	    "{\"execute\":\"query-status\",\"id\":3}\n"
	    "{\"execute\":\"getfd\",\"id\":4,\"arguments\":{\"fdname\":\"x\"}}\n");
	assert_true(passed >= 0);
	/* The very pipe: what goes in one end comes out of the other. */
	assert_int_equal(write(pfd[1], "z", 1), 1);
	char z = 0;
	assert_int_equal(read(passed, &z, 1), 1);
	assert_int_equal(z, 'z');
	close(passed);
	close(pfd[0]);
	close(pfd[1]);
	qmp_free(rec.q);
	rec.q = NULL;
	close(sv[1]);
	event_base_free(base);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_replay_status, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_replay_error, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_replay_quit, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_replay_poweroff, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_replay_split, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_not_ready, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_commands_sent, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_ignored_input, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_invalid_json, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_bad_greeting, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_capabilities_refused,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_send_fails, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_line_too_long, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_free_pending, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_free_in_callback, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_free_in_free, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_fd_after_queued, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_socket_transport, setup,
		    teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
