/*
 * events.c - the lifecycle event log as the API shows it: rows as JSON,
 * GET /v1/events (a page of history), and ?follow=1 subscribers that get
 * each new event as one line of JSON on a chunked response.
 */
#include "daemon.h"

#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "../lib/log.h"
#include "../lib/util.h"

#define FOLLOW_REPLAY	10000

json_t *
event_json(const struct event_row *ev)
{
	char when[40];

	return json_pack("{s:I, s:s, s:I, s:s, s:s?, s:s, s:s, s:s, s:s}",
	    "seq", (json_int_t)ev->seq,
	    "time", fmt_time_ms(ev->time, when, sizeof(when)),
	    "time_ms", (json_int_t)ev->time,
	    "vm", ev->vm,
	    "from", ev->from,
	    "to", ev->to,
	    "event", ev->event,
	    "reason", ev->reason ? ev->reason : "",
	    "actor", ev->actor ? ev->actor : "");
}

static void
send_line(struct evhttp_request *req, const struct event_row *ev)
{
	struct evbuffer *buf = evbuffer_new();
	json_t *j = event_json(ev);
	char *s = json_dumps(j, JSON_COMPACT);

	if (buf && s) {
		evbuffer_add_printf(buf, "%s\n", s);
		evhttp_send_reply_chunk(req, buf);
	}
	free(s);
	json_decref(j);
	if (buf)
		evbuffer_free(buf);
}

/* Every ?follow=1 request, parked for good; arg is its VM, or NULL. */
static struct parkedq subscribers = TAILQ_HEAD_INITIALIZER(subscribers);

void
events_publish(const struct event_row *ev)
{
	struct parked *p;

	TAILQ_FOREACH(p, &subscribers, owner)
		if (p->arg == NULL || strcmp(p->arg, ev->vm) == 0)
			send_line(p->req, ev);
}

static int
replay_one(const struct event_row *ev, void *arg)
{
	send_line(arg, ev);
	return 0;
}

static void
subscriber_gone(struct parked *p)
{
	TAILQ_REMOVE(&subscribers, p, owner);
	free(p->arg);
	api_drop(p);
}

/*
 * Stream events after `since`, then every new one, until the client goes.
 * History is sent in pages so a long log never sits in memory at once.
 */
int
events_subscribe(struct api_call *c, const char *vm, int64_t since)
{
	struct evhttp_request *req = c->req;
	struct parked *p = api_park(req, 0);

	if (p == NULL || (vm && (p->arg = strdup(vm)) == NULL)) {
		api_drop(p);
		return api_err(&c->err, 500, "no_memory", "out of memory");
	}
	p->gone = subscriber_gone;
	evhttp_add_header(evhttp_request_get_output_headers(req),
	    "Content-Type", "application/x-ndjson");
	evhttp_send_reply_start(req, 200, "OK");
	/* At most the last FOLLOW_REPLAY events of history, then live. */
	int64_t last = db_last_seq(vmgrd->db);
	if (last - since > FOLLOW_REPLAY)
		since = last - FOLLOW_REPLAY;
	db_events(vmgrd->db, since, vm, -1, replay_one, req);
	TAILQ_INSERT_TAIL(&subscribers, p, owner);
	return API_WAIT;
}
