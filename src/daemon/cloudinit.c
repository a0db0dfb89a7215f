/*
 * cloudinit.c - the NoCloud seed of a VM: a small FAT disk labelled
 * "cidata" with meta-data (an instance-id that changes only when what the
 * seed says changes, and the VM's name as hostname), user-data (the user,
 * sudo, SSH keys, an optional password hash, the user's own cloud-config
 * merged after ours) and network-config v2 (each NIC matched by its MAC: the
 * address vmgr assigned on an isolated network, DHCP elsewhere).  Made in
 * memory at every start from the spec and handed to QEMU as a sealed,
 * read-only memfd: no file to plant a link at, nothing left half-made.
 */
#include "daemon.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <yaml.h>

#include <event2/buffer.h>

#include "../core/fat.h"
#include "../lib/log.h"
#include "../lib/util.h"

#define SEED_MAX	(4u << 20)	/* the whole seed */

/* YAML's double-quoted scalar (keys and hashes have no quotes; still). */
static void
quoted(struct evbuffer *b, const char *s)
{
	evbuffer_add(b, "\"", 1);
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			evbuffer_add(b, "\\", 1);
		evbuffer_add(b, s, 1);
	}
	evbuffer_add(b, "\"", 1);
}

const char *
cloudinit_user(const struct vm_spec *spec)
{
	const char *u = json_string_value(json_object_get(spec->cloud_init,
	    "user"));

	return u ? u : CLOUDINIT_DEFAULT_USER;
}

/* Our #cloud-config: the user, its keys and password, the hostname. */
static void
our_user_data(const struct vm_spec *spec, struct evbuffer *b)
{
	json_t *keys = json_object_get(spec->cloud_init, "ssh_authorized_keys");
	const char *hash = json_string_value(json_object_get(spec->cloud_init,
	    "password_hash"));
	json_t *k;
	size_t i;

	evbuffer_add_printf(b, "#cloud-config\nhostname: %s\n"
	    "preserve_hostname: false\n"
	    /* The name resolves in the guest (sudo asks for it). */
	    "manage_etc_hosts: localhost\n"
	    /* Host keys stay when the seed changes (a key added later). */
	    "ssh_deletekeys: false\n"
	    /*
	     * Password logins over SSH only with a password, said in a file
	     * written before sshd first starts: cloud-init's ssh_pwauth would
	     * restart sshd later in the boot, refusing whoever connects then.
	     * 60- sorts after cloud-init's 50-, so a user-data ssh_pwauth of
	     * the user's own still wins (sshd takes the first value).
	     */
	    "write_files:\n  - path: /etc/ssh/sshd_config.d/60-vmgr.conf\n"
	    "    permissions: \"0644\"\n"
	    "    content: |\n      PasswordAuthentication %s\n"
	    "users:\n  - name: %s\n"
	    "    gecos: vmgr user\n"
	    "    shell: /bin/bash\n"
	    "    groups: [adm, sudo]\n"
	    "    sudo: \"ALL=(ALL) NOPASSWD:ALL\"\n"
	    "    lock_passwd: %s\n", spec->name, hash ? "yes" : "no",
	    cloudinit_user(spec), hash ? "false" : "true");
	if (hash) {
		evbuffer_add_printf(b, "    passwd: ");
		quoted(b, hash);
		evbuffer_add_printf(b, "\n");
	}
	if (json_array_size(keys)) {
		evbuffer_add_printf(b, "    ssh_authorized_keys:\n");
		json_array_foreach(keys, i, k) {
			evbuffer_add_printf(b, "      - ");
			quoted(b, json_string_value(k));
			evbuffer_add_printf(b, "\n");
		}
	}
}

/*
 * The user-data: ours alone, or with the user's own after it as a MIME
 * multipart, merged so that their lists add to ours (their users, keys,
 * packages, runcmd) and their values win.
 */
static void
user_data(const struct vm_spec *spec, struct evbuffer *b)
{
	const char *theirs = json_string_value(json_object_get(spec->cloud_init,
	    "user_data"));
	static const char boundary[] = "==vmgr-seed-boundary==";

	if (theirs == NULL) {
		our_user_data(spec, b);
		return;
	}
	evbuffer_add_printf(b, "Content-Type: multipart/mixed; boundary=\"%s\"\n"
	    "MIME-Version: 1.0\n\n--%s\n"
	    "Content-Type: text/cloud-config; charset=\"utf-8\"\n"
	    "Content-Disposition: attachment; filename=\"vmgr.cfg\"\n\n",
	    boundary, boundary);
	our_user_data(spec, b);
	if (strncmp(theirs, "#cloud-config", 13) == 0)
		evbuffer_add_printf(b, "\n--%s\nContent-Type: text/cloud-config; "
		    "charset=\"utf-8\"\nMerge-Type: list(append)+dict(no_replace,"
		    "recurse_list)+str()\nContent-Disposition: attachment; "
		    "filename=\"user.cfg\"\n\n", boundary);
	else	/* a multipart of their own: a part whose headers are theirs */
		evbuffer_add_printf(b, "\n--%s\n", boundary);
	evbuffer_add(b, theirs, strlen(theirs));
	evbuffer_add_printf(b, "\n--%s--\n", boundary);
}

static void
network_config(const struct vm_spec *spec, struct evbuffer *b)
{
	char cidr[64], mac[18];

	evbuffer_add_printf(b, "version: 2\nethernets:\n");
	for (int i = 0; i < spec->nnics; i++) {
		snprintf(mac, sizeof(mac), "%s", spec->nics[i].mac);
		for (char *p = mac; *p; p++)
			if (*p >= 'A' && *p <= 'F')
				*p = (char)(*p - 'A' + 'a');
		evbuffer_add_printf(b, "  eth%d:\n    match:\n      macaddress: "
		    "\"%s\"\n    set-name: eth%d\n", i, mac, i);
		if (net_nic_static(spec, i, cidr, sizeof(cidr)))
			evbuffer_add_printf(b, "    addresses: [\"%s\"]\n", cidr);
		if (net_nic_mtu(spec, i))
			evbuffer_add_printf(b, "    mtu: %d\n", net_nic_mtu(spec,
			    i));
		else
			evbuffer_add_printf(b, "    dhcp4: true\n");
	}
}

static char *
drain(struct evbuffer *b, size_t *len)
{
	char *s;

	*len = evbuffer_get_length(b);
	if ((s = malloc(*len + 1)) == NULL)
		return NULL;
	evbuffer_remove(b, s, *len);
	s[*len] = '\0';
	return s;
}

int
cloudinit_seed(const struct vm_spec *spec, uint8_t **img, size_t *len,
    char *err, size_t errlen)
{
	struct evbuffer *b = evbuffer_new();
	char *ud = NULL, *nc = NULL, md[256];
	size_t udlen = 0, nclen = 0;
	int rc = -1;

	if (b == NULL)
		return snprintf(err, errlen, "out of memory"), -1;
	user_data(spec, b);
	ud = drain(b, &udlen);
	network_config(spec, b);
	nc = drain(b, &nclen);
	evbuffer_free(b);
	if (ud == NULL || nc == NULL) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	/* An instance-id that follows what the seed says. */
	uint64_t h = fnv1a64(FNV1A64_INIT, spec->name, strlen(spec->name));
	h = fnv1a64(fnv1a64(h, ud, udlen), nc, nclen);
	snprintf(md, sizeof(md), "instance-id: iid-%016llx\nlocal-hostname: "
	    "%s\n", (unsigned long long)h, spec->name);
	struct fat_file files[] = {
		{ "meta-data", md, strlen(md) },
		{ "user-data", ud, udlen },
		{ "network-config", nc, nclen },
	};
	if (udlen + nclen + strlen(md) > SEED_MAX) {
		snprintf(err, errlen, "the cloud-init seed would be %zu KiB; at "
		    "most %u KiB", (udlen + nclen) >> 10, SEED_MAX >> 10);
		goto out;
	}
	if (fat_image(files, 3, "cidata", img, len) < 0) {
		snprintf(err, errlen, "cannot make the seed's file system");
		goto out;
	}
	rc = 0;
out:
	free(ud);
	free(nc);
	return rc;
}

int
cloudinit_check(const struct vm_spec *spec, char *err, size_t errlen)
{
	const char *ud = json_string_value(json_object_get(spec->cloud_init,
	    "user_data"));
	uint8_t *img;
	size_t len;

	if (ud && strncmp(ud, "#cloud-config", 13) == 0) {
		yaml_parser_t p;
		yaml_event_t ev;
		int done = 0, ok = 1, top = -1;
		if (!yaml_parser_initialize(&p))
			return snprintf(err, errlen, "out of memory"), -1;
		yaml_parser_set_input_string(&p, (const unsigned char *)ud,
		    strlen(ud));
		while (!done && ok) {
			if (!yaml_parser_parse(&p, &ev)) {
				snprintf(err, errlen, "user-data is not valid "
				    "YAML: %s at line %zu, column %zu",
				    p.problem ? p.problem : "an error",
				    p.problem_mark.line + 1,
				    p.problem_mark.column + 1);
				ok = 0;
				break;
			}
			/* The document must be a mapping (key: value). */
			if (top < 0 && (ev.type == YAML_MAPPING_START_EVENT ||
			    ev.type == YAML_SEQUENCE_START_EVENT ||
			    ev.type == YAML_SCALAR_EVENT))
				top = ev.type;
			done = ev.type == YAML_STREAM_END_EVENT;
			yaml_event_delete(&ev);
		}
		yaml_parser_delete(&p);
		if (!ok)
			return -1;
		if (top >= 0 && top != YAML_MAPPING_START_EVENT)
			return snprintf(err, errlen, "user-data must be a YAML "
			    "mapping (key: value lines) after #cloud-config"), -1;
	}
	if (cloudinit_seed(spec, &img, &len, err, errlen) < 0)
		return -1;
	free(img);
	return 0;
}

int
cloudinit_fd(const struct vm_spec *spec, char *err, size_t errlen)
{
	uint8_t *img;
	size_t len;
	int fd, ro;

	if (cloudinit_seed(spec, &img, &len, err, errlen) < 0)
		return -1;
	fd = memfd_create("cidata", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0 || write(fd, img, len) != (ssize_t)len ||
	    fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK |
	    F_SEAL_SEAL) < 0) {
		snprintf(err, errlen, "the cloud-init seed: %s", strerror(errno));
		free(img);
		if (fd >= 0)
			close(fd);
		return -1;
	}
	free(img);
	/* QEMU opens its fd set read-only: the descriptor must be too. */
	ro = fd_reopen_ro(fd);
	close(fd);
	if (ro < 0)
		snprintf(err, errlen, "the cloud-init seed: %s", strerror(errno));
	return ro;
}
