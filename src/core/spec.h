/*
 * spec.h - the VM spec of DESIGN.md: parsed from JSON, validated, and turned
 * back into JSON.  Pure: checks values and shapes only; whether a kernel file
 * exists or an image is installed is the daemon's business.  Unknown fields
 * are an error, so a typo never goes unnoticed.
 */
#ifndef VMGR_SPEC_H
#define VMGR_SPEC_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#define SPEC_NAME_MAX	63
#define SPEC_MAX_DISKS	16
#define SPEC_MAX_NICS	8
#define SPEC_VCPUS_MAX	255
#define SPEC_MEM_MIN	16		/* MiB */
#define SPEC_MEM_MAX	(4u << 20)	/* MiB: 4 TiB */
#define SPEC_DISK_MAX	16384		/* GiB */
#define SPEC_DISK_MAX_BYTES	((uint64_t)SPEC_DISK_MAX << 30)
#define SPEC_CMDLINE_MAX 2048
#define SPEC_PATH_MAX	1024

struct spec_disk {
	char	 volume[SPEC_NAME_MAX + 1];
	uint64_t size;		/* bytes of a new volume; 0 = attach one */
	char	 image[SPEC_NAME_MAX + 1];	/* a new linked clone of it */
};

/* What firmware boots, in order (boot.order). */
enum spec_boot_dev { SPEC_BOOT_DISK, SPEC_BOOT_CDROM };
#define SPEC_MAX_BOOT	2

#define SPEC_USER_MAX		32
#define SPEC_MAX_KEYS		32
#define SPEC_KEY_MAX		16384		/* one public key's line */
#define SPEC_USER_DATA_MAX	(1u << 20)	/* bytes */

#define SPEC_MAX_FORWARDS 16

/* A host port forwarded into the guest (user-mode NAT only). */
struct spec_forward {
	char	proto[4];		/* "tcp" or "udp" */
	char	host_addr[16];		/* IPv4; default 127.0.0.1 */
	int	host_port;
	int	guest_port;
};

struct spec_nic {
	char	network[SPEC_NAME_MAX + 1];	/* "nat", or a network's name */
	char	mac[18];		/* "" until the daemon assigns one */
	char	ip[16];			/* on a vmgr network; "" = assign */
	bool	mac_filter;		/* isolated networks: only its MAC may send */
	int	nforwards;
	struct spec_forward forwards[SPEC_MAX_FORWARDS];
};

struct vm_spec {
	char		name[SPEC_NAME_MAX + 1];
	int		vcpus;
	int		memory_mib;
	char		machine[8];
	char		image[SPEC_NAME_MAX + 1];	/* "" when boot.kernel is given */
	char		*kernel;			/* owned, or NULL */
	char		*initrd;			/* owned, or NULL */
	char		*cmdline;			/* owned, or NULL */
	int		ndisks;
	struct spec_disk disks[SPEC_MAX_DISKS];
	int		nnics;
	struct spec_nic	nics[SPEC_MAX_NICS];
	struct {
		char	policy[8];
		int	priority;
		double	weight;
		int	min_memory_mib;
	} resources;
	struct {
		long long expected_runtime_s;	/* 0 = undeclared */
		bool	preemptible;
	} schedule;
	bool		autostart;
	/*
	 * The guest agent's channel (virtio-serial org.qemu.guest_agent.0),
	 * and whether snapshots and backups freeze the guest's file systems
	 * through it.  Both default to true.
	 */
	struct {
		bool	enabled;
		bool	freeze;
	} agent;
	/*
	 * A graphical console (VGA, a VNC display vmgrd serves).  Unless the
	 * spec says, vmgrd decides at create: on for VMs that boot through
	 * firmware, off for a kernel booted directly (tiny).
	 */
	bool		vnc;
	bool		vnc_given;
	char		firmware[8];	/* "bios", "uefi", or "": vmgrd decides */
	bool		secure_boot;	/* UEFI with Secure Boot */
	char		*cdrom;		/* owned: an ISO's path, or NULL */
	int		nboot;		/* 0: disks only */
	enum spec_boot_dev boot_order[SPEC_MAX_BOOT];
	/*
	 * cloud-init's NoCloud seed, checked in shape: {"user", "ssh_authorized
	 * _keys": [...], "password_hash", "user_data"}; NULL when there is none.
	 * A reference the spec owns.
	 */
	json_t		*cloud_init;
};

struct spec_error {
	int	status;		/* HTTP status: 400 or 422 */
	char	code[32];
	char	message[256];
};

/*
 * Fill *spec from a JSON object.  Returns 0, or -1 with *err set; in both
 * cases spec_clear() must be called on *spec afterwards.
 */
int	spec_from_json(const json_t *, struct vm_spec *, struct spec_error *);

/* A new JSON object for the spec; the caller owns it. */
json_t	*spec_to_json(const struct vm_spec *);

/* Release what the spec owns; the struct itself is the caller's. */
void	spec_clear(struct vm_spec *);

/* 1 when s matches ^[a-z0-9][a-z0-9_.-]{0,62}$ and is not "." or "..". */
int	spec_name_valid(const char *s);

/*
 * Parse "tcp:8080:80", "udp:5353:53" or "tcp:0.0.0.0:8080:80" into *f.
 * Returns 0, or -1 for anything else.
 */
int	spec_forward_parse(const char *s, struct spec_forward *f);

/* 1 when a and b would claim the same host port. */
int	spec_forward_conflict(const struct spec_forward *a,
	    const struct spec_forward *b);

/*
 * Parse "10.10.0.0/24" into a network address and prefix (8 to 30).  The
 * address must be the network's (no host bits).  0, or -1.
 */
int	spec_cidr_parse(const char *s, unsigned *net, int *prefix);

/*
 * Parse a disk size as qemu-img takes it: bytes ("1048576"), or a number
 * with a binary suffix K, M, G, T (also KiB, MB, ...; "1.5G" too), into
 * bytes rounded up to whole 512-byte sectors.  0 < size <= 16 TiB.  0, or
 * -1 for anything else.
 */
int	spec_size_parse(const char *s, uint64_t *bytes);

/*
 * 1 when s is one OpenSSH public key line: "TYPE BASE64 [COMMENT]", with a
 * known TYPE and a key blob that names the same type.
 */
int	spec_ssh_key_valid(const char *s);

/* 1 when s is a login name cloud-init can make: ^[a-z_][a-z0-9_-]{0,31}$. */
int	spec_user_valid(const char *s);

/* 1 when s is a crypt(3) hash ("$6$...", "$y$...", "$5$...", "$2b$..."). */
int	spec_password_hash_valid(const char *s);

/* 1 when s is a unicast MAC "xx:xx:xx:xx:xx:xx" (lower or upper hex). */
int	spec_mac_valid(const char *s);

#endif
