/*
 * qga.c - the guest agent client.  Replies are newline-terminated JSON
 * objects, in the order of the commands, with no id; so one command is out
 * at a time, and after any doubt (a deadline missed, a reply that does not
 * parse, bytes nobody asked for) the stream is resynchronised before the
 * next command: 0xFF, guest-sync-delimited {id}, and input skipped up to
 * the agent's 0xFF and a reply of that id.
 */
#include "qga.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "../lib/util.h"

#define QGA_LINE_MAX	(16 << 20)	/* guest-exec output comes as base64 */

struct qga_cmd {
	struct qga_cmd	*next;
	char		*line;		/* the request, with its newline */
	double		 timeout;
	unsigned	 flags;
	qga_reply_cb	 cb;
	void		*arg;
};

struct qga {
	qga_send_fn	 send;
	void		*io_arg;
	qga_closed_cb	 closed;
	void		*arg;
	struct bufferevent *bev;
	struct event	*timer;		/* the deadline of what is out */
	struct evbuffer	*in;		/* qga_new_io() input */
	struct qga_cmd	*head, *tail;	/* head is out when sent is set */
	int		 sent;		/* head's request is written */
	int		 syncing;	/* a sync is out (before head) */
	int		 past_ff;	/* syncing: the agent's 0xFF was seen */
	int		 in_step;
	unsigned long long sync_id;
	double		 deadline;	/* of the sync or head, monotonic */
	int		 closed_;
	int		 in_callback;
	int		 dead;
};

static void	qga_close(struct qga *, const char *why);
static void	pump(struct qga *);

static int
bev_send(const char *data, size_t len, void *io_arg)
{
	struct qga *g = io_arg;

	return bufferevent_write(g->bev, data, len);
}

static void
arm(struct qga *g, double timeout)
{
	g->deadline = now_mono() + timeout;
	if (g->timer) {
		struct timeval tv = tv_of(timeout);
		evtimer_add(g->timer, &tv);
	}
}

/* Take head off the queue and answer it. */
static void
finish(struct qga *g, json_t *result, const char *error)
{
	struct qga_cmd *c = g->head;

	g->head = c->next;
	if (g->head == NULL)
		g->tail = NULL;
	g->sent = 0;
	if (c->cb)
		c->cb(g, result, error, c->arg);
	free(c->line);
	free(c);
}

/* Send the sync or head, whichever is next; nothing while one is out. */
static void
pump(struct qga *g)
{
	static unsigned long long seq;
	char buf[128];

	if (g->closed_ || g->dead || g->head == NULL || g->sent || g->syncing)
		return;
	if (!g->in_step) {
		/*
		 * A fresh id each time, so that a sync given up on earlier
		 * cannot be taken for this one.
		 */
		g->sync_id = ((unsigned long long)getpid() << 32) ^
		    (unsigned long long)(now_mono() * 1e6) ^ ++seq;
		g->sync_id &= 0x1fffffffffffffULL;	/* exact in a double */
		int n = snprintf(buf, sizeof(buf), "\xff{\"execute\":"
		    "\"guest-sync-delimited\",\"arguments\":{\"id\":%llu}}\n",
		    g->sync_id);
		if (g->send(buf, (size_t)n, g->io_arg) < 0) {
			qga_close(g, "cannot write to the guest agent");
			return;
		}
		g->syncing = 1;
		g->past_ff = 0;
		arm(g, g->head->timeout);
		return;
	}
	if (g->send(g->head->line, strlen(g->head->line), g->io_arg) < 0) {
		qga_close(g, "cannot write to the guest agent");
		return;
	}
	g->sent = 1;
	if (g->head->flags & QGA_NO_REPLY) {
		/* Whether it was carried out shows elsewhere; step again. */
		g->in_step = 0;
		arm(g, 0);
		return;
	}
	arm(g, g->head->timeout);
}

int
qga_command(struct qga *g, const char *cmd, json_t *args, double timeout,
    unsigned flags, qga_reply_cb cb, void *arg)
{
	struct qga_cmd *c;
	json_t *msg;
	char *s;

	if (g->closed_ || (c = calloc(1, sizeof(*c))) == NULL) {
		json_decref(args);
		return -1;
	}
	msg = json_pack("{s:s}", "execute", cmd);
	if (args)
		json_object_set_new(msg, "arguments", args);
	s = json_dumps(msg, JSON_COMPACT);
	json_decref(msg);
	if (s == NULL || (c->line = malloc(strlen(s) + 2)) == NULL) {
		free(s);
		free(c);
		return -1;
	}
	sprintf(c->line, "%s\n", s);
	free(s);
	c->timeout = timeout > 0 ? timeout : 0.001;
	c->flags = flags;
	c->cb = cb;
	c->arg = arg;
	if (g->tail)
		g->tail->next = c;
	else
		g->head = c;
	g->tail = c;
	/* Sent from the loop, so cb never runs inside this call. */
	if (g->timer && !g->sent && !g->syncing) {
		struct timeval tv = { 0, 0 };
		evtimer_add(g->timer, &tv);
	} else if (g->timer == NULL)
		pump(g);
	return 0;
}

/* A reply line while head is out. */
static void
reply(struct qga *g, const char *line, size_t n)
{
	json_error_t jerr;
	json_t *msg = json_loadb(line, n, 0, &jerr), *v;

	if (!json_is_object(msg)) {
		json_decref(msg);
		g->in_step = 0;
		finish(g, NULL, "the guest agent sent a reply that is not a "
		    "JSON object");
		return;
	}
	if ((v = json_object_get(msg, "return")) != NULL)
		finish(g, v, NULL);
	else {
		const char *desc = json_string_value(json_object_get(
		    json_object_get(msg, "error"), "desc"));
		finish(g, NULL, desc ? desc : "the guest agent failed");
	}
	json_decref(msg);
}

/* A line while syncing, after the agent's 0xFF: the sync's reply? */
static void
sync_reply(struct qga *g, const char *line, size_t n)
{
	json_t *msg = json_loadb(line, n, 0, NULL);
	json_t *v = json_object_get(msg, "return");

	g->past_ff = 0;
	if (json_is_integer(v) &&
	    (unsigned long long)json_integer_value(v) == g->sync_id) {
		g->syncing = 0;
		g->in_step = 1;
	}
	json_decref(msg);
}

static void
drain(struct qga *g, struct evbuffer *buf)
{
	g->in_callback++;
	while (!g->closed_ && !g->dead && evbuffer_get_length(buf) > 0) {
		if (g->syncing && !g->past_ff) {
			struct evbuffer_ptr p = evbuffer_search(buf, "\xff", 1,
			    NULL);
			if (p.pos < 0) {
				evbuffer_drain(buf, evbuffer_get_length(buf));
				break;
			}
			evbuffer_drain(buf, (size_t)p.pos + 1);
			g->past_ff = 1;
			continue;
		}
		size_t n;
		char *line = evbuffer_readln(buf, &n, EVBUFFER_EOL_LF);
		if (line == NULL) {
			if (evbuffer_get_length(buf) > QGA_LINE_MAX)
				qga_close(g, "the guest agent sent a message "
				    "too long");
			break;
		}
		while (n > 0 && (line[n - 1] == '\r' || line[n - 1] == ' '))
			line[--n] = '\0';
		if (n == 0) {
			free(line);
			continue;
		}
		if (g->syncing) {
			sync_reply(g, line, n);
			if (!g->syncing)
				pump(g);
		} else if (g->sent && g->head &&
		    !(g->head->flags & QGA_NO_REPLY)) {
			reply(g, line, n);
			pump(g);
		} else
			g->in_step = 0;	/* nobody asked: out of step */
		free(line);
	}
	g->in_callback--;
	if (g->dead && g->in_callback == 0)
		qga_free(g);
}

void
qga_input(struct qga *g, const char *data, size_t len)
{
	if (g->closed_)
		return;
	evbuffer_add(g->in, data, len);
	drain(g, g->in);
}

void
qga_tick(struct qga *g, double now)
{
	char why[128];

	if (g->closed_ || g->head == NULL)
		return;
	g->in_callback++;
	if ((g->sent || g->syncing) && now >= g->deadline) {
		if (g->sent && (g->head->flags & QGA_NO_REPLY)) {
			json_t *ok = json_object();
			finish(g, ok, NULL);
			json_decref(ok);
		} else {
			snprintf(why, sizeof(why), "the guest agent did not "
			    "answer within %.3g s", g->head->timeout);
			g->syncing = 0;
			g->in_step = 0;
			/*
			 * A sync missed: the agent is not there; what waits
			 * would each cost the same timeout, so all fail now.
			 */
			if (!g->sent) {
				while (g->head && !g->dead)
					finish(g, NULL, why);
			} else
				finish(g, NULL, why);
		}
	}
	pump(g);
	g->in_callback--;
	if (g->dead && g->in_callback == 0)
		qga_free(g);
}

static void
timer_fire(evutil_socket_t fd, short what, void *arg)
{
	struct qga *g = arg;

	(void)fd;
	(void)what;
	qga_tick(g, now_mono());
	/* Something out with a later deadline: wait for it. */
	if (!g->dead && !g->closed_ && (g->sent || g->syncing)) {
		struct timeval tv = tv_of(g->deadline - now_mono());
		evtimer_add(g->timer, &tv);
	}
}

static void
bev_read(struct bufferevent *bev, void *arg)
{
	drain(arg, bufferevent_get_input(bev));
}

static void
bev_event(struct bufferevent *bev, short what, void *arg)
{
	(void)bev;
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
		qga_close(arg, (what & BEV_EVENT_EOF) ? "connection closed" :
		    "connection error");
}

static struct qga *
qga_alloc(qga_closed_cb closed, void *arg)
{
	struct qga *g = calloc(1, sizeof(*g));

	if (g) {
		g->closed = closed;
		g->arg = arg;
	}
	return g;
}

struct qga *
qga_new(struct event_base *base, int fd, qga_closed_cb closed, void *arg)
{
	struct qga *g = qga_alloc(closed, arg);

	if (g == NULL) {
		close(fd);
		return NULL;
	}
	g->bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
	g->timer = evtimer_new(base, timer_fire, g);
	if (g->bev == NULL || g->timer == NULL) {
		if (g->bev == NULL)
			close(fd);
		qga_free(g);
		return NULL;
	}
	g->send = bev_send;
	g->io_arg = g;
	bufferevent_setcb(g->bev, bev_read, NULL, bev_event, g);
	bufferevent_enable(g->bev, EV_READ);
	return g;
}

struct qga *
qga_new_io(qga_send_fn send, void *io_arg, qga_closed_cb closed, void *arg)
{
	struct qga *g = qga_alloc(closed, arg);

	if (g == NULL)
		return NULL;
	g->send = send;
	g->io_arg = io_arg;
	if ((g->in = evbuffer_new()) == NULL) {
		free(g);
		return NULL;
	}
	return g;
}

int
qga_in_step(const struct qga *g)
{
	return g->in_step;
}

int
qga_pending(const struct qga *g)
{
	int n = 0;

	for (const struct qga_cmd *c = g->head; c; c = c->next)
		n++;
	return n;
}

void
qga_desync(struct qga *g)
{
	g->in_step = 0;
}

static void
fail_all(struct qga *g, const char *why)
{
	g->syncing = 0;
	while (g->head)
		finish(g, NULL, why);
}

static void
qga_close(struct qga *g, const char *why)
{
	if (g->closed_)
		return;
	g->closed_ = 1;
	g->in_step = 0;
	if (g->bev)
		bufferevent_disable(g->bev, EV_READ | EV_WRITE);
	if (g->timer)
		evtimer_del(g->timer);
	g->in_callback++;
	fail_all(g, why);
	if (g->closed && !g->dead)
		g->closed(g, why, g->arg);
	g->in_callback--;
	if (g->dead && g->in_callback == 0)
		qga_free(g);
}

void
qga_free(struct qga *g)
{
	if (g == NULL)
		return;
	if (g->in_callback) {
		g->dead = 1;
		g->closed_ = 1;
		return;
	}
	g->closed_ = 1;
	g->in_callback++;
	fail_all(g, "connection closed");
	g->in_callback--;
	if (g->bev)
		bufferevent_free(g->bev);
	if (g->timer)
		event_free(g->timer);
	if (g->in)
		evbuffer_free(g->in);
	free(g);
}
