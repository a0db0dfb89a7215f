/*
 * argv.c - build QEMU's command line from a spec.  Everything user-supplied
 * is passed as one argv element (never through a shell) and paths inside
 * QEMU option strings have their commas doubled, QEMU's own escape.
 */
#include "argv.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct strv {
	char	**v;
	size_t	  n, cap;
	int	  failed;
};

static void
push(struct strv *sv, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
push(struct strv *sv, const char *fmt, ...)
{
	va_list ap;
	char *s;

	if (sv->failed)
		return;
	if (sv->n + 2 > sv->cap) {
		size_t cap = sv->cap ? sv->cap * 2 : 64;
		char **v = realloc(sv->v, cap * sizeof(*v));
		if (v == NULL) {
			sv->failed = 1;
			return;
		}
		sv->v = v;
		sv->cap = cap;
	}
	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0) {
		sv->failed = 1;
		s = NULL;
	}
	va_end(ap);
	if (s == NULL)
		return;
	sv->v[sv->n++] = s;
	sv->v[sv->n] = NULL;
}

/*
 * QEMU's option parser splits on ','; a literal comma is written ",,".
 * NULL when the result does not fit: a cut path would name another file.
 */
static char *
escape_commas(const char *s, char *buf, size_t len)
{
	size_t o = 0;

	for (; *s; s++) {
		if (o + 3 > len)
			return NULL;
		if (*s == ',')
			buf[o++] = ',';
		buf[o++] = *s;
	}
	buf[o] = '\0';
	return buf;
}

int
qemu_marker(const char *vmdir, char *buf, size_t len)
{
	char e[4096];

	if (escape_commas(vmdir, e, sizeof(e)) == NULL)
		return -1;
	return (size_t)snprintf(buf, len, "fd=%d,set=1,opaque=%s/console.log",
	    QEMU_CONSOLE_LOG_FD, e) < len ? 0 : -1;
}

/* Each disk: a qcow2 node on its file, and a virtio-blk device. */
static void
push_disks(struct strv *sv, const struct vm_spec *spec,
    const struct qemu_conf *c)
{
	char e2[4096];

	for (int i = 0; i < spec->ndisks; i++) {
		push(sv, "-blockdev");
		if (escape_commas(c->disks[i], e2, sizeof(e2)) == NULL)
			sv->failed = 1;
		push(sv, "driver=qcow2,node-name=disk%d,file.driver=file,"
		    "file.filename=%s", i, e2);
		push(sv, "-device");
		push(sv, "virtio-blk-pci,drive=disk%d,id=vd%d", i, i);
	}
}

/*
 * Each NIC: its backend (a tap vmgrd opened, an isolated network's
 * socket, or user-mode NAT with its host forwards) and a virtio-net
 * device.  vmdir is the run dir with its commas escaped.
 */
static void
push_nics(struct strv *sv, const struct vm_spec *spec,
    const struct qemu_conf *c, const char *vmdir)
{
	for (int i = 0; i < spec->nnics; i++) {
		char fwd[SPEC_MAX_FORWARDS * 48] = "";
		for (int k = 0; k < spec->nics[i].nforwards; k++) {
			const struct spec_forward *f = &spec->nics[i].forwards[k];
			size_t o = strlen(fwd);
			snprintf(fwd + o, sizeof(fwd) - o, ",hostfwd=%s:%s:%d-:%d",
			    f->proto, f->host_addr, f->host_port,
			    f->guest_port);
		}
		push(sv, "-netdev");
		if (c->tapfds && c->tapfds[i] >= 0) {
			/* Opened by vmgrd: QEMU needs no access to /dev/net/tun. */
			push(sv, "tap,id=net%d,fd=%d", i, c->tapfds[i]);
		} else if (c->taps && c->taps[i]) {
			push(sv, "tap,id=net%d,ifname=%s,script=no,downscript=no",
			    i, c->taps[i]);
		} else if (c->nets && c->nets[i]) {
			char e3[4096];
			if (escape_commas(c->nets[i], e3, sizeof(e3)) == NULL)
				sv->failed = 1;
			push(sv, "dgram,id=net%d,local.type=unix,local.path="
			    "%s/qemu/net%d.sock,remote.type=unix,remote.path=%s",
			    i, vmdir, i, e3);
		} else
			push(sv, "user,id=net%d%s", i, fwd);
		push(sv, "-device");
		/* romfile= : no PXE ROM needed for direct kernel boot. */
		push(sv, "virtio-net-pci,netdev=net%d,id=nic%d,mac=%s,romfile=",
		    i, i, spec->nics[i].mac);
	}
}

char **
qemu_argv(const struct vm_spec *spec, const struct qemu_conf *c)
{
	struct strv sv = { 0 };
	char e1[4096], marker[4200];

	push(&sv, "%s", c->binary);
	push(&sv, "-name");
	push(&sv, QEMU_NAME_FMT, spec->name);
	push(&sv, "-machine");
	push(&sv, "%s", spec->machine);
	push(&sv, "-accel");
	if (strcmp(c->accel, "kvm") == 0) {
		push(&sv, "kvm");
		push(&sv, "-cpu");
		push(&sv, "host");
	} else {
		/* A 64 MiB translation cache, not 1 GiB: density under TCG. */
		push(&sv, "tcg,tb-size=64");
		push(&sv, "-cpu");
		push(&sv, "max");
	}
	push(&sv, "-smp");
	push(&sv, "%d", spec->vcpus);
	push(&sv, "-m");
	push(&sv, "%dM", spec->memory_mib);
	push(&sv, "-nodefaults");
	push(&sv, "-no-user-config");
	push(&sv, "-display");
	push(&sv, "none");
	push(&sv, "-sandbox");
	push(&sv, "on,obsolete=deny,elevateprivileges=deny,spawn=deny,"
	    "resourcecontrol=deny");
	push(&sv, "-msg");
	push(&sv, "timestamp=on");
	push(&sv, "-chardev");
	push(&sv, "socket,id=mon,fd=%d,server=on,wait=off", QEMU_QMP_FD);
	push(&sv, "-mon");
	push(&sv, "chardev=mon,mode=control");
	/*
	 * The serial console is a listening socket that `vmgr console`
	 * connects to; QEMU itself appends everything the guest prints to
	 * console.log, connected or not, and across vmgrd restarts.  Both are
	 * vmgrd's, handed over as descriptors.
	 */
	if (escape_commas(c->vmdir, e1, sizeof(e1)) == NULL ||
	    qemu_marker(c->vmdir, marker, sizeof(marker)) < 0)
		sv.failed = 1;
	push(&sv, "-add-fd");
	push(&sv, "%s", marker);
	push(&sv, "-chardev");
	push(&sv, "socket,id=ser0,fd=%d,server=on,wait=off,"
	    "logfile=/dev/fdset/1,logappend=on", QEMU_CONSOLE_FD);
	push(&sv, "-serial");
	push(&sv, "chardev:ser0");
	push(&sv, "-device");
	push(&sv, "pvpanic");
	/* The balloon moves dynamic and hybrid VMs within their range. */
	push(&sv, "-device");
	push(&sv, "virtio-balloon-pci,id=balloon0");
	push(&sv, "-kernel");
	push(&sv, "%s", c->kernel);
	if (c->initrd) {
		push(&sv, "-initrd");
		push(&sv, "%s", c->initrd);
	}
	if (c->cmdline) {
		push(&sv, "-append");
		push(&sv, "%s", c->cmdline);
	}
	push_disks(&sv, spec, c);
	push_nics(&sv, spec, c, e1);
	if (c->paused)
		push(&sv, "-S");
	if (c->incoming) {
		push(&sv, "-incoming");
		push(&sv, "defer");
	}
	if (sv.failed) {
		strv_free(sv.v);
		return NULL;
	}
	return sv.v;
}

void
strv_free(char **v)
{
	if (v == NULL)
		return;
	for (char **p = v; *p; p++)
		free(*p);
	free(v);
}
