/*
 * qmp.c - the QMP client.  Messages are newline-delimited JSON objects.
 * State: GREETING (waiting for {"QMP": ...}), NEGOTIATING (our
 * qmp_capabilities is out), READY, CLOSED.  Pending commands are kept in
 * sending order; QEMU answers in order, but we match by id anyway.
 */
#include "qmp.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "../lib/util.h"

#define QMP_LINE_MAX	(4 << 20)	/* a bigger reply is a broken peer */

enum qmp_state { QMP_GREETING, QMP_NEGOTIATING, QMP_READY, QMP_CLOSED };

struct qmp_pending {
	struct qmp_pending	*next;
	unsigned long		 id;
	double			 sent;
	qmp_reply_cb		 cb;
	void			*arg;
};

struct qmp {
	enum qmp_state		 state;
	struct qmp_handlers	 h;
	void			*arg;
	qmp_send_fn		 send;
	void			*io_arg;
	struct bufferevent	*bev;
	struct event		*timer;
	struct evbuffer		*in;		/* qmp_new_io() input */
	struct qmp_pending	*head, *tail;
	unsigned long		 next_id;
	double			 timeout;
	double			 patience;	/* a longer wait, while QEMU is busy */
	int			 in_callback;
	int			 dead;		/* freed inside a callback */
};

static void	qmp_close(struct qmp *, const char *why);

static int
bev_send(const char *data, size_t len, void *io_arg)
{
	struct qmp *q = io_arg;

	return bufferevent_write(q->bev, data, len);
}

static int
send_json(struct qmp *q, json_t *msg)
{
	char *s = json_dumps(msg, JSON_COMPACT);
	int rc;

	if (s == NULL)
		return -1;
	rc = q->send(s, strlen(s), q->io_arg);
	if (rc == 0)
		rc = q->send("\n", 1, q->io_arg);
	free(s);
	return rc;
}

static void
caps_done(struct qmp *q, json_t *result, const char *error, void *arg)
{
	(void)arg;
	if (result == NULL) {
		qmp_close(q, error ? error : "qmp_capabilities failed");
		return;
	}
	q->state = QMP_READY;
	if (q->h.ready)
		q->h.ready(q, q->arg);
}

/* Wait (a second at most) until sock takes more bytes. */
static int
wait_writable(int sock)
{
	struct pollfd p = { .fd = sock, .events = POLLOUT };
	int n;

	while ((n = poll(&p, 1, 1000)) < 0 && errno == EINTR)
		;
	if (n == 0)
		errno = ETIMEDOUT;
	return n > 0 ? 0 : -1;
}

/*
 * Send one message with a descriptor attached (SCM_RIGHTS), after what is
 * already queued: QEMU takes the descriptor with the bytes it arrives with.
 * What is queued goes out first, here: a socket bufferevent keeps the front
 * of its output frozen, so it is thawed for that, as libevent does itself.
 */
static int
send_with_fd(struct qmp *q, json_t *msg, int fd)
{
	struct evbuffer *out = bufferevent_get_output(q->bev);
	int sock = bufferevent_getfd(q->bev);
	char *s = json_dumps(msg, JSON_COMPACT);
	/* Aligned for a cmsghdr, and zeroed: its padding goes to the kernel. */
	union {
		struct cmsghdr	align;
		char		buf[CMSG_SPACE(sizeof(int))];
	} cbuf;
	ssize_t n = -1;
	int rc = 0;

	if (s == NULL)
		return -1;
	evbuffer_unfreeze(out, 1);
	while (rc == 0 && evbuffer_get_length(out) > 0)
		if (evbuffer_write(out, sock) <= 0)
			rc = errno == EAGAIN ? wait_writable(sock) : -1;
	evbuffer_freeze(out, 1);
	if (rc < 0)
		goto out;
	size_t len = strlen(s);
	memset(&cbuf, 0, sizeof(cbuf));
	struct iovec iov[2] = { { s, len }, { "\n", 1 } };
	struct msghdr mh = { .msg_iov = iov, .msg_iovlen = 2,
	    .msg_control = cbuf.buf, .msg_controllen = sizeof(cbuf.buf) };
	struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof(int));
	while ((n = sendmsg(sock, &mh, MSG_NOSIGNAL)) < 0 && (errno == EINTR ||
	    (errno == EAGAIN && wait_writable(sock) == 0)))
		;
	/* A short write: the rest goes the ordinary way. */
	if (n >= 0 && (size_t)n < len)
		bufferevent_write(q->bev, s + n, len - (size_t)n);
	if (n >= 0 && (size_t)n <= len)
		bufferevent_write(q->bev, "\n", 1);
out:
	free(s);
	return n < 0 ? -1 : 0;
}

static int	queue_command_fd(struct qmp *, const char *, json_t *, int,
		    qmp_reply_cb, void *);

static int
queue_command(struct qmp *q, const char *cmd, json_t *args, qmp_reply_cb cb,
    void *arg)
{
	return queue_command_fd(q, cmd, args, -1, cb, arg);
}

static int
queue_command_fd(struct qmp *q, const char *cmd, json_t *args, int fd,
    qmp_reply_cb cb, void *arg)
{
	struct qmp_pending *p;
	json_t *msg;

	if (q->state == QMP_CLOSED) {
		json_decref(args);
		return -1;
	}
	if ((p = calloc(1, sizeof(*p))) == NULL) {
		json_decref(args);
		return -1;
	}
	p->id = ++q->next_id;
	p->sent = now_mono();
	p->cb = cb;
	p->arg = arg;
	msg = json_pack("{s:s, s:I}", "execute", cmd, "id", (json_int_t)p->id);
	if (args)
		json_object_set_new(msg, "arguments", args);
	if ((fd >= 0 ? send_with_fd(q, msg, fd) : send_json(q, msg)) < 0) {
		json_decref(msg);
		free(p);
		return -1;
	}
	json_decref(msg);
	if (q->tail)
		q->tail->next = p;
	else
		q->head = p;
	q->tail = p;
	return 0;
}

int
qmp_command(struct qmp *q, const char *cmd, json_t *args, qmp_reply_cb cb,
    void *arg)
{
	if (q->state != QMP_READY) {
		json_decref(args);
		return -1;
	}
	return queue_command(q, cmd, args, cb, arg);
}

int
qmp_command_fd(struct qmp *q, const char *cmd, json_t *args, int fd,
    qmp_reply_cb cb, void *arg)
{
	if (q->state != QMP_READY || q->bev == NULL) {
		json_decref(args);
		return -1;
	}
	return queue_command_fd(q, cmd, args, fd, cb, arg);
}

static struct qmp_pending *
take_pending(struct qmp *q, unsigned long id)
{
	struct qmp_pending **pp, *prev = NULL;

	for (pp = &q->head; *pp; prev = *pp, pp = &(*pp)->next) {
		struct qmp_pending *p = *pp;
		if (p->id != id)
			continue;
		*pp = p->next;
		if (q->tail == p)
			q->tail = prev;
		return p;
	}
	return NULL;
}

static void
handle_message(struct qmp *q, json_t *msg)
{
	json_t *id, *v;

	if (q->state == QMP_GREETING) {
		if (json_object_get(msg, "QMP") == NULL) {
			qmp_close(q, "no QMP greeting");
			return;
		}
		q->state = QMP_NEGOTIATING;
		if (queue_command(q, "qmp_capabilities", NULL, caps_done, NULL))
			qmp_close(q, "cannot send qmp_capabilities");
		return;
	}
	if ((v = json_object_get(msg, "event")) != NULL) {
		/* A "data" that is not an object is none (found by fuzzing). */
		json_t *data = json_object_get(msg, "data");
		if (json_is_string(v) && q->h.event)
			q->h.event(q, json_string_value(v), json_is_object(data) ?
			    data : NULL, q->arg);
		return;
	}
	id = json_object_get(msg, "id");
	if (!json_is_integer(id))
		return;		/* a reply we did not tag: not ours */
	struct qmp_pending *p = take_pending(q, (unsigned long)
	    json_integer_value(id));
	if (p == NULL)
		return;
	if (p->cb) {
		if ((v = json_object_get(msg, "return")) != NULL)
			p->cb(q, v, NULL, p->arg);
		else {
			json_t *e = json_object_get(msg, "error");
			const char *desc = json_string_value(
			    json_object_get(e, "desc"));
			p->cb(q, NULL, desc ? desc : "QMP error", p->arg);
		}
	}
	free(p);
}

/* Handle each complete line of buf. */
static void
drain_lines(struct qmp *q, struct evbuffer *buf)
{
	q->in_callback++;
	while (q->state != QMP_CLOSED && !q->dead) {
		size_t n;
		/* QEMU ends its lines with CRLF; take a bare LF too. */
		char *line = evbuffer_readln(buf, &n, EVBUFFER_EOL_CRLF);
		if (line == NULL) {
			if (evbuffer_get_length(buf) > QMP_LINE_MAX)
				qmp_close(q, "QMP message too long");
			break;
		}
		json_error_t jerr;
		json_t *msg = json_loadb(line, n, 0, &jerr);
		free(line);
		if (msg == NULL) {
			/* QEMU only ever sends JSON; a blank line is harmless. */
			if (n == 0)
				continue;
			qmp_close(q, "QMP sent invalid JSON");
			break;
		}
		if (json_is_object(msg))
			handle_message(q, msg);
		json_decref(msg);
	}
	q->in_callback--;
	if (q->dead && q->in_callback == 0)
		qmp_free(q);
}

void
qmp_input(struct qmp *q, const char *data, size_t len)
{
	if (q->state == QMP_CLOSED)
		return;
	evbuffer_add(q->in, data, len);
	drain_lines(q, q->in);
}

static void
bev_read(struct bufferevent *bev, void *arg)
{
	struct qmp *q = arg;

	drain_lines(q, bufferevent_get_input(bev));
}

static void
bev_event(struct bufferevent *bev, short what, void *arg)
{
	struct qmp *q = arg;

	(void)bev;
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
		qmp_close(q, (what & BEV_EVENT_EOF) ? "connection closed" :
		    strerror(EVUTIL_SOCKET_ERROR()));
}

static void
timer_fire(evutil_socket_t fd, short what, void *arg)
{
	struct qmp *q = arg;

	(void)fd;
	(void)what;
	double limit = q->patience > q->timeout ? q->patience : q->timeout;

	if (q->head && now_mono() - q->head->sent > limit) {
		char why[128];
		snprintf(why, sizeof(why), "QEMU did not answer within %.0f s "
		    "(hung or stopped?)", limit);
		qmp_close(q, why);
	}
}

static double default_timeout = 10;

void
qmp_set_default_timeout(double seconds)
{
	default_timeout = seconds;
}

static struct qmp *
qmp_alloc(const struct qmp_handlers *h, void *arg)
{
	struct qmp *q = calloc(1, sizeof(*q));

	if (q == NULL)
		return NULL;
	q->h = *h;
	q->arg = arg;
	q->timeout = default_timeout;
	return q;
}

struct qmp *
qmp_new(struct event_base *base, int fd, const struct qmp_handlers *h,
    void *arg)
{
	struct qmp *q = qmp_alloc(h, arg);
	struct timeval tv = { 1, 0 };

	if (q == NULL)
		return NULL;
	q->bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
	q->timer = event_new(base, -1, EV_PERSIST, timer_fire, q);
	if (q->bev == NULL || q->timer == NULL) {
		if (q->bev == NULL)
			close(fd);
		qmp_free(q);
		return NULL;
	}
	q->send = bev_send;
	q->io_arg = q;
	bufferevent_setcb(q->bev, bev_read, NULL, bev_event, q);
	bufferevent_enable(q->bev, EV_READ);
	event_add(q->timer, &tv);
	return q;
}

struct qmp *
qmp_new_io(qmp_send_fn send, void *io_arg, const struct qmp_handlers *h,
    void *arg)
{
	struct qmp *q = qmp_alloc(h, arg);

	if (q == NULL)
		return NULL;
	q->send = send;
	q->io_arg = io_arg;
	q->in = evbuffer_new();
	return q;
}

void
qmp_set_timeout(struct qmp *q, double seconds)
{
	q->timeout = seconds;
}

void
qmp_set_patience(struct qmp *q, double seconds)
{
	if (q)
		q->patience = seconds;
}

int
qmp_is_ready(const struct qmp *q)
{
	return q->state == QMP_READY;
}

/* Fail every pending command; callbacks may send nothing more. */
static void
fail_pending(struct qmp *q, const char *why)
{
	struct qmp_pending *p;

	while ((p = q->head) != NULL) {
		q->head = p->next;
		if (q->head == NULL)
			q->tail = NULL;
		if (p->cb)
			p->cb(q, NULL, why, p->arg);
		free(p);
	}
}

static void
qmp_close(struct qmp *q, const char *why)
{
	if (q->state == QMP_CLOSED)
		return;
	q->state = QMP_CLOSED;
	if (q->bev)
		bufferevent_disable(q->bev, EV_READ | EV_WRITE);
	q->in_callback++;
	fail_pending(q, why);
	if (q->h.closed && !q->dead)
		q->h.closed(q, why, q->arg);
	q->in_callback--;
	if (q->dead && q->in_callback == 0)
		qmp_free(q);
}

void
qmp_free(struct qmp *q)
{
	if (q == NULL)
		return;
	if (q->in_callback) {
		/* Freed from inside one of our callbacks: finish later. */
		q->dead = 1;
		q->state = QMP_CLOSED;
		return;
	}
	q->state = QMP_CLOSED;
	q->in_callback++;
	fail_pending(q, "connection closed");
	q->in_callback--;
	if (q->bev)
		bufferevent_free(q->bev);
	if (q->timer)
		event_free(q->timer);
	if (q->in)
		evbuffer_free(q->in);
	free(q);
}
