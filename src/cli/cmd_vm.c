/*
 * cmd_vm.c - vmgr's VM commands: create, list, info, delete, and the
 * lifecycle actions start, pause, resume, shutdown and stop.
 */
#include "cli.h"

#include <crypt.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../core/spec.h"
#include "../lib/util.h"


static void
print_vm_line(json_t *vm, int wide)
{
	json_t *spec = json_object_get(vm, "spec");
	char mem[32], up[32] = "-";
	json_t *uptime = json_object_get(vm, "uptime_s");

	if (uptime)
		fmt_duration(json_integer_value(uptime), up, sizeof(up));
	fmt_mib((long long)json_number_value(json_object_get(spec,
	    "memory_mib")), mem, sizeof(mem));
	printf("%-*s  %-9s %5lld  %7s  %8s  %s\n", wide, jstr(vm, "name"),
	    jstr(vm, "state"),
	    (long long)json_number_value(json_object_get(spec, "vcpus")), mem,
	    up, *jstr(vm, "ip") ? jstr(vm, "ip") : "-");
}

int
cmd_list(int argc, char **argv)
{
	json_t *resp, *vm;
	size_t i;
	int wide = 4, rc;

	if (argc > 1)
		return usage_error("list", "unexpected argument \"%s\"",
		    argv[1]);
	if ((resp = api_get("/v1/vms", &rc)) == NULL)
		return rc;
	if (cli.json) {
		print_json(resp);
		json_decref(resp);
		return 0;
	}
	json_array_foreach(resp, i, vm) {
		int n = (int)strlen(jstr(vm, "name"));
		if (n > wide)
			wide = n;
	}
	printf("%-*s  %-9s %5s  %7s  %8s  %s\n", wide, "NAME", "STATE",
	    "VCPUS", "MEMORY", "UPTIME", "IP");
	json_array_foreach(resp, i, vm)
		print_vm_line(vm, wide);
	json_decref(resp);
	return 0;
}

/* What the guest agent says: its state, the OS, names and addresses. */
static void
print_guest(json_t *vm)
{
	json_t *g = json_object_get(vm, "guest"), *os, *i, *a;
	size_t k, m;

	if (*jstr(vm, "ip"))
		printf("ip:           %s\n", jstr(vm, "ip"));
	if (g == NULL)
		return;
	if (strcmp(jstr(g, "agent"), "connected") == 0)
		printf("guest agent:  connected since %s%s%s\n",
		    jstr(g, "connected_since"), *jstr(g, "agent_version") ?
		    ", version " : "", jstr(g, "agent_version"));
	else if (json_object_get(vm, "pid"))
		printf("guest agent:  %s (%s)\n", jstr(g, "agent"),
		    jstr(g, "error"));
	else
		printf("guest agent:  %s\n", jstr(g, "agent"));
	if ((os = json_object_get(g, "os")) != NULL)
		printf("guest os:     %s%s%s\n", *jstr(os, "pretty_name") ?
		    jstr(os, "pretty_name") : jstr(os, "name"),
		    *jstr(os, "kernel") ? ", kernel " : "", jstr(os, "kernel"));
	if (*jstr(g, "hostname"))
		printf("hostname:     %s\n", jstr(g, "hostname"));
	json_array_foreach(json_object_get(g, "interfaces"), k, i) {
		if (strcmp(jstr(i, "name"), "lo") == 0)
			continue;
		printf("guest nic:    %s %s", jstr(i, "name"), jstr(i, "mac"));
		json_array_foreach(json_object_get(i, "addresses"), m, a)
			printf(" %s/%lld", jstr(a, "address"), (long long)
			    json_integer_value(json_object_get(a, "prefix")));
		printf("\n");
	}
	json_array_foreach(json_object_get(g, "filesystems"), k, i) {
		char used[32], total[32];
		if (!json_object_get(i, "total_bytes"))
			continue;
		printf("guest fs:     %s (%s) %s used of %s\n",
		    jstr(i, "mountpoint"), jstr(i, "type"), fmt_bytes(
		    (long long)json_integer_value(json_object_get(i,
		    "used_bytes")), used, sizeof(used)), fmt_bytes((long long)
		    json_integer_value(json_object_get(i, "total_bytes")),
		    total, sizeof(total)));
	}
}

int
cmd_info(int argc, char **argv)
{
	json_t *vm, *spec, *rt, *v;
	char mem[32], up[32], path[256];
	size_t i;
	int rc;

	if (argc != 2)
		return usage_error("info", "give one VM name");
	snprintf(path, sizeof(path), "/v1/vms/%s", argv[1]);
	if ((vm = api_get(path, &rc)) == NULL)
		return rc;
	if (cli.json) {
		print_json(vm);
		json_decref(vm);
		return 0;
	}
	spec = json_object_get(vm, "spec");
	rt = json_object_get(vm, "runtime");
	printf("name:         %s\n", jstr(vm, "name"));
	printf("state:        %s%s%s%s\n", jstr(vm, "state"),
	    *jstr(vm, "state_reason") ? " (" : "", jstr(vm, "state_reason"),
	    *jstr(vm, "state_reason") ? ")" : "");
	printf("since:        %s\n", jstr(vm, "state_since"));
	printf("created:      %s\n", jstr(vm, "created_at"));
	printf("vcpus:        %lld\n", (long long)json_number_value(
	    json_object_get(spec, "vcpus")));
	printf("memory:       %s\n", fmt_mib((long long)json_number_value(
	    json_object_get(spec, "memory_mib")), mem, sizeof(mem)));
	printf("machine:      %s\n", jstr(spec, "machine"));
	if (*jstr(spec, "image"))
		printf("image:        %s\n", jstr(spec, "image"));
	if ((v = json_object_get(spec, "boot")) != NULL) {
		if (*jstr(v, "kernel"))
			printf("kernel:       %s\n", jstr(v, "kernel"));
		if (*jstr(v, "initrd"))
			printf("initrd:       %s\n", jstr(v, "initrd"));
		if (*jstr(v, "cmdline"))
			printf("cmdline:      %s\n", jstr(v, "cmdline"));
		if (json_array_size(json_object_get(v, "order"))) {
			json_t *d;
			size_t k;
			printf("boot order:   ");
			json_array_foreach(json_object_get(v, "order"), k, d)
				printf("%s%s", k ? ", " : "", json_string_value(d));
			printf("\n");
		}
	}
	if (*jstr(spec, "firmware"))
		printf("firmware:     %s%s\n", strcmp(jstr(spec, "firmware"),
		    "uefi") == 0 ? "UEFI (OVMF)" : "BIOS (SeaBIOS)",
		    json_is_true(json_object_get(spec, "secure_boot")) ?
		    ", Secure Boot" : "");
	if (*jstr(spec, "cdrom"))
		printf("cdrom:        %s\n", jstr(spec, "cdrom"));
	if ((v = json_object_get(spec, "cloud_init")) != NULL)
		printf("cloud-init:   user %s, %zu SSH key%s%s%s\n",
		    *jstr(v, "user") ? jstr(v, "user") : "vmgr",
		    json_array_size(json_object_get(v, "ssh_authorized_keys")),
		    json_array_size(json_object_get(v, "ssh_authorized_keys")) ==
		    1 ? "" : "s", json_object_get(v, "password_hash") ?
		    ", a password" : "", json_object_get(v, "user_data") ?
		    ", user-data" : "");
	if ((v = json_object_get(vm, "ssh")) != NULL)
		printf("ssh:          %s\n", jstr(v, "command"));
	json_array_foreach(json_object_get(spec, "disks"), i, v) {
		long long size = (long long)json_number_value(json_object_get(v,
		    "size"));
		char sz[32];
		if (size <= 0)	/* a spec of vmgr 0.1 */
			size = (long long)json_number_value(json_object_get(v,
			    "size_gib")) << 30;
		if (size > 0 && *jstr(v, "image"))
			printf("disk %zu:       %s (a clone of image %s, %s)\n", i,
			    jstr(v, "volume"), jstr(v, "image"), fmt_bytes(size, sz,
			    sizeof(sz)));
		else if (size > 0)
			printf("disk %zu:       %s (made with it, %s)\n", i,
			    jstr(v, "volume"), fmt_bytes(size, sz, sizeof(sz)));
		else
			printf("disk %zu:       %s (attached)\n", i,
			    jstr(v, "volume"));
	}
	json_array_foreach(json_object_get(spec, "nics"), i, v) {
		json_t *f;
		size_t k;
		/* A running VM's NIC says what carries it: passt or slirp
		 * for NAT, vmgrd's switch, a bridge. */
		json_t *b = json_object_get(json_array_get(json_object_get(rt,
		    "nics"), i), "backend");
		printf("nic %zu:        %s %s%s%s%s\n", i, jstr(v, "network"),
		    jstr(v, "mac"), b ? " (" : "", b ? json_string_value(b) : "",
		    b ? ")" : "");
		json_array_foreach(json_object_get(v, "forwards"), k, f)
			printf("forward:      %s %s:%lld -> guest port %lld\n",
			    jstr(f, "proto"), jstr(f, "host_addr"),
			    (long long)json_number_value(json_object_get(f,
			    "host_port")), (long long)json_number_value(
			    json_object_get(f, "guest_port")));
	}
	if ((v = json_object_get(vm, "pid")) != NULL) {
		printf("pid:          %lld\n", (long long)json_integer_value(v));
		printf("uptime:       %s\n", fmt_duration(json_integer_value(
		    json_object_get(vm, "uptime_s")), up, sizeof(up)));
		printf("accel:        %s\n", jstr(rt, "accel"));
	}
	json_t *res = json_object_get(spec, "resources");
	printf("resources:    policy %s, priority %lld, weight %g, min memory "
	    "%lldM\n", jstr(res, "policy"), (long long)json_number_value(
	    json_object_get(res, "priority")), json_number_value(
	    json_object_get(res, "weight")), (long long)json_number_value(
	    json_object_get(res, "min_memory_mib")));
	json_t *sc = json_object_get(spec, "schedule");
	if (json_object_get(sc, "expected_runtime_s") ||
	    json_is_true(json_object_get(sc, "preemptible"))) {
		char rt2[32] = "undeclared";
		if (json_object_get(sc, "expected_runtime_s"))
			fmt_duration((long long)json_number_value(
			    json_object_get(sc, "expected_runtime_s")), rt2,
			    sizeof(rt2));
		printf("schedule:     runtime %s%s\n", rt2, json_is_true(
		    json_object_get(sc, "preemptible")) ? ", preemptible" : "");
	}
	if ((v = json_object_get(vm, "queue")) != NULL)
		printf("queue:        position %lld: %s\n", (long long)
		    json_integer_value(json_object_get(v, "position")),
		    jstr(v, "reason"));
	if ((v = json_object_get(vm, "allocation")) != NULL) {
		json_t *cg = json_object_get(v, "cgroup");
		printf("allocation:   %.2f cpus, %.0f MiB (entitlement %.2f)%s\n",
		    json_number_value(json_object_get(v, "cpus")),
		    json_number_value(json_object_get(v, "memory_mib")),
		    json_number_value(json_object_get(v, "entitlement")),
		    json_is_true(json_object_get(v, "enforced")) ? "" :
		    ", not enforced");
		if (json_object_get(v, "balloon_target_mib"))
			printf("balloon:      %lld MiB\n", (long long)
			    json_integer_value(json_object_get(v,
			    "balloon_target_mib")));
		const char *key;
		json_t *val;
		json_object_foreach(cg, key, val)
			printf("cgroup:       %s = %s\n", key,
			    json_string_value(val));
	}
	print_guest(vm);
	printf("console:      %s\n", jstr(rt, "console_socket"));
	printf("console log:  %s\n", jstr(rt, "console_log"));
	json_decref(vm);
	return 0;
}

/* Make a path absolute: vmgrd does not share our working directory. */
static json_t *
abs_path(const char *cmd, const char *p)
{
	char buf[PATH_MAX];

	if (realpath(p, buf) == NULL) {
		fprintf(stderr, "vmgr %s: %s: %s\n", cmd, p, strerror(errno));
		return NULL;
	}
	return json_string(buf);
}

static json_t *
read_spec_file(const char *file)
{
	json_error_t err;
	json_t *j;

	if (strcmp(file, "-") == 0)
		j = json_loadf(stdin, JSON_DECODE_INT_AS_REAL, &err);
	else
		j = json_load_file(file, JSON_DECODE_INT_AS_REAL, &err);
	if (j == NULL)
		fprintf(stderr, "vmgr create: %s: line %d: %s\n", file,
		    err.line, err.text);
	return j;
}

/* What `vmgr create` gathers from its options, before the spec. */
struct create_args {
	json_t		*spec, *boot, *disks, *nics;
	json_t		*ci;		/* cloud_init, when an option set it */
	const char	*file;
	uint64_t	 disk_size;	/* of the image's clone; 0: the image's */
};

static json_t *
ci(struct create_args *a)
{
	if (a->ci == NULL)
		a->ci = json_object();
	return a->ci;
}

/* --ssh-key FILE: every key line of an OpenSSH public key file, to keys. */
int
read_ssh_keys(const char *cmd, const char *path, json_t *keys)
{
	char *text = cli_option_file("--ssh-key", path, 256 * 1024), *line, *save;
	int n = 0;

	if (text == NULL)
		return EXIT_USAGE;
	if (strstr(text, "PRIVATE KEY")) {
		free(text);
		return usage_error(cmd, "%s is a private key; give its .pub "
		    "file, the public key", path);
	}
	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL,
	    "\n", &save)) {
		line[strcspn(line, "\r")] = '\0';
		if (line[0] == '\0' || line[0] == '#')
			continue;
		if (!spec_ssh_key_valid(line)) {
			int rc = usage_error(cmd, "%s: \"%.40s...\" is not an "
			    "SSH public key (ssh-ed25519 AAAA... comment)", path,
			    line);
			free(text);	/* line is in it */
			return rc;
		}
		json_array_append_new(keys, json_string(line));
		n++;
	}
	free(text);
	if (n == 0)
		return usage_error(cmd, "%s has no public key", path);
	return 0;
}

static int
add_ssh_keys(struct create_args *a, const char *path)
{
	json_t *keys;

	if ((keys = json_object_get(ci(a), "ssh_authorized_keys")) == NULL)
		json_object_set_new(a->ci, "ssh_authorized_keys", keys =
		    json_array());
	return read_ssh_keys("create", path, keys);
}

/*
 * --password-file FILE: its first line, a crypt(3) hash as is, or a
 * password hashed here (SHA-512): the password itself never leaves.
 */
char *
cli_password_hash(const char *cmd, const char *text)
{
	static const char al[] =
	    "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
	unsigned char r[12];
	char salt[32];
	const char *hash;

	if (spec_password_hash_valid(text))
		return strdup(text);
	if (getentropy(r, sizeof(r)) < 0) {
		usage_error(cmd, "no randomness for a salt");
		return NULL;
	}
	snprintf(salt, sizeof(salt), "$6$");
	for (int i = 0; i < 12; i++)
		salt[3 + i] = al[r[i] % 64];
	salt[15] = '\0';
	if ((hash = crypt(text, salt)) == NULL || hash[0] != '$') {
		usage_error(cmd, "cannot hash the password");
		return NULL;
	}
	return strdup(hash);
}

static int
set_password(struct create_args *a, const char *path)
{
	char *text = cli_option_file("--password-file", path, 4096), *hash;

	if (text == NULL)
		return EXIT_USAGE;
	text[strcspn(text, "\r\n")] = '\0';
	if (text[0] == '\0') {
		free(text);
		return usage_error("create", "%s: the first line is empty", path);
	}
	hash = cli_password_hash("create", text);
	explicit_bzero(text, strlen(text));
	free(text);
	if (hash == NULL)
		return EXIT_USAGE;
	json_object_set_new(ci(a), "password_hash", json_string(hash));
	free(hash);
	return 0;
}

/* --boot cdrom,disk */
static int
set_boot_order(struct create_args *a, const char *arg)
{
	char buf[64], *p, *save = NULL;
	json_t *order = json_array();

	snprintf(buf, sizeof(buf), "%s", arg);
	for (p = strtok_r(buf, ",", &save); p; p = strtok_r(NULL, ",", &save))
		json_array_append_new(order, json_string(p));
	json_object_set_new(a->boot, "order", order);
	return 0;
}

/* --disk NAME attaches a volume; new:SIZE makes one. */
static int
add_disk(struct create_args *a, const char *arg)
{
	uint64_t bytes;

	if (strncmp(arg, "new:", 4) != 0) {
		json_array_append_new(a->disks, json_pack("{s:s}", "volume",
		    arg));
		return 0;
	}
	if (cli_size(arg + 4, &bytes) < 0)
		return usage_error("create", "--disk takes a volume name, or "
		    "new:SIZE (new:512M, new:10G), not \"%s\"", arg);
	json_array_append_new(a->disks, json_pack("{s:I}", "size",
	    (json_int_t)bytes));
	return 0;
}

/* --nic NETWORK[,mac-filter=on|off] */
static int
add_nic(struct create_args *a, const char *arg)
{
	char net[80], *opt;
	json_t *nic;

	snprintf(net, sizeof(net), "%s", arg);
	if ((opt = strchr(net, ',')) != NULL)
		*opt++ = '\0';
	nic = json_pack("{s:s}", "network", net);
	json_array_append_new(a->nics, nic);
	if (opt == NULL || strcmp(opt, "mac-filter=on") == 0)
		return 0;
	if (strcmp(opt, "mac-filter=off") == 0) {
		json_object_set_new(nic, "mac_filter", json_false());
		return 0;
	}
	return usage_error("create", "--nic takes NETWORK or "
	    "NETWORK,mac-filter=on|off, not \"%s\"", arg);
}

/* --forward: on the last --nic; a NAT NIC of its own when none. */
static int
add_forward(struct create_args *a, const char *arg)
{
	struct spec_forward f;

	if (spec_forward_parse(arg, &f) < 0)
		return usage_error("create", "--forward takes "
		    "tcp|udp:[HOSTADDR:]HOSTPORT:GUESTPORT, not \"%s\"", arg);
	if (json_array_size(a->nics) == 0)
		json_array_append_new(a->nics, json_pack("{s:s}", "network",
		    "nat"));
	json_t *nic = json_array_get(a->nics, json_array_size(a->nics) - 1);
	json_t *fws = json_object_get(nic, "forwards");
	if (fws == NULL) {
		fws = json_array();
		json_object_set_new(nic, "forwards", fws);
	}
	json_array_append_new(fws, json_pack("{s:s, s:s, s:i, s:i}", "proto",
	    f.proto, "host_addr", f.host_addr, "host_port", f.host_port,
	    "guest_port", f.guest_port));
	return 0;
}

/* One option of `vmgr create` (getopt's ch): 0, or the exit status. */
static int
create_option(struct create_args *a, int ch, const char *arg,
    const char *given)
{
	long long n;
	json_t *v;
	char *end;

	switch (ch) {
	case 'f':
		a->file = arg;
		return 0;
	case 'i':
		json_object_set_new(a->spec, "image", json_string(arg));
		return 0;
	case 'k':
	case 'r':
		if ((v = abs_path("create", arg)) == NULL)
			return EXIT_USAGE;
		json_object_set_new(a->boot, ch == 'k' ? "kernel" : "initrd",
		    v);
		return 0;
	case 'c':
		json_object_set_new(a->boot, "cmdline", json_string(arg));
		return 0;
	case 'n':
		errno = 0;
		n = strtoll(arg, &end, 10);
		if (errno || *end || end == arg)
			return usage_error("create", "--vcpus takes a number, "
			    "not \"%s\"", arg);
		json_object_set_new(a->spec, "vcpus", json_integer(n));
		return 0;
	case 'm':
		if (parse_size_mib(arg, &n) < 0)
			return usage_error("create", "--memory takes a size "
			    "such as 128M or 1G, not \"%s\"", arg);
		json_object_set_new(a->spec, "memory_mib", json_integer(n));
		return 0;
	case 'M':
		json_object_set_new(a->spec, "machine", json_string(arg));
		return 0;
	case 'd':
		return add_disk(a, arg);
	case 'N':
		return add_nic(a, arg);
	case 'F':
		return add_forward(a, arg);
	case 'a':
		json_object_set_new(a->spec, "autostart", json_true());
		return 0;
	case 'S':
		if (cli_size(arg, &a->disk_size) < 0)
			return usage_error("create", "--disk-size takes a size "
			    "such as 10G, not \"%s\"", arg);
		return 0;
	case 'K':
		return add_ssh_keys(a, arg);
	case 'u':
		json_object_set_new(ci(a), "user", json_string(arg));
		return 0;
	case 'p':
		return set_password(a, arg);
	case 'D': {
		char *text = cli_option_file("--user-data", arg, 1 << 20);
		if (text == NULL)
			return EXIT_USAGE;
		json_object_set_new(ci(a), "user_data", json_string(text));
		free(text);
		return 0;
	}
	case 'W':
		json_object_set_new(a->spec, "firmware", json_string(arg));
		return 0;
	case 'B':
		json_object_set_new(a->spec, "secure_boot", json_true());
		return 0;
	case 'C':
		if ((v = abs_path("create", arg)) == NULL)
			return EXIT_USAGE;
		json_object_set_new(a->spec, "cdrom", v);
		return 0;
	case 'O':
		return set_boot_order(a, arg);
	case 'V':
	case 'X':
		json_object_set_new(a->spec, "vnc", json_boolean(ch == 'V'));
		return 0;
	case 'G':
	case 'Z': {
		json_t *ag = json_object_get(a->spec, "agent");
		if (ag == NULL)
			json_object_set_new(a->spec, "agent", ag = json_object());
		json_object_set_new(ag, ch == 'G' ? "enabled" : "freeze",
		    json_false());
		return 0;
	}
	default:
		return usage_error("create", "unknown option \"%s\"", given);
	}
}

/*
 * The spec to send: the file's (-f), named name if given, or the
 * options' with name.  0, or the exit status.
 */
static int
create_spec(struct create_args *a, const char *name)
{
	json_t *v;
	size_t i;

	if (a->file) {
		if (json_object_size(a->spec) || json_object_size(a->boot) ||
		    json_array_size(a->disks) || json_array_size(a->nics) ||
		    a->ci || a->disk_size)
			return usage_error("create", "-f takes the whole spec; "
			    "give options in the file");
		json_decref(a->spec);
		if ((a->spec = read_spec_file(a->file)) == NULL)
			return EXIT_USAGE;
		if (name && json_is_object(a->spec))
			json_object_set_new(a->spec, "name", json_string(name));
		return 0;
	}
	if (name == NULL)
		return usage_error("create", "give the new VM a name");
	json_object_set_new(a->spec, "name", json_string(name));
	if (json_object_size(a->boot))
		json_object_set(a->spec, "boot", a->boot);
	/* New disks are named after the VM: web-disk0, web-disk1. */
	json_array_foreach(a->disks, i, v) {
		char vol[128];
		if (json_object_get(v, "volume"))
			continue;
		snprintf(vol, sizeof(vol), "%s-disk%zu", name, i);
		json_object_set_new(v, "volume", json_string(vol));
	}
	/* --disk-size: the image's clone comes first, as large as that. */
	if (a->disk_size) {
		char vol[128];
		if (!json_object_get(a->spec, "image"))
			return usage_error("create", "--disk-size is the size of "
			    "the disk made from --image");
		snprintf(vol, sizeof(vol), "%s-root", name);
		json_array_insert_new(a->disks, 0, json_pack("{s:s, s:O, s:I}",
		    "volume", vol, "image", json_object_get(a->spec, "image"),
		    "size", (json_int_t)a->disk_size));
	}
	if (a->ci)
		json_object_set(a->spec, "cloud_init", a->ci);
	if (json_array_size(a->disks))
		json_object_set(a->spec, "disks", a->disks);
	if (json_array_size(a->nics))
		json_object_set(a->spec, "nics", a->nics);
	return 0;
}

/* The resource and scheduling options, taken out of argv: -1 if bad. */
static int
create_resources(int *argc, char **argv, json_t *spec)
{
	json_t *res = json_object(), *sch = json_object();
	int kept = 1, rc = 0;

	for (int i = 1; i < *argc && rc == 0; i++) {
		int r = resource_option("create", *argc, argv, &i, res, sch);
		if (r < 0)
			rc = -1;
		else if (r == 0)
			argv[kept++] = argv[i];
	}
	if (rc == 0) {
		*argc = kept;
		argv[kept] = NULL;
		if (json_object_size(res))
			json_object_set(spec, "resources", res);
		if (json_object_size(sch))
			json_object_set(spec, "schedule", sch);
	}
	json_decref(res);
	json_decref(sch);
	return rc;
}

int
cmd_create(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "file", required_argument, NULL, 'f' },
		{ "image", required_argument, NULL, 'i' },
		{ "kernel", required_argument, NULL, 'k' },
		{ "initrd", required_argument, NULL, 'r' },
		{ "cmdline", required_argument, NULL, 'c' },
		{ "vcpus", required_argument, NULL, 'n' },
		{ "memory", required_argument, NULL, 'm' },
		{ "machine", required_argument, NULL, 'M' },
		{ "disk", required_argument, NULL, 'd' },
		{ "nic", required_argument, NULL, 'N' },
		{ "forward", required_argument, NULL, 'F' },
		{ "autostart", no_argument, NULL, 'a' },
		{ "disk-size", required_argument, NULL, 'S' },
		{ "ssh-key", required_argument, NULL, 'K' },
		{ "user", required_argument, NULL, 'u' },
		{ "password-file", required_argument, NULL, 'p' },
		{ "user-data", required_argument, NULL, 'D' },
		{ "firmware", required_argument, NULL, 'W' },
		{ "secure-boot", no_argument, NULL, 'B' },
		{ "cdrom", required_argument, NULL, 'C' },
		{ "boot", required_argument, NULL, 'O' },
		{ "no-agent", no_argument, NULL, 'G' },
		{ "no-freeze", no_argument, NULL, 'Z' },
		{ "vnc", no_argument, NULL, 'V' },
		{ "no-vnc", no_argument, NULL, 'X' },
		{ NULL, 0, NULL, 0 },
	};
	struct create_args a = { json_object(), json_object(), json_array(),
	    json_array(), NULL, NULL, 0 };
	const char *name = NULL;
	json_t *resp = NULL;
	int ch, rc = EXIT_USAGE;

	/* Resource and scheduling options first; getopt sees the rest. */
	if (create_resources(&argc, argv, a.spec) < 0)
		goto out;
	optind = 1;
	opterr = 0;
	while ((ch = getopt_long(argc, argv, "f:", opts, NULL)) != -1)
		if ((rc = create_option(&a, ch, optarg,
		    argv[optind - 1])) != 0)
			goto out;
	rc = EXIT_USAGE;
	if (optind < argc)
		name = argv[optind++];
	if (optind < argc) {
		rc = usage_error("create", "unexpected argument \"%s\"",
		    argv[optind]);
		goto out;
	}
	if ((rc = create_spec(&a, name)) != 0)
		goto out;
	if ((resp = api_send("POST", "/v1/vms", a.spec, 300, &rc)) == NULL)
		goto out;
	if (cli.json)
		print_json(resp);
	else
		printf("created %s\n", jstr(resp, "name"));
	rc = 0;
out:
	json_decref(resp);
	json_decref(a.spec);
	json_decref(a.boot);
	json_decref(a.disks);
	json_decref(a.nics);
	json_decref(a.ci);
	return rc;
}

static void
print_state(json_t *vm)
{
	json_t *pid = json_object_get(vm, "pid");
	json_t *q = json_object_get(vm, "queue");

	printf("%s: %s", jstr(vm, "name"), jstr(vm, "state"));
	if (q)
		printf(" (position %lld: %s)", (long long)json_integer_value(
		    json_object_get(q, "position")), jstr(q, "reason"));
	else if (pid)
		printf(" (pid %lld)", (long long)json_integer_value(pid));
	else if (*jstr(vm, "state_reason"))
		printf(" (%s)", jstr(vm, "state_reason"));
	printf("\n");
}

int
cmd_action(int argc, char **argv)
{
	const char *action = argv[0], *name = NULL;
	long long timeout = -1;
	json_t *body = NULL, *resp = NULL;
	char path[256];
	int rc;
	int nowait = 0, shutdown = strcmp(action, "shutdown") == 0;
	const char *method = NULL;

	for (int i = 1; i < argc; i++) {
		if (shutdown && strcmp(argv[i], "--timeout") == 0 &&
		    i + 1 < argc) {
			if (parse_duration_s(argv[++i], &timeout) < 0 ||
			    timeout > 86400)
				return usage_error(action, "--timeout takes a "
				    "duration such as 30s or 2m");
		} else if (shutdown && strcmp(argv[i], "--no-wait") == 0) {
			nowait = 1;
		} else if (shutdown && strcmp(argv[i], "--method") == 0 &&
		    i + 1 < argc) {
			method = argv[++i];
			if (strcmp(method, "agent") && strcmp(method, "acpi") &&
			    strcmp(method, "auto"))
				return usage_error(action, "--method takes agent, "
				    "acpi or auto");
		} else if (argv[i][0] == '-') {
			return usage_error(action, "unknown option \"%s\"",
			    argv[i]);
		} else if (name == NULL) {
			name = argv[i];
		} else
			return usage_error(action, "give one VM name");
	}
	if (name == NULL)
		return usage_error(action, "give one VM name");
	if (shutdown && (timeout >= 0 || nowait || method)) {
		body = json_object();
		if (method)
			json_object_set_new(body, "method", json_string(method));
		if (timeout >= 0)
			json_object_set_new(body, "timeout_s",
			    json_integer(timeout));
		if (nowait)
			json_object_set_new(body, "wait", json_false());
	}
	snprintf(path, sizeof(path), "/v1/vms/%s/%s", name, action);
	/* A shutdown may wait for the guest as long as its timeout. */
	resp = api_send("POST", path, body, shutdown ? (timeout >= 0 ?
	    timeout : 86400) + 60 : 300, &rc);
	json_decref(body);
	if (resp == NULL)
		return rc;
	return cli_print(resp, print_state);
}

int
cmd_delete(int argc, char **argv)
{
	json_t *resp = NULL;
	char path[256];
	int rc;

	if (argc != 2 || argv[1][0] == '-')
		return usage_error("delete", "give one VM name");
	snprintf(path, sizeof(path), "/v1/vms/%s", argv[1]);
	if ((resp = api_send("DELETE", path, NULL, 60, &rc)) == NULL)
		return rc;
	if (cli.json)
		print_json(resp);
	else
		printf("deleted %s\n", argv[1]);
	json_decref(resp);
	return 0;
}
