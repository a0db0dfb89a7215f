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

/* Where firmware boots dev in the spec's order (1-based), or 0: not. */
static int
boot_index(const struct vm_spec *spec, const struct qemu_conf *c,
    enum spec_boot_dev dev)
{
	if (c->kernel)
		return 0;
	/*
	 * UEFI with one disk to boot: no order at all.  Given one, OVMF
	 * deletes the boot entries it does not match, the guest's own too
	 * (efibootmgr's), at every boot.
	 */
	if (c->ovmf_code && c->cdrom_fd <= 0 && spec->nboot == 0)
		return 0;
	if (spec->nboot == 0)		/* the disk, then the cdrom */
		return dev == SPEC_BOOT_DISK ? 1 : 2;
	for (int i = 0; i < spec->nboot; i++)
		if (spec->boot_order[i] == dev)
			return i + 1;
	return 0;
}

/*
 * Each disk: a qcow2 node on its file, and a virtio-blk device; the first
 * is the one firmware boots.
 */
static void
push_disks(struct strv *sv, const struct vm_spec *spec,
    const struct qemu_conf *c)
{
	char e2[4096], boot[24] = "";
	int bi = boot_index(spec, c, SPEC_BOOT_DISK);

	for (int i = 0; i < spec->ndisks; i++) {
		push(sv, "-blockdev");
		if (escape_commas(c->disks[i], e2, sizeof(e2)) == NULL)
			sv->failed = 1;
		push(sv, "driver=qcow2,node-name=disk%d,file.driver=file,"
		    "file.filename=%s", i, e2);
		push(sv, "-device");
		if (i == 0 && bi)
			snprintf(boot, sizeof(boot), ",bootindex=%d", bi);
		push(sv, "virtio-blk-pci,drive=disk%d,id=vd%d%s", i, i,
		    i == 0 ? boot : "");
	}
}

/*
 * Firmware, the cdrom and the cloud-init seed: each file is vmgrd's, handed
 * over as a descriptor in a fd set of its own.
 */
static void
push_firmware(struct strv *sv, const struct vm_spec *spec,
    const struct qemu_conf *c)
{
	char e[4096];
	int bi;

	if (c->ovmf_code) {
		if (escape_commas(c->ovmf_code, e, sizeof(e)) == NULL)
			sv->failed = 1;
		push(sv, "-drive");
		push(sv, "if=pflash,format=raw,unit=0,readonly=on,file=%s", e);
		push(sv, "-add-fd");
		push(sv, "fd=%d,set=2,opaque=efivars", c->vars_fd);
		if (c->vars_ro_fd > 0) {
			push(sv, "-add-fd");
			push(sv, "fd=%d,set=2,opaque=efivars-ro", c->vars_ro_fd);
		}
		push(sv, "-drive");
		push(sv, "if=pflash,format=raw,unit=1,file=/dev/fdset/2");
		if (spec->secure_boot) {
			push(sv, "-global");
			push(sv, "driver=cfi.pflash01,property=secure,value=on");
		}
	}
	if (c->cdrom_fd > 0) {
		char boot[24] = "";
		if ((bi = boot_index(spec, c, SPEC_BOOT_CDROM)) > 0)
			snprintf(boot, sizeof(boot), ",bootindex=%d", bi);
		push(sv, "-add-fd");
		push(sv, "fd=%d,set=4,opaque=cdrom", c->cdrom_fd);
		push(sv, "-drive");
		push(sv, "if=none,id=cd0,media=cdrom,readonly=on,format=raw,"
		    "file=/dev/fdset/4");
		push(sv, "-device");
		push(sv, "ide-cd,drive=cd0,id=cdrom0,bus=ide.1%s", boot);
	}
	if (c->seed_fd > 0) {
		push(sv, "-add-fd");
		push(sv, "fd=%d,set=3,opaque=cidata", c->seed_fd);
		push(sv, "-drive");
		push(sv, "if=none,id=seed,readonly=on,format=raw,"
		    "file=/dev/fdset/3");
		push(sv, "-device");
		push(sv, "virtio-blk-pci,drive=seed,id=seed0");
	}
}

/*
 * Each NIC: its backend (a tap vmgrd opened, an isolated network's
 * socket, passt's socket, or QEMU's user-mode NAT with its host forwards)
 * and a virtio-net device.
 */
static void
push_nics(struct strv *sv, const struct vm_spec *spec,
    const struct qemu_conf *c)
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
		} else if (c->netfds && c->netfds[i] > 0) {
			/*
			 * An isolated network: QEMU listens on the socket vmgrd
			 * bound for it and vmgrd's switch connects, again after
			 * a restart of vmgrd.  Frames go as a stream, each with
			 * its length, so the switch reads and writes many at once.
			 */
			push(sv, "stream,id=net%d,server=on,addr.type=fd,"
			    "addr.str=%d", i, c->netfds[i]);
		} else if (c->natfds && c->natfds[i] > 0) {
			/* passt's end of a socket pair: NAT outside QEMU. */
			push(sv, "stream,id=net%d,addr.type=fd,addr.str=%d", i,
			    c->natfds[i]);
		} else
			push(sv, "user,id=net%d%s", i, fwd);
		push(sv, "-device");
		/* romfile= : no PXE ROM; nothing boots from the network. */
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
	/* Secure Boot keeps its variables in SMM. */
	push(&sv, "%s%s", spec->machine, spec->secure_boot && c->ovmf_code ?
	    ",smm=on" : "");
	push(&sv, "-accel");
	if (strcmp(c->accel, "kvm") == 0) {
		push(&sv, "kvm");
		push(&sv, "-cpu");
		push(&sv, "host");
	} else {
		/* A 64 MiB translation cache, not 1 GiB: density under TCG. */
		push(&sv, "tcg,tb-size=64");
		/*
		 * qemu64, not max: QEMU 7.2's TCG, live-migrating a busy
		 * guest on max (or Nehalem) hands over corrupt memory now and
		 * then (kernel oopses, a stack canary, a shell's lost fds on
		 * the destination); QEMU alone, no vmgr, does it too.  On
		 * qemu64 it is much rarer (docs/ARCHITECTURE.md).
		 */
		push(&sv, "-cpu");
		push(&sv, "qemu64");
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
	/*
	 * A screen: standard VGA (firmware, installers and Linux all draw on
	 * it) into a VNC display that listens nowhere: vmgrd hands it each
	 * client (add_client), and screendump reads it.
	 */
	if (spec->vnc) {
		push(&sv, "-device");
		push(&sv, "VGA,id=vga0");
		push(&sv, "-vnc");
		push(&sv, "none");
	}
	/*
	 * The guest agent's port: a listening socket of vmgrd's that vmgrd
	 * itself connects to; QMP's VSERPORT_CHANGE (id qga0) tells when the
	 * agent in the guest opens or closes it.
	 */
	if (c->agent) {
		push(&sv, "-chardev");
		push(&sv, "socket,id=qgachr,fd=%d,server=on,wait=off",
		    QEMU_AGENT_FD);
		push(&sv, "-device");
		push(&sv, "virtio-serial-pci,id=vser0");
		push(&sv, "-device");
		push(&sv, "virtserialport,bus=vser0.0,chardev=qgachr,id=qga0,"
		    "name=org.qemu.guest_agent.0");
	}
	/* The balloon moves dynamic and hybrid VMs within their range. */
	push(&sv, "-device");
	push(&sv, "virtio-balloon-pci,id=balloon0");
	if (c->kernel) {
		push(&sv, "-kernel");
		push(&sv, "%s", c->kernel);
	}
	if (c->kernel && c->initrd) {
		push(&sv, "-initrd");
		push(&sv, "%s", c->initrd);
	}
	if (c->kernel && c->cmdline) {
		push(&sv, "-append");
		push(&sv, "%s", c->cmdline);
	}
	push_disks(&sv, spec, c);	/* vda, vdb...: the spec's disks first */
	push_firmware(&sv, spec, c);
	push_nics(&sv, spec, c);
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
