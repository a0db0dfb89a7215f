/*
 * spec.c - parse and validate a VM spec (DESIGN.md, "VM spec").  Called by
 * the daemon's create handler and by the CLI's unit tests.  Errors carry the
 * HTTP status the API answers with: 422 for valid JSON with a wrong shape or
 * value (including unknown fields).
 */
#include "spec.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static int
fail(struct spec_error *err, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int
fail(struct spec_error *err, const char *code, const char *fmt, ...)
{
	va_list ap;

	err->status = 422;
	snprintf(err->code, sizeof(err->code), "%s", code);
	va_start(ap, fmt);
	vsnprintf(err->message, sizeof(err->message), fmt, ap);
	va_end(ap);
	return -1;
}

int
spec_name_valid(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > SPEC_NAME_MAX)
		return 0;
	if (!islower((unsigned char)s[0]) && !isdigit((unsigned char)s[0]))
		return 0;
	for (size_t i = 1; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (!islower(c) && !isdigit(c) && c != '_' && c != '.' &&
		    c != '-')
			return 0;
	}
	return 1;
}

int
spec_mac_valid(const char *s)
{
	if (strlen(s) != 17)
		return 0;
	for (int i = 0; i < 17; i++) {
		if (i % 3 == 2) {
			if (s[i] != ':')
				return 0;
		} else if (!isxdigit((unsigned char)s[i]))
			return 0;
	}
	/* The low bit of the first octet marks multicast. */
	return (strtol((char[]){ s[0], s[1], 0 }, NULL, 16) & 1) == 0;
}

/*
 * Refuse any key of obj not in allowed[], naming it with its place
 * ("boot.kernal") so a typo is easy to find.
 */
static int
check_keys(const json_t *obj, const char *where, const char *const *allowed,
    struct spec_error *err)
{
	const char *key;
	json_t *v;

	json_object_foreach((json_t *)obj, key, v) {
		int ok = 0;
		for (const char *const *a = allowed; *a; a++)
			if (strcmp(*a, key) == 0)
				ok = 1;
		if (!ok)
			return fail(err, "unknown_field",
			    "unknown field \"%s%s%s\"", where, *where ? "." : "",
			    key);
	}
	return 0;
}

static int
get_int(const json_t *obj, const char *key, const char *where, long long lo,
    long long hi, long long *out, struct spec_error *err)
{
	json_t *v = json_object_get(obj, key);
	double d;

	if (v == NULL)
		return 1;
	if (json_is_integer(v))
		d = (double)json_integer_value(v);
	else if (json_is_real(v) && floor(json_real_value(v)) ==
	    json_real_value(v))
		d = json_real_value(v);
	else
		return fail(err, "invalid_value", "%s%s%s must be an integer",
		    where, *where ? "." : "", key);
	if (d < (double)lo || d > (double)hi)
		return fail(err, "out_of_range",
		    "%s%s%s must be between %lld and %lld", where,
		    *where ? "." : "", key, lo, hi);
	*out = (long long)d;
	return 0;
}

static int
get_str(const json_t *obj, const char *key, const char *where, size_t max,
    const char **out, struct spec_error *err)
{
	json_t *v = json_object_get(obj, key);

	if (v == NULL)
		return 1;
	if (!json_is_string(v))
		return fail(err, "invalid_value", "%s%s%s must be a string",
		    where, *where ? "." : "", key);
	if (json_string_length(v) > max)
		return fail(err, "out_of_range", "%s%s%s is longer than %zu",
		    where, *where ? "." : "", key, max);
	if (strlen(json_string_value(v)) != json_string_length(v))
		return fail(err, "invalid_value", "%s%s%s contains a NUL byte",
		    where, *where ? "." : "", key);
	*out = json_string_value(v);
	return 0;
}

static int
get_bool(const json_t *obj, const char *key, const char *where, bool *out,
    struct spec_error *err)
{
	json_t *v = json_object_get(obj, key);

	if (v == NULL)
		return 1;
	if (!json_is_boolean(v))
		return fail(err, "invalid_value", "%s%s%s must be true or false",
		    where, *where ? "." : "", key);
	*out = json_is_true(v);
	return 0;
}

static int
get_path(const json_t *obj, const char *key, const char *where, char **out,
    struct spec_error *err)
{
	const char *s;
	int rc = get_str(obj, key, where, SPEC_PATH_MAX, &s, err);

	if (rc != 0)
		return rc;
	if (s[0] != '/')
		return fail(err, "invalid_value", "%s.%s must be an absolute path",
		    where, key);
	if (strchr(s, '\n'))
		return fail(err, "invalid_value", "%s.%s contains a newline",
		    where, key);
	*out = strdup(s);
	return *out ? 0 : fail(err, "no_memory", "out of memory");
}

static int
parse_boot(const json_t *boot, struct vm_spec *spec, struct spec_error *err)
{
	static const char *const keys[] = { "kernel", "initrd", "cmdline",
	    "order", NULL };
	const char *s;
	json_t *order, *d;
	size_t i;
	int rc;

	if (!json_is_object(boot))
		return fail(err, "invalid_value", "boot must be an object");
	if (check_keys(boot, "boot", keys, err))
		return -1;
	if ((order = json_object_get(boot, "order")) != NULL) {
		if (!json_is_array(order) || json_array_size(order) == 0 ||
		    json_array_size(order) > SPEC_MAX_BOOT)
			return fail(err, "invalid_value", "boot.order must be "
			    "an array of \"disk\" and \"cdrom\"");
		json_array_foreach(order, i, d) {
			const char *dev = json_string_value(d);
			enum spec_boot_dev b;
			if (dev && strcmp(dev, "disk") == 0)
				b = SPEC_BOOT_DISK;
			else if (dev && strcmp(dev, "cdrom") == 0)
				b = SPEC_BOOT_CDROM;
			else
				return fail(err, "invalid_value", "boot.order[%zu] "
				    "must be \"disk\" or \"cdrom\"", i);
			for (int k = 0; k < spec->nboot; k++)
				if (spec->boot_order[k] == b)
					return fail(err, "invalid_value",
					    "boot.order names %s twice", dev);
			spec->boot_order[spec->nboot++] = b;
		}
	}
	if (get_path(boot, "kernel", "boot", &spec->kernel, err) < 0 ||
	    get_path(boot, "initrd", "boot", &spec->initrd, err) < 0)
		return -1;
	if ((rc = get_str(boot, "cmdline", "boot", SPEC_CMDLINE_MAX, &s,
	    err)) < 0)
		return -1;
	if (rc == 0) {
		for (const char *p = s; *p; p++)
			if ((unsigned char)*p < 0x20)
				return fail(err, "invalid_value",
				    "boot.cmdline contains a control character");
		if ((spec->cmdline = strdup(s)) == NULL)
			return fail(err, "no_memory", "out of memory");
	}
	if (spec->initrd && !spec->kernel)
		return fail(err, "invalid_value",
		    "boot.initrd needs boot.kernel");
	return 0;
}

int
spec_size_parse(const char *s, uint64_t *bytes)
{
	static const struct { const char *suffix; int shift; } units[] = {
		{ "", 0 }, { "b", 0 }, { "k", 10 }, { "kb", 10 }, { "kib", 10 },
		{ "m", 20 }, { "mb", 20 }, { "mib", 20 }, { "g", 30 },
		{ "gb", 30 }, { "gib", 30 }, { "t", 40 }, { "tb", 40 },
		{ "tib", 40 },
	};
	unsigned long long whole = 0, frac = 0, fdiv = 1;
	const char *p = s;

	if (s == NULL || !isdigit((unsigned char)*p))
		return -1;
	for (; isdigit((unsigned char)*p); p++) {
		if (whole > (1ULL << 45))
			return -1;
		whole = whole * 10 + (unsigned)(*p - '0');
	}
	if (*p == '.') {
		if (!isdigit((unsigned char)*++p))
			return -1;
		for (; isdigit((unsigned char)*p); p++)
			if (fdiv < 1000000000ULL) {
				frac = frac * 10 + (unsigned)(*p - '0');
				fdiv *= 10;
			}
	}
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strcasecmp(p, units[i].suffix) != 0)
			continue;
		if (units[i].shift == 0 && fdiv > 1)
			return -1;	/* half a byte */
		if (whole > SPEC_DISK_MAX_BYTES >> units[i].shift)
			return -1;
		uint64_t b = ((uint64_t)whole << units[i].shift) +
		    (uint64_t)((frac << units[i].shift) / fdiv);
		b = (b + 511) & ~(uint64_t)511;
		if (b == 0 || b > SPEC_DISK_MAX_BYTES)
			return -1;
		*bytes = b;
		return 0;
	}
	return -1;
}

static int
parse_disks(const json_t *arr, struct vm_spec *spec, struct spec_error *err)
{
	static const char *const keys[] = { "volume", "size_gib", "size",
	    "image", NULL };
	size_t i;
	json_t *d;

	if (!json_is_array(arr))
		return fail(err, "invalid_value", "disks must be an array");
	if (json_array_size(arr) > SPEC_MAX_DISKS)
		return fail(err, "out_of_range", "at most %d disks",
		    SPEC_MAX_DISKS);
	json_array_foreach(arr, i, d) {
		struct spec_disk *disk = &spec->disks[i];
		char where[32], text[32];
		const char *vol, *vol2;
		long long gib;
		uint64_t size = 0;
		json_t *js;
		int rc;

		snprintf(where, sizeof(where), "disks[%zu]", i);
		if (!json_is_object(d))
			return fail(err, "invalid_value", "%s must be an object",
			    where);
		if (check_keys(d, where, keys, err))
			return -1;
		if ((rc = get_str(d, "volume", where, SPEC_NAME_MAX, &vol,
		    err)) < 0)
			return -1;
		if (rc == 1)
			return fail(err, "missing_field", "%s.volume is required",
			    where);
		if (!spec_name_valid(vol))
			return fail(err, "invalid_name",
			    "%s.volume \"%s\" is not a valid name", where, vol);
		for (size_t j = 0; j < i; j++)
			if (strcmp(spec->disks[j].volume, vol) == 0)
				return fail(err, "invalid_value",
				    "volume \"%s\" is attached twice", vol);
		if ((rc = get_int(d, "size_gib", where, 1, SPEC_DISK_MAX,
		    &gib, err)) < 0)
			return -1;
		if (rc == 0)
			size = (uint64_t)gib << 30;
		/* size: bytes, or a string such as "512M" or "1.5G". */
		if ((js = json_object_get(d, "size")) != NULL) {
			uint64_t b;
			if (json_is_integer(js) && json_integer_value(js) > 0)
				snprintf(text, sizeof(text), "%lld", (long long)
				    json_integer_value(js));
			else if (json_is_real(js) && json_real_value(js) >= 1 &&
			    json_real_value(js) < 1e15 &&
			    floor(json_real_value(js)) == json_real_value(js))
				snprintf(text, sizeof(text), "%.0f",
				    json_real_value(js));
			else if (json_is_string(js) && json_string_length(js) <
			    sizeof(text))
				snprintf(text, sizeof(text), "%s",
				    json_string_value(js));
			else
				text[0] = '\0';
			if (spec_size_parse(text, &b) < 0)
				return fail(err, "invalid_value", "%s.size must be "
				    "a size in bytes, or with a suffix such as 512M "
				    "or 2G, above 0 and at most %d GiB", where,
				    SPEC_DISK_MAX);
			if (size && size != b)
				return fail(err, "invalid_value", "%s: size and "
				    "size_gib disagree", where);
			size = b;
		}
		/* image: a new linked clone of it, as large as it or larger. */
		if ((rc = get_str(d, "image", where, SPEC_NAME_MAX, &vol2,
		    err)) < 0)
			return -1;
		if (rc == 0) {
			if (!spec_name_valid(vol2))
				return fail(err, "invalid_name", "%s.image \"%s\" "
				    "is not a valid image name", where, vol2);
			snprintf(disk->image, sizeof(disk->image), "%s", vol2);
		}
		/* Without a size or image, the volume exists and is attached. */
		snprintf(disk->volume, sizeof(disk->volume), "%s", vol);
		disk->size = size;
		spec->ndisks++;
	}
	return 0;
}

int
spec_forward_parse(const char *s, struct spec_forward *f)
{
	char buf[64], *part[4], *save = NULL;
	int n = 0;
	struct in_addr a;

	if (strlen(s) >= sizeof(buf))
		return -1;
	strcpy(buf, s);
	for (char *t = strtok_r(buf, ":", &save); t; t = strtok_r(NULL, ":",
	    &save)) {
		if (n == 4)
			return -1;
		part[n++] = t;
	}
	if (n != 3 && n != 4)
		return -1;
	memset(f, 0, sizeof(*f));
	if (strcmp(part[0], "tcp") != 0 && strcmp(part[0], "udp") != 0)
		return -1;
	snprintf(f->proto, sizeof(f->proto), "%s", part[0]);
	snprintf(f->host_addr, sizeof(f->host_addr), "%s", n == 4 ? part[1] :
	    "127.0.0.1");
	if (inet_pton(AF_INET, f->host_addr, &a) != 1)
		return -1;
	for (int k = n - 2; k < n; k++) {
		char *end;
		long v = strtol(part[k], &end, 10);
		if (*end || v < 1 || v > 65535)
			return -1;
		*(k == n - 2 ? &f->host_port : &f->guest_port) = (int)v;
	}
	return 0;
}

int
spec_cidr_parse(const char *s, unsigned *net, int *prefix)
{
	char buf[32], *slash, *end;
	struct in_addr a;
	long p;

	if (strlen(s) >= sizeof(buf))
		return -1;
	strcpy(buf, s);
	if ((slash = strchr(buf, '/')) == NULL)
		return -1;
	*slash = '\0';
	p = strtol(slash + 1, &end, 10);
	if (*end || slash[1] == '\0' || p < 8 || p > 30 ||
	    inet_pton(AF_INET, buf, &a) != 1)
		return -1;
	unsigned n = ntohl(a.s_addr), mask = ~0u << (32 - p);
	if (n & ~mask)
		return -1;
	*net = n;
	*prefix = (int)p;
	return 0;
}

int
spec_forward_conflict(const struct spec_forward *a,
    const struct spec_forward *b)
{
	if (strcmp(a->proto, b->proto) != 0 || a->host_port != b->host_port)
		return 0;
	return strcmp(a->host_addr, b->host_addr) == 0 ||
	    strcmp(a->host_addr, "0.0.0.0") == 0 ||
	    strcmp(b->host_addr, "0.0.0.0") == 0;
}

static int
parse_forwards(const json_t *arr, const char *where, struct spec_nic *nic,
    struct spec_error *err)
{
	static const char *const keys[] = { "proto", "host_addr", "host_port",
	    "guest_port", NULL };
	size_t i;
	json_t *f;

	if (!json_is_array(arr))
		return fail(err, "invalid_value", "%s.forwards must be an array",
		    where);
	if (json_array_size(arr) > SPEC_MAX_FORWARDS)
		return fail(err, "out_of_range", "at most %d forwards per NIC",
		    SPEC_MAX_FORWARDS);
	json_array_foreach(arr, i, f) {
		struct spec_forward *fw = &nic->forwards[i];
		const char *proto = "tcp", *addr = "127.0.0.1";
		long long hp, gp;
		char w[64], text[64];
		int rc1, rc2;

		snprintf(w, sizeof(w), "%s.forwards[%zu]", where, i);
		if (!json_is_object(f))
			return fail(err, "invalid_value", "%s must be an object",
			    w);
		if (check_keys(f, w, keys, err) ||
		    get_str(f, "proto", w, 3, &proto, err) < 0 ||
		    get_str(f, "host_addr", w, 15, &addr, err) < 0 ||
		    (rc1 = get_int(f, "host_port", w, 1, 65535, &hp, err)) < 0 ||
		    (rc2 = get_int(f, "guest_port", w, 1, 65535, &gp, err)) < 0)
			return -1;
		if (rc1 || rc2)
			return fail(err, "missing_field", "%s needs host_port and "
			    "guest_port", w);
		snprintf(text, sizeof(text), "%s:%s:%lld:%lld", proto, addr, hp,
		    gp);
		if (spec_forward_parse(text, fw) < 0)
			return fail(err, "invalid_value", "%s: proto must be tcp "
			    "or udp and host_addr an IPv4 address", w);
		for (size_t j = 0; j < i; j++)
			if (spec_forward_conflict(&nic->forwards[j], fw))
				return fail(err, "invalid_value", "%s: host port "
				    "%s/%d is forwarded twice", w, fw->proto,
				    fw->host_port);
		nic->nforwards++;
	}
	return 0;
}

static int
parse_nics(const json_t *arr, struct vm_spec *spec, struct spec_error *err)
{
	static const char *const keys[] = { "network", "mac", "ip",
	    "forwards", "mac_filter", NULL };
	size_t i;
	json_t *n;

	if (!json_is_array(arr))
		return fail(err, "invalid_value", "nics must be an array");
	if (json_array_size(arr) > SPEC_MAX_NICS)
		return fail(err, "out_of_range", "at most %d nics",
		    SPEC_MAX_NICS);
	json_array_foreach(arr, i, n) {
		struct spec_nic *nic = &spec->nics[i];
		const char *net = "nat", *mac = "", *ip = "";
		char where[32];

		snprintf(where, sizeof(where), "nics[%zu]", i);
		if (!json_is_object(n))
			return fail(err, "invalid_value", "%s must be an object",
			    where);
		if (check_keys(n, where, keys, err))
			return -1;
		if (get_str(n, "network", where, SPEC_NAME_MAX, &net, err) < 0 ||
		    get_str(n, "mac", where, 17, &mac, err) < 0 ||
		    get_str(n, "ip", where, 15, &ip, err) < 0)
			return -1;
		/* "default" is DESIGN.md's name for the user-mode NAT. */
		if (strcmp(net, "default") == 0 || strcmp(net, "user") == 0)
			net = "nat";
		/* Whether a named network exists is the daemon's to say. */
		if (!spec_name_valid(net))
			return fail(err, "invalid_name", "%s.network \"%s\" is "
			    "not a valid network name", where, net);
		struct in_addr ia;
		if (*ip && (strcmp(net, "nat") == 0 || inet_pton(AF_INET, ip,
		    &ia) != 1))
			return fail(err, "invalid_value", "%s.ip \"%s\": an IPv4 "
			    "address, on a vmgr network only", where, ip);
		snprintf(nic->ip, sizeof(nic->ip), "%s", ip);
		if (*mac && !spec_mac_valid(mac))
			return fail(err, "invalid_value",
			    "%s.mac \"%s\" is not a unicast MAC address", where,
			    mac);
		snprintf(nic->network, sizeof(nic->network), "%s", net);
		snprintf(nic->mac, sizeof(nic->mac), "%s", mac);
		nic->mac_filter = true;
		if (get_bool(n, "mac_filter", where, &nic->mac_filter, err) < 0)
			return -1;
		json_t *fw = json_object_get(n, "forwards");
		if (fw && strcmp(net, "nat") != 0)
			return fail(err, "invalid_value", "%s: forwards need the "
			    "nat network", where);
		if (fw && parse_forwards(fw, where, nic, err) < 0)
			return -1;
		for (size_t j = 0; j < i; j++)
			for (int a = 0; a < spec->nics[j].nforwards; a++)
				for (int b = 0; b < nic->nforwards; b++)
					if (spec_forward_conflict(
					    &spec->nics[j].forwards[a],
					    &nic->forwards[b]))
						return fail(err, "invalid_value",
						    "host port %d is forwarded "
						    "twice", nic->forwards[b].
						    host_port);
		spec->nnics++;
	}
	return 0;
}

static int
parse_resources(const json_t *r, struct vm_spec *spec, struct spec_error *err)
{
	static const char *const keys[] = { "policy", "priority", "weight",
	    "min_memory_mib", NULL };
	const char *policy;
	long long v;
	json_t *w;
	int rc;

	if (!json_is_object(r))
		return fail(err, "invalid_value", "resources must be an object");
	if (check_keys(r, "resources", keys, err))
		return -1;
	if ((rc = get_str(r, "policy", "resources", 8, &policy, err)) < 0)
		return -1;
	if (rc == 0) {
		if (strcmp(policy, "fixed") && strcmp(policy, "dynamic") &&
		    strcmp(policy, "hybrid"))
			return fail(err, "invalid_value", "resources.policy must "
			    "be fixed, dynamic or hybrid");
		snprintf(spec->resources.policy,
		    sizeof(spec->resources.policy), "%s", policy);
	}
	if ((rc = get_int(r, "priority", "resources", 1, 10, &v, err)) < 0)
		return -1;
	if (rc == 0)
		spec->resources.priority = (int)v;
	if ((w = json_object_get(r, "weight")) != NULL) {
		if (!json_is_number(w) || !(json_number_value(w) > 0) ||
		    json_number_value(w) > 1000)
			return fail(err, "out_of_range", "resources.weight must be "
			    "a number above 0 and at most 1000");
		spec->resources.weight = json_number_value(w);
	}
	if ((rc = get_int(r, "min_memory_mib", "resources", SPEC_MEM_MIN,
	    SPEC_MEM_MAX, &v, err)) < 0)
		return -1;
	if (rc == 0)
		spec->resources.min_memory_mib = (int)v;
	return 0;
}

static int
parse_schedule(const json_t *s, struct vm_spec *spec, struct spec_error *err)
{
	static const char *const keys[] = { "expected_runtime_s",
	    "preemptible", NULL };
	long long v;
	int rc;

	if (!json_is_object(s))
		return fail(err, "invalid_value", "schedule must be an object");
	if (check_keys(s, "schedule", keys, err))
		return -1;
	if ((rc = get_int(s, "expected_runtime_s", "schedule", 1,
	    10LL * 365 * 86400, &v, err)) < 0)
		return -1;
	if (rc == 0)
		spec->schedule.expected_runtime_s = v;
	if (get_bool(s, "preemptible", "schedule", &spec->schedule.preemptible,
	    err) < 0)
		return -1;
	return 0;
}

static int
parse_agent(const json_t *a, struct vm_spec *spec, struct spec_error *err)
{
	static const char *const keys[] = { "enabled", "freeze", NULL };

	if (!json_is_object(a))
		return fail(err, "invalid_value", "agent must be an object");
	if (check_keys(a, "agent", keys, err))
		return -1;
	if (get_bool(a, "enabled", "agent", &spec->agent.enabled, err) < 0 ||
	    get_bool(a, "freeze", "agent", &spec->agent.freeze, err) < 0)
		return -1;
	return 0;
}

static int
parse_firmware(const json_t *root, struct vm_spec *spec,
    struct spec_error *err)
{
	const char *s;
	int rc;

	if ((rc = get_str(root, "firmware", "", 7, &s, err)) < 0)
		return -1;
	if (rc == 0) {
		if (strcmp(s, "bios") != 0 && strcmp(s, "uefi") != 0)
			return fail(err, "invalid_value", "firmware must be "
			    "bios or uefi");
		snprintf(spec->firmware, sizeof(spec->firmware), "%s", s);
	}
	if (get_bool(root, "secure_boot", "", &spec->secure_boot, err) < 0)
		return -1;
	if (spec->secure_boot && !spec->firmware[0])
		snprintf(spec->firmware, sizeof(spec->firmware), "uefi");
	if (spec->secure_boot && strcmp(spec->firmware, "uefi") != 0)
		return fail(err, "invalid_value", "secure_boot needs firmware "
		    "uefi");
	if (spec->secure_boot && strcmp(spec->machine, "q35") != 0)
		return fail(err, "invalid_value", "secure_boot needs machine "
		    "q35 (its SMM)");
	return 0;
}

int
spec_user_valid(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > SPEC_USER_MAX || (!islower((unsigned char)s[0]) &&
	    s[0] != '_'))
		return 0;
	for (size_t i = 1; i < n; i++)
		if (!islower((unsigned char)s[i]) && !isdigit((unsigned char)
		    s[i]) && s[i] != '_' && s[i] != '-')
			return 0;
	return 1;
}

int
spec_password_hash_valid(const char *s)
{
	static const char *const ids[] = { "$6$", "$5$", "$y$", "$gy$",
	    "$2b$", "$2y$", NULL };
	size_t n = strlen(s);
	int known = 0;

	for (const char *const *id = ids; *id; id++)
		if (strncmp(s, *id, strlen(*id)) == 0)
			known = 1;
	if (!known || n < 8 || n > 512)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && !strchr("$./=-_", s[i]))
			return 0;
	return 1;
}

/* Base64 (standard alphabet, padded) into out; its length, or -1. */
static long
unbase64(const char *s, size_t n, unsigned char *out, size_t max)
{
	static const char al[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	unsigned long acc = 0;
	size_t o = 0, pad = 0;

	if (n == 0 || n % 4)
		return -1;
	for (size_t i = 0; i < n; i++) {
		const char *p;
		if (s[i] == '=' && i >= n - 2) {
			pad++;
			acc <<= 6;
		} else if (pad || s[i] == '\0' ||
		    (p = strchr(al, s[i])) == NULL)
			return -1;
		else
			acc = acc << 6 | (unsigned long)(p - al);
		if (i % 4 == 3) {
			if (o + 3 > max)
				return -1;
			out[o++] = acc >> 16;
			out[o++] = acc >> 8;
			out[o++] = acc;
			acc = 0;
		}
	}
	return (long)(o - pad);
}

int
spec_ssh_key_valid(const char *s)
{
	static const char *const types[] = { "ssh-ed25519", "ssh-rsa",
	    "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384",
	    "ecdsa-sha2-nistp521", "sk-ssh-ed25519@openssh.com",
	    "sk-ecdsa-sha2-nistp256@openssh.com", NULL };
	static unsigned char blob[SPEC_KEY_MAX];
	const char *sp, *end;
	size_t tlen;
	long n;

	if (strlen(s) > SPEC_KEY_MAX || strchr(s, '\n') || strchr(s, '\r'))
		return 0;
	for (const char *p = s; *p; p++)
		if ((unsigned char)*p < 0x20 && *p != '\t')
			return 0;
	if ((sp = strchr(s, ' ')) == NULL)
		return 0;
	tlen = (size_t)(sp - s);
	int known = 0;
	for (const char *const *t = types; *t; t++)
		if (strlen(*t) == tlen && strncmp(s, *t, tlen) == 0)
			known = 1;
	if (!known)
		return 0;
	end = sp + 1 + strcspn(sp + 1, " ");
	if ((n = unbase64(sp + 1, (size_t)(end - sp - 1), blob,
	    sizeof(blob))) < 4 + (long)tlen)
		return 0;
	/* The blob starts with the type again: a length, then the name. */
	uint32_t len = (uint32_t)blob[0] << 24 | (uint32_t)blob[1] << 16 |
	    (uint32_t)blob[2] << 8 | blob[3];
	return len == tlen && memcmp(blob + 4, s, tlen) == 0 &&
	    (long)tlen + 4 < n;
}

static int
parse_cloud_init(json_t *ci, struct vm_spec *spec, struct spec_error *err)
{
	static const char *const keys[] = { "user", "ssh_authorized_keys",
	    "password_hash", "user_data", NULL };
	const char *s;
	json_t *arr, *k;
	size_t i;
	int rc;

	if (!json_is_object(ci))
		return fail(err, "invalid_value", "cloud_init must be an object");
	if (check_keys(ci, "cloud_init", keys, err))
		return -1;
	if ((rc = get_str(ci, "user", "cloud_init", SPEC_USER_MAX, &s,
	    err)) < 0)
		return -1;
	if (rc == 0 && !spec_user_valid(s))
		return fail(err, "invalid_name", "cloud_init.user \"%s\" is not "
		    "a login name (a-z 0-9 _ -, starting with a letter or _, "
		    "at most %d)", s, SPEC_USER_MAX);
	if ((arr = json_object_get(ci, "ssh_authorized_keys")) != NULL) {
		if (!json_is_array(arr) || json_array_size(arr) > SPEC_MAX_KEYS)
			return fail(err, "invalid_value", "cloud_init.ssh_"
			    "authorized_keys must be an array of at most %d "
			    "public keys", SPEC_MAX_KEYS);
		json_array_foreach(arr, i, k)
			if (!json_is_string(k) ||
			    !spec_ssh_key_valid(json_string_value(k)))
				return fail(err, "invalid_value", "cloud_init."
				    "ssh_authorized_keys[%zu] is not an SSH "
				    "public key (\"ssh-ed25519 AAAA... comment\"; "
				    "give the .pub file, never the private key)",
				    i);
	}
	if ((rc = get_str(ci, "password_hash", "cloud_init", 512, &s,
	    err)) < 0)
		return -1;
	if (rc == 0 && !spec_password_hash_valid(s))
		return fail(err, "invalid_value", "cloud_init.password_hash "
		    "must be a crypt(3) hash such as \"$6$...\" (mkpasswd -m "
		    "sha-512), never the password itself");
	if ((rc = get_str(ci, "user_data", "cloud_init", SPEC_USER_DATA_MAX,
	    &s, err)) < 0)
		return -1;
	if (rc == 0 && strncmp(s, "#cloud-config", 13) != 0 &&
	    strncasecmp(s, "Content-Type: multipart/", 24) != 0 &&
	    strncasecmp(s, "MIME-Version:", 13) != 0)
		return fail(err, "invalid_value", "cloud_init.user_data must "
		    "be #cloud-config YAML (its first line) or a MIME multipart");
	spec->cloud_init = json_incref(ci);
	return 0;
}

int
spec_from_json(const json_t *root, struct vm_spec *spec,
    struct spec_error *err)
{
	static const char *const keys[] = { "name", "vcpus", "memory_mib",
	    "machine", "image", "boot", "disks", "nics", "resources",
	    "schedule", "autostart", "firmware", "secure_boot", "cdrom",
	    "cloud_init", "agent", "vnc", NULL };
	const char *s;
	long long v;
	json_t *sub;
	int rc;

	memset(spec, 0, sizeof(*spec));
	memset(err, 0, sizeof(*err));
	spec->vcpus = 1;
	spec->memory_mib = 128;
	snprintf(spec->machine, sizeof(spec->machine), "q35");
	snprintf(spec->resources.policy, sizeof(spec->resources.policy),
	    "fixed");
	spec->resources.priority = 5;
	spec->resources.weight = 1.0;
	spec->agent.enabled = spec->agent.freeze = true;

	if (!json_is_object(root))
		return fail(err, "invalid_value", "the spec must be a JSON "
		    "object");
	if (check_keys(root, "", keys, err))
		return -1;

	if ((rc = get_str(root, "name", "", 255, &s, err)) < 0)
		return -1;
	if (rc == 1)
		return fail(err, "missing_field", "name is required");
	if (!spec_name_valid(s))
		return fail(err, "invalid_name", "name \"%.64s\" is not valid: "
		    "1 to 63 characters of a-z 0-9 _ . -, starting with a "
		    "letter or digit", s);
	snprintf(spec->name, sizeof(spec->name), "%s", s);

	if ((rc = get_int(root, "vcpus", "", 1, SPEC_VCPUS_MAX, &v, err)) < 0)
		return -1;
	if (rc == 0)
		spec->vcpus = (int)v;
	if ((rc = get_int(root, "memory_mib", "", SPEC_MEM_MIN, SPEC_MEM_MAX,
	    &v, err)) < 0)
		return -1;
	if (rc == 0)
		spec->memory_mib = (int)v;

	if ((rc = get_str(root, "machine", "", 7, &s, err)) < 0)
		return -1;
	if (rc == 0) {
		if (strcmp(s, "q35") != 0 && strcmp(s, "pc") != 0)
			return fail(err, "invalid_value",
			    "machine must be q35 or pc");
		snprintf(spec->machine, sizeof(spec->machine), "%s", s);
	}

	if ((rc = get_str(root, "image", "", SPEC_NAME_MAX, &s, err)) < 0)
		return -1;
	if (rc == 0) {
		if (!spec_name_valid(s))
			return fail(err, "invalid_name",
			    "image \"%s\" is not a valid image name", s);
		snprintf(spec->image, sizeof(spec->image), "%s", s);
	}
	if ((sub = json_object_get(root, "boot")) != NULL &&
	    parse_boot(sub, spec, err) < 0)
		return -1;
	if (spec->image[0] && spec->kernel)
		return fail(err, "invalid_value",
		    "give either image or boot.kernel, not both");
	if ((sub = json_object_get(root, "disks")) != NULL &&
	    parse_disks(sub, spec, err) < 0)
		return -1;
	if (get_path(root, "cdrom", "", &spec->cdrom, err) < 0)
		return -1;
	if (!spec->image[0] && !spec->kernel && !spec->cdrom &&
	    spec->ndisks == 0)
		return fail(err, "missing_field", "an image, boot.kernel, a "
		    "cdrom or a disk to boot is required");
	for (int i = 0; i < spec->nboot; i++)
		if (spec->boot_order[i] == SPEC_BOOT_CDROM && !spec->cdrom)
			return fail(err, "invalid_value", "boot.order names "
			    "cdrom, but there is no cdrom");
	if (parse_firmware(root, spec, err) < 0)
		return -1;
	if ((sub = json_object_get(root, "cloud_init")) != NULL &&
	    !json_is_null(sub) && parse_cloud_init(sub, spec, err) < 0)
		return -1;
	if ((sub = json_object_get(root, "nics")) != NULL &&
	    parse_nics(sub, spec, err) < 0)
		return -1;
	if ((sub = json_object_get(root, "resources")) != NULL &&
	    parse_resources(sub, spec, err) < 0)
		return -1;
	if ((sub = json_object_get(root, "schedule")) != NULL &&
	    parse_schedule(sub, spec, err) < 0)
		return -1;
	if (get_bool(root, "autostart", "", &spec->autostart, err) < 0)
		return -1;
	if ((sub = json_object_get(root, "agent")) != NULL &&
	    parse_agent(sub, spec, err) < 0)
		return -1;
	if ((rc = get_bool(root, "vnc", "", &spec->vnc, err)) < 0)
		return -1;
	spec->vnc_given = rc == 0;

	if (spec->resources.min_memory_mib == 0)
		spec->resources.min_memory_mib = spec->memory_mib / 2 <
		    SPEC_MEM_MIN ? spec->memory_mib : spec->memory_mib / 2;
	if (spec->resources.min_memory_mib > spec->memory_mib)
		return fail(err, "out_of_range", "resources.min_memory_mib "
		    "(%d) is more than memory_mib (%d)",
		    spec->resources.min_memory_mib, spec->memory_mib);
	return 0;
}

json_t *
spec_to_json(const struct vm_spec *spec)
{
	json_t *o = json_object(), *disks = json_array(), *nics = json_array();

	json_object_set_new(o, "name", json_string(spec->name));
	json_object_set_new(o, "vcpus", json_integer(spec->vcpus));
	json_object_set_new(o, "memory_mib", json_integer(spec->memory_mib));
	json_object_set_new(o, "machine", json_string(spec->machine));
	if (spec->image[0])
		json_object_set_new(o, "image", json_string(spec->image));
	if (spec->kernel || spec->cmdline) {
		json_t *boot = json_object();
		if (spec->kernel)
			json_object_set_new(boot, "kernel",
			    json_string(spec->kernel));
		if (spec->initrd)
			json_object_set_new(boot, "initrd",
			    json_string(spec->initrd));
		if (spec->cmdline)
			json_object_set_new(boot, "cmdline",
			    json_string(spec->cmdline));
		json_object_set_new(o, "boot", boot);
	}
	if (spec->nboot) {
		json_t *boot = json_object_get(o, "boot"), *order = json_array();
		if (boot == NULL)
			json_object_set_new(o, "boot", boot = json_object());
		for (int i = 0; i < spec->nboot; i++)
			json_array_append_new(order, json_string(
			    spec->boot_order[i] == SPEC_BOOT_CDROM ? "cdrom" :
			    "disk"));
		json_object_set_new(boot, "order", order);
	}
	if (spec->firmware[0])
		json_object_set_new(o, "firmware", json_string(spec->firmware));
	if (spec->secure_boot)
		json_object_set_new(o, "secure_boot", json_true());
	if (spec->cdrom)
		json_object_set_new(o, "cdrom", json_string(spec->cdrom));
	if (spec->cloud_init)
		json_object_set_new(o, "cloud_init", json_deep_copy(
		    spec->cloud_init));
	for (int i = 0; i < spec->ndisks; i++) {
		json_t *d = json_pack("{s:s}", "volume", spec->disks[i].volume);
		if (spec->disks[i].image[0])
			json_object_set_new(d, "image", json_string(
			    spec->disks[i].image));
		uint64_t size = spec->disks[i].size;
		/* size_gib too, for readers of vmgr 0.1's specs. */
		if (size > 0 && size % (1u << 30) == 0)
			json_object_set_new(d, "size_gib",
			    json_integer((json_int_t)(size >> 30)));
		if (size > 0)
			json_object_set_new(d, "size", json_integer(
			    (json_int_t)size));
		json_array_append_new(disks, d);
	}
	json_object_set_new(o, "disks", disks);
	for (int i = 0; i < spec->nnics; i++) {
		json_t *nic = json_pack("{s:s}", "network",
		    spec->nics[i].network);
		if (spec->nics[i].mac[0])
			json_object_set_new(nic, "mac",
			    json_string(spec->nics[i].mac));
		if (spec->nics[i].ip[0])
			json_object_set_new(nic, "ip",
			    json_string(spec->nics[i].ip));
		if (!spec->nics[i].mac_filter)
			json_object_set_new(nic, "mac_filter", json_false());
		if (spec->nics[i].nforwards) {
			json_t *fws = json_array();
			for (int k = 0; k < spec->nics[i].nforwards; k++) {
				const struct spec_forward *f =
				    &spec->nics[i].forwards[k];
				json_array_append_new(fws, json_pack("{s:s, s:s, "
				    "s:i, s:i}", "proto", f->proto, "host_addr",
				    f->host_addr, "host_port", f->host_port,
				    "guest_port", f->guest_port));
			}
			json_object_set_new(nic, "forwards", fws);
		}
		json_array_append_new(nics, nic);
	}
	json_object_set_new(o, "nics", nics);
	json_object_set_new(o, "resources", json_pack("{s:s, s:i, s:f, s:i}",
	    "policy", spec->resources.policy,
	    "priority", spec->resources.priority,
	    "weight", spec->resources.weight,
	    "min_memory_mib", spec->resources.min_memory_mib));
	json_t *sched = json_pack("{s:b}", "preemptible",
	    spec->schedule.preemptible);
	if (spec->schedule.expected_runtime_s)
		json_object_set_new(sched, "expected_runtime_s",
		    json_integer(spec->schedule.expected_runtime_s));
	json_object_set_new(o, "schedule", sched);
	json_object_set_new(o, "autostart", json_boolean(spec->autostart));
	json_object_set_new(o, "agent", json_pack("{s:b, s:b}", "enabled",
	    spec->agent.enabled, "freeze", spec->agent.freeze));
	if (spec->vnc_given)
		json_object_set_new(o, "vnc", json_boolean(spec->vnc));
	return o;
}

void
spec_clear(struct vm_spec *spec)
{
	if (spec == NULL)
		return;
	free(spec->kernel);
	free(spec->initrd);
	free(spec->cmdline);
	free(spec->cdrom);
	json_decref(spec->cloud_init);
	spec->kernel = spec->initrd = spec->cmdline = spec->cdrom = NULL;
	spec->cloud_init = NULL;
}
