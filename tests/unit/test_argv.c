/*
 * test_argv.c - the QEMU command line built by src/qemu/argv.c.  A spec with
 * two disks and a NIC, and a run directory with a comma in it, must give the
 * options vmgrd relies on, with commas doubled exactly where QEMU parses an
 * option string and nowhere else.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "qemu/argv.h"

#define VMDIR	"/tmp/vm,dir/web1"
#define VMDIR_E	"/tmp/vm,,dir/web1"

static const char spec_json[] =
    "{\"name\":\"web1\",\"vcpus\":2,\"boot\":{\"kernel\":\"/k\"},"
    "\"disks\":[{\"volume\":\"root\",\"size_gib\":1},"
    "{\"volume\":\"data\",\"size_gib\":2}],"
    "\"nics\":[{\"network\":\"nat\",\"mac\":\"52:54:00:12:34:56\"}]}";

static const char *const disk_paths[] = {
	"/var/lib/vmgr/volumes/root.qcow2",
	"/var/lib/vmgr/vol,umes/data.qcow2",
};

static void
load_spec(const char *text, struct vm_spec *spec)
{
	json_t *root = json_loads(text, JSON_DECODE_INT_AS_REAL, NULL);
	struct spec_error err;

	assert_non_null(root);
	if (spec_from_json(root, spec, &err) != 0)
		fail_msg("spec refused: %s", err.message);
	json_decref(root);
}

static struct qemu_conf
conf(const char *accel, int paused)
{
	struct qemu_conf c = {
		.binary = "/usr/bin/qemu-system-x86_64",
		.accel = accel,
		.vmdir = VMDIR,
		.kernel = "/images/tiny/vmlinuz",
		.initrd = "/images/tiny/initrd.img",
		.cmdline = "console=ttyS0 quiet, panic=-1",
		.disks = disk_paths,
		.paused = paused,
	};

	return c;
}

static size_t
count(char **argv, const char *s)
{
	size_t n = 0;

	for (char **p = argv; *p; p++)
		if (strcmp(*p, s) == 0)
			n++;
	return n;
}

/* Whether option opt appears followed by exactly val. */
static int
has_opt(char **argv, const char *opt, const char *val)
{
	for (char **p = argv; p[0] && p[1]; p++)
		if (strcmp(p[0], opt) == 0 && strcmp(p[1], val) == 0)
			return 1;
	return 0;
}

static void
assert_opt(char **argv, const char *opt, const char *val)
{
	if (!has_opt(argv, opt, val)) {
		fprintf(stderr, "argv:");
		for (char **p = argv; *p; p++)
			fprintf(stderr, " '%s'", *p);
		fprintf(stderr, "\n");
		fail_msg("no \"%s\" \"%s\" in argv", opt, val);
	}
}

/* The value of the only occurrence of opt. */
static const char *
opt_value(char **argv, const char *opt)
{
	const char *v = NULL;

	for (char **p = argv; p[0]; p++)
		if (strcmp(p[0], opt) == 0) {
			assert_null(v);
			assert_non_null(p[1]);
			v = p[1];
		}
	if (v == NULL)
		fail_msg("no %s in argv", opt);
	return v;
}

static void
test_tcg(void **unused)
{
	struct vm_spec spec;
	struct qemu_conf c = conf("tcg", 0);
	char **argv;
	size_t n;

	(void)unused;
	load_spec(spec_json, &spec);
	argv = qemu_argv(&spec, &c);
	assert_non_null(argv);

	for (n = 0; argv[n]; n++)
		assert_true(argv[n][0] != '\0');
	assert_true(n > 40);
	assert_null(argv[n]);
	assert_string_equal(argv[0], "/usr/bin/qemu-system-x86_64");

	assert_int_equal(count(argv, "-S"), 0);
	assert_string_equal(opt_value(argv, "-name"),
	    "guest=web1,debug-threads=on");
	assert_string_equal(opt_value(argv, "-machine"), "q35");
	assert_string_equal(opt_value(argv, "-accel"), "tcg,tb-size=64");
	assert_int_equal(count(argv, "virtio-balloon-pci,id=balloon0"), 1);
	assert_int_equal(count(argv, "-incoming"), 0);
	assert_string_equal(opt_value(argv, "-cpu"), "qemu64");
	assert_string_equal(opt_value(argv, "-smp"), "2");
	assert_string_equal(opt_value(argv, "-m"), "128M");
	assert_string_equal(opt_value(argv, "-sandbox"),
	    "on,obsolete=deny,elevateprivileges=deny,spawn=deny,"
	    "resourcecontrol=deny");
	assert_string_equal(opt_value(argv, "-display"), "none");
	assert_int_equal(count(argv, "-nodefaults"), 1);
	assert_int_equal(count(argv, "-no-user-config"), 1);

	/* QMP on the inherited descriptor. */
	assert_opt(argv, "-chardev", "socket,id=mon,fd=3,server=on,wait=off");
	assert_opt(argv, "-mon", "chardev=mon,mode=control");

	/*
	 * The console is vmgrd's listening socket and log, by descriptor;
	 * inside an option string the comma is doubled ...
	 */
	assert_opt(argv, "-chardev", "socket,id=ser0,fd=5,server=on,wait=off,"
	    "logfile=/dev/fdset/1,logappend=on");
	assert_opt(argv, "-serial", "chardev:ser0");
	assert_string_equal(opt_value(argv, "-add-fd"), "fd=6,set=1,opaque="
	    VMDIR_E "/console.log");
	char marker[256];
	assert_int_equal(qemu_marker(VMDIR, marker, sizeof(marker)), 0);
	assert_string_equal(marker, opt_value(argv, "-add-fd"));
	assert_int_equal(qemu_marker(VMDIR, marker, 20), -1);
	/* QEMU writes no pid file: it could not, in a directory of root's. */
	assert_int_equal(count(argv, "-pidfile"), 0);
	/* ... but a plain file argument is taken as is. */
	assert_string_equal(opt_value(argv, "-kernel"),
	    "/images/tiny/vmlinuz");
	assert_string_equal(opt_value(argv, "-initrd"),
	    "/images/tiny/initrd.img");
	assert_string_equal(opt_value(argv, "-append"),
	    "console=ttyS0 quiet, panic=-1");

	assert_int_equal(count(argv, "-blockdev"), 2);
	assert_opt(argv, "-blockdev", "driver=qcow2,node-name=disk0,"
	    "file.driver=file,file.filename=/var/lib/vmgr/volumes/root.qcow2");
	assert_opt(argv, "-blockdev", "driver=qcow2,node-name=disk1,"
	    "file.driver=file,file.filename=/var/lib/vmgr/vol,,umes/"
	    "data.qcow2");
	assert_opt(argv, "-device", "virtio-blk-pci,drive=disk0,id=vd0");
	assert_opt(argv, "-device", "virtio-blk-pci,drive=disk1,id=vd1");

	assert_string_equal(opt_value(argv, "-netdev"), "user,id=net0");
	assert_opt(argv, "-device", "virtio-net-pci,netdev=net0,id=nic0,"
	    "mac=52:54:00:12:34:56,romfile=");
	assert_opt(argv, "-device", "pvpanic");
	/* pvpanic, the balloon, two disks, one NIC. */
	assert_int_equal(count(argv, "-device"), 5);

	strv_free(argv);
	spec_clear(&spec);
}

static void
test_kvm_paused(void **unused)
{
	struct vm_spec spec;
	struct qemu_conf c = conf("kvm", 1);
	char **argv;
	size_t n;

	(void)unused;
	load_spec(spec_json, &spec);
	argv = qemu_argv(&spec, &c);
	assert_non_null(argv);
	assert_string_equal(opt_value(argv, "-machine"), "q35");
	assert_string_equal(opt_value(argv, "-accel"), "kvm");
	assert_string_equal(opt_value(argv, "-cpu"), "host");
	assert_int_equal(count(argv, "-S"), 1);
	for (n = 0; argv[n]; n++)
		;
	assert_string_equal(argv[n - 1], "-S");
	strv_free(argv);
	/* A restore waits for migrate-incoming. */
	c.incoming = 1;
	argv = qemu_argv(&spec, &c);
	assert_string_equal(opt_value(argv, "-incoming"), "defer");
	strv_free(argv);
	spec_clear(&spec);
}

/* No initrd, no command line, no disks, no NICs: none of their options. */
static void
test_minimal(void **unused)
{
	struct vm_spec spec;
	struct qemu_conf c = conf("tcg", 0);
	char **argv;

	(void)unused;
	load_spec("{\"name\":\"a\",\"image\":\"tiny\",\"memory_mib\":4096,"
	    "\"machine\":\"pc\"}", &spec);
	c.initrd = NULL;
	c.cmdline = NULL;
	c.disks = NULL;
	argv = qemu_argv(&spec, &c);
	assert_non_null(argv);
	assert_string_equal(opt_value(argv, "-machine"), "pc");
	assert_string_equal(opt_value(argv, "-m"), "4096M");
	assert_string_equal(opt_value(argv, "-smp"), "1");
	assert_string_equal(opt_value(argv, "-name"),
	    "guest=a,debug-threads=on");
	assert_int_equal(count(argv, "-initrd"), 0);
	assert_int_equal(count(argv, "-append"), 0);
	assert_int_equal(count(argv, "-blockdev"), 0);
	assert_int_equal(count(argv, "-netdev"), 0);
	assert_int_equal(count(argv, "-device"), 2);	/* pvpanic, balloon */
	assert_int_equal(count(argv, "-kernel"), 1);
	strv_free(argv);
	spec_clear(&spec);
}

/* The guest agent's port: vmgrd's listening socket, a virtio-serial port
 * of the name qemu-guest-agent looks for, and the id QMP's VSERPORT_CHANGE
 * names. */
static void
test_agent(void **unused)
{
	struct vm_spec spec;
	struct qemu_conf c = conf("tcg", 0);
	char **argv;

	(void)unused;
	load_spec(spec_json, &spec);
	assert_true(spec.agent.enabled);
	assert_true(spec.agent.freeze);
	c.agent = 1;
	argv = qemu_argv(&spec, &c);
	assert_non_null(argv);
	assert_opt(argv, "-chardev", "socket,id=qgachr,fd=7,server=on,"
	    "wait=off");
	assert_opt(argv, "-device", "virtio-serial-pci,id=vser0");
	assert_opt(argv, "-device", "virtserialport,bus=vser0.0,"
	    "chardev=qgachr,id=qga0,name=org.qemu.guest_agent.0");
	strv_free(argv);
	c.agent = 0;
	argv = qemu_argv(&spec, &c);
	assert_int_equal(count(argv, "virtio-serial-pci,id=vser0"), 0);
	/* No screen unless the spec has one. */
	assert_int_equal(count(argv, "-vnc"), 0);
	assert_int_equal(count(argv, "VGA,id=vga0"), 0);
	strv_free(argv);
	spec.vnc = true;
	argv = qemu_argv(&spec, &c);
	assert_opt(argv, "-device", "VGA,id=vga0");
	assert_opt(argv, "-vnc", "none");
	assert_string_equal(opt_value(argv, "-display"), "none");
	strv_free(argv);
	spec_clear(&spec);
}

/* Each NIC's backend: a switch's listening socket, passt's pair, a tap,
 * or QEMU's own NAT with its forwards. */
static void
test_nic_backends(void **unused)
{
	static const char four[] =
	    "{\"name\":\"n4\",\"boot\":{\"kernel\":\"/k\"},\"nics\":["
	    "{\"network\":\"lan\",\"mac\":\"52:54:00:00:00:01\"},"
	    "{\"network\":\"nat\",\"mac\":\"52:54:00:00:00:02\","
	    "\"forwards\":[{\"host_port\":2222,\"guest_port\":22}]},"
	    "{\"network\":\"br\",\"mac\":\"52:54:00:00:00:03\"},"
	    "{\"network\":\"nat\",\"mac\":\"52:54:00:00:00:04\"}]}";
	static const int netfds[] = { 8, 0, 0, 0 };
	static const int natfds[] = { 0, 9, 0, 0 };
	static const int tapfds[] = { -1, -1, 10, -1 };
	struct vm_spec spec;
	struct qemu_conf c = conf("tcg", 0);
	char **argv;

	(void)unused;
	load_spec(four, &spec);
	c.netfds = netfds;
	c.natfds = natfds;
	c.tapfds = tapfds;
	argv = qemu_argv(&spec, &c);
	assert_non_null(argv);
	assert_int_equal(count(argv, "-netdev"), 4);
	assert_opt(argv, "-netdev", "stream,id=net0,server=on,addr.type=fd,"
	    "addr.str=8");
	assert_opt(argv, "-netdev", "stream,id=net1,addr.type=fd,addr.str=9");
	assert_opt(argv, "-netdev", "tap,id=net2,fd=10");
	assert_opt(argv, "-netdev", "user,id=net3");
	assert_opt(argv, "-device", "virtio-net-pci,netdev=net3,id=nic3,"
	    "mac=52:54:00:00:00:04,romfile=");
	strv_free(argv);
	/* Without passt, QEMU's NAT takes the forwards itself. */
	c.natfds = NULL;
	argv = qemu_argv(&spec, &c);
	assert_opt(argv, "-netdev", "user,id=net1,hostfwd=tcp:127.0.0.1:2222-"
	    ":22");
	strv_free(argv);
	spec_clear(&spec);
}

static void
test_strv_free_null(void **unused)
{
	(void)unused;
	strv_free(NULL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tcg),
		cmocka_unit_test(test_kvm_paused),
		cmocka_unit_test(test_minimal),
		cmocka_unit_test(test_agent),
		cmocka_unit_test(test_nic_backends),
		cmocka_unit_test(test_strv_free_null),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
