/*
 * display.c - a VM's graphical console: QEMU draws on a VGA adapter into a
 * VNC display that listens nowhere (-vnc none).  vmgrd listens for it on
 * VMDIR/vnc.sock, in the run dir only root reaches, and hands each client
 * it accepts to QEMU (getfd, add_client), so QEMU opens no socket and no
 * port; `vmgr vnc` forwards a port on 127.0.0.1 to that socket.  And a
 * screenshot: QMP screendump writes a PNG into QEMU's own directory, which
 * vmgrd reads back (never following a link) and serves.
 */
#include "daemon.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>

#include "../lib/log.h"
#include "../lib/sock.h"
#include "../lib/util.h"
#include "../qemu/qmp.h"

#define SCREEN_MAX	(64 << 20)	/* a PNG larger than this is refused */

static void
client_added(struct qmp *q, json_t *r, const char *error, void *arg)
{
	struct vm *vm = arg;

	(void)q;
	(void)r;
	if (error)
		log_warnx("%s: VNC client refused by QEMU: %s", vm->spec.name,
		    error);
}

/* A client on vnc.sock: its descriptor goes to QEMU's VNC display. */
static void
accepted(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
    int len, void *arg)
{
	struct vm *vm = arg;
	static unsigned seq;
	char name[32];

	(void)l;
	(void)sa;
	(void)len;
	snprintf(name, sizeof(name), "vnc%u", ++seq);
	if (vm->qmp == NULL || !qmp_is_ready(vm->qmp) ||
	    qmp_command_fd(vm->qmp, "getfd", json_pack("{s:s}", "fdname",
	    name), fd, NULL, NULL) < 0 ||
	    qmp_command(vm->qmp, "add_client", json_pack("{s:s, s:s, s:b}",
	    "protocol", "vnc", "fdname", name, "skipauth", 1), client_added,
	    vm) < 0)
		log_warnx("%s: VNC client dropped: QEMU's monitor is not there",
		    vm->spec.name);
	close(fd);	/* QEMU has its own copy now */
}

void
display_attach(struct vm *vm)
{
	char path[PATH_MAX];
	int fd;

	if (!vm->spec.vnc || vm->vnc)
		return;
	vm_path(vm, "vnc.sock", path, sizeof(path));
	if ((fd = sock_bind(path, SOCK_STREAM | SOCK_NONBLOCK, 8, 0600)) < 0) {
		log_warn("%s: %s", vm->spec.name, path);
		return;
	}
	if ((vm->vnc = evconnlistener_new(vmgrd->base, accepted, vm,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, fd)) == NULL) {
		log_warnx("%s: cannot listen on %s", vm->spec.name, path);
		close(fd);
	}
}

void
display_detach(struct vm *vm)
{
	char path[PATH_MAX];

	if (vm->vnc == NULL)
		return;
	evconnlistener_free(vm->vnc);
	vm->vnc = NULL;
	vm_path(vm, "vnc.sock", path, sizeof(path));
	unlink(path);
}

/* ---- screenshot */

struct shot {
	struct vm	*vm;
	struct parked	*p;
	char		 path[PATH_MAX];
};

static void
shot_done(struct qmp *q, json_t *r, const char *error, void *arg)
{
	struct shot *s = arg;
	struct stat st;
	int fd = -1;

	(void)q;
	(void)r;
	if (error) {
		api_answer_error(s->p, 502, "screenshot_failed", "screendump: %s",
		    error);
		goto out;
	}
	/* QEMU's directory, so its file: read it, never through a link. */
	if ((fd = open(s->path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) < 0 ||
	    fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size <= 8 ||
	    st.st_size > SCREEN_MAX) {
		api_answer_error(s->p, 502, "screenshot_failed", "QEMU's "
		    "screendump left no PNG to read (%s)", fd < 0 ?
		    strerror(errno) : "not a plain file of a sane size");
		goto out;
	}
	struct evbuffer *b = evbuffer_new();
	if (b == NULL || evbuffer_add_file(b, fd, 0, st.st_size) < 0) {
		if (b)
			evbuffer_free(b);
		api_answer_error(s->p, 500, "no_memory", "out of memory");
		goto out;
	}
	fd = -1;	/* the buffer has it */
	struct evhttp_request *req = api_unpark(s->p);
	if (req) {
		evhttp_add_header(evhttp_request_get_output_headers(req),
		    "Content-Type", "image/png");
		evhttp_send_reply(req, 200, "OK", b);
	}
	evbuffer_free(b);
out:
	if (fd >= 0)
		close(fd);
	unlink(s->path);
	free(s);
}

/* GET /v1/vms/NAME/screenshot: the screen now, as a PNG. */
int
display_api_screenshot(struct api_call *c)
{
	struct vm *vm = c->vm;
	struct shot *s;

	if (!vm->spec.vnc)
		return api_err(&c->err, 409, "no_display", "%s has no graphical "
		    "console (vnc is false in its spec)", vm->spec.name);
	if (vm->state != VM_RUNNING && vm->state != VM_PAUSED &&
	    vm->state != VM_STOPPING)
		return api_err(&c->err, 409, "invalid_state", "%s is %s: there "
		    "is no screen", vm->spec.name, vm_state_name(vm->state));
	if (vm->qmp == NULL || !qmp_is_ready(vm->qmp))
		return api_err(&c->err, 503, "qmp_unavailable", "QEMU's monitor "
		    "of %s is not connected; try again", vm->spec.name);
	if ((s = calloc(1, sizeof(*s))) == NULL)
		return api_err(&c->err, 500, "no_memory", "out of memory");
	s->vm = vm;
	snprintf(s->path, sizeof(s->path), "%s/qemu/screen-%ld.png", vm->dir,
	    (long)now_unix_ms());
	unlink(s->path);
	if ((s->p = api_park(c->req, 0)) == NULL) {
		free(s);
		return api_err(&c->err, 500, "no_memory", "out of memory");
	}
	if (qmp_command(vm->qmp, "screendump", json_pack("{s:s, s:s}",
	    "filename", s->path, "format", "png"), shot_done, s) < 0) {
		api_answer_error(s->p, 503, "qmp_unavailable", "QEMU's monitor "
		    "of %s is not connected", vm->spec.name);
		free(s);
	}
	return API_WAIT;
}
