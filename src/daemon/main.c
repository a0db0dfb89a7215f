/*
 * main.c - vmgrd: options, the state dir and its lock, daemonizing, and
 * the one event loop everything else runs on.
 */
#include "daemon.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <libgen.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../lib/log.h"
#include "../lib/util.h"
#include "../qemu/qmp.h"

#ifndef VMGR_DATADIR
#define VMGR_DATADIR "/usr/local/share/vmgr"
#endif

static void
usage(FILE *out)
{
	fprintf(out,
"usage: vmgrd [--state-dir DIR] [--foreground] [--images-dir DIR]\n"
"             [--image-cache DIR]\n"
"             [--shutdown-timeout SECONDS] [--capacity-cpus N]\n"
"             [--capacity-memory SIZE] [--cpu-ratio R] [--memory-ratio R]\n"
"             [--policy fcfs|sjf|priority|rr] [--quantum DURATION]\n"
"             [--sample-interval SECONDS] [--socket-group GROUP]\n"
"             [--max-connections N] [--qmp-timeout SECONDS]\n"
"             [--nat auto|passt|slirp] [--switch auto|kernel|user]\n"
"             [--listen tcp:HOST:PORT --token-file FILE\n"
"              [--tls-cert FILE --tls-key FILE]] [--verbose]\n"
"\n"
"The vmgr daemon.  Serves the API on STATE_DIR/vmgrd.sock and keeps its\n"
"state in STATE_DIR/vmgr.db.  Without --foreground it detaches once it is\n"
"ready and logs to STATE_DIR/vmgrd.log.  QEMU processes outlive vmgrd and\n"
"are re-adopted when it starts again.\n"
"\n"
"  --state-dir DIR        default $VMGR_STATE_DIR, /var/lib/vmgr for root,\n"
"                         else $XDG_STATE_HOME/vmgr or ~/.local/state/vmgr\n"
"  --foreground, -f       stay attached and log to stderr\n"
"  --images-dir DIR       where images such as \"tiny\" and the recipes of\n"
"                         `vmgr image build` live\n"
"  --image-cache DIR      where built images are kept until their recipe\n"
"                         changes (default $VMGR_IMAGE_CACHE, else\n"
"                         STATE_DIR/cache/images)\n"
"  --shutdown-timeout S   seconds a guest gets to power off (default 120)\n"
"  --capacity-cpus N      CPUs vmgrd may give to VMs (default: all)\n"
"  --capacity-memory SIZE memory vmgrd may give to VMs (default: all)\n"
"  --cpu-ratio R          overcommit of fixed vCPUs (default 4.0)\n"
"  --memory-ratio R       overcommit of reserved memory (default 1.0)\n"
"  --policy P             scheduler policy (default: the last one set, fcfs)\n"
"  --quantum DURATION     rr slice in vCPU-seconds (default 30s)\n"
"  --sample-interval S    how often VMs are sampled (default 1; an hour of\n"
"                         samples is kept per VM)\n"
"  --socket-group GROUP   let GROUP use the API: the socket becomes 0660 and\n"
"                         the state dir 0710, both of that group (default:\n"
"                         the socket is 0600, for vmgrd's user only)\n"
"  --max-connections N    connections each API socket serves at once\n"
"                         (default 512); more are refused with 503\n"
"  --listen tcp:HOST:PORT also serve the API over TCP (off by default); every\n"
"                         request must carry Authorization: Bearer TOKEN\n"
"  --token-file FILE      the token (16 to 512 characters); the file must not\n"
"                         be readable by other users\n"
"  --tls-cert FILE, --tls-key FILE   HTTPS on the TCP listener (PEM)\n"
"  --qmp-timeout S        how long QEMU may leave a QMP command unanswered\n"
"                         before its monitor link is dropped and retried\n"
"                         (default 10; snapshots with memory may take longer)\n"
"  --nat auto|passt|slirp what carries `--nic nat`: passt (Debian's passt,\n"
"                         faster) or QEMU's own slirp; auto (the default)\n"
"                         takes passt when it is installed and works here\n"
"  --switch auto|kernel|user  what carries isolated networks: the kernel's\n"
"                         bridges in a network namespace of vmgrd's own\n"
"                         (root; guests get offloads) or vmgrd's own switch;\n"
"                         auto (the default) takes the kernel's as root\n"
"  --qemu-uid-base N      as root, run each VM's QEMU as uid N + the VM's id\n"
"                         (default 0x40000000; 0 keeps QEMU as root)\n"
"  --verbose, -v          log QMP events too\n"
"\n"
"Environment: VMGR_QEMU, VMGR_QEMU_IMG (binaries), VMGR_ACCEL=tcg (never\n"
"use KVM), VMGR_IMAGES_DIR.\n");
}

/*
 * Descriptors: each API connection holds one, each VM a few (QMP, console,
 * pidfd); the soft limit (often 1024) goes up to the hard one.
 */
static void
raise_fd_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return;
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
			log_warn("%s: setrlimit", __func__);
	}
	if (rl.rlim_cur < (rlim_t)vmgrd->max_conns * 2 + 256)
		log_warnx("only %llu descriptors for --max-connections %d on "
		    "each API socket: lower it, or raise the limit",
		    (unsigned long long)rl.rlim_cur, vmgrd->max_conns);
}

static void
on_signal(evutil_socket_t sig, short what, void *arg)
{
	(void)what;
	(void)arg;
	log_info("signal %d: exiting; running VMs go on", (int)sig);
	event_base_loopexit(vmgrd->base, NULL);
}

/* build/vmgrd finds build/images; an installed one, PREFIX/share/vmgr. */
static void
find_images_dir(const char *opt)
{
	char exe[PATH_MAX];
	ssize_t n;
	const char *env = getenv("VMGR_IMAGES_DIR");

	if (opt || (env && *env)) {
		snprintf(vmgrd->images_dir, sizeof(vmgrd->images_dir), "%s",
		    opt ? opt : env);
		return;
	}
	if ((n = readlink("/proc/self/exe", exe, sizeof(exe) - 1)) > 0) {
		exe[n] = '\0';
		snprintf(vmgrd->images_dir, sizeof(vmgrd->images_dir),
		    "%s/images", dirname(exe));
		if (access(vmgrd->images_dir, F_OK) == 0)
			return;
	}
	snprintf(vmgrd->images_dir, sizeof(vmgrd->images_dir),
	    "%s/images", VMGR_DATADIR);
}

static int
take_lock(void)
{
	char path[PATH_MAX], buf[32];
	int fd;

	snprintf(path, sizeof(path), "%s/vmgrd.lock", vmgrd->state_dir);
	if ((fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600)) < 0) {
		log_warn("open %s", path);
		return -1;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
		buf[n > 0 ? n : 0] = '\0';
		log_warnx("vmgrd is already running for %s (pid %s)",
		    vmgrd->state_dir, n > 0 ? strtok(buf, "\n") : "?");
		close(fd);
		return -1;
	}
	if (ftruncate(fd, 0) == 0) {
		int len = snprintf(buf, sizeof(buf), "%d\n", (int)getpid());
		if (pwrite(fd, buf, (size_t)len, 0) != len)
			log_warn("write %s", path);
	}
	return fd;	/* held open for the life of the process */
}

/*
 * Detach: the parent waits on a pipe until the child is serving (or has
 * failed), so `vmgrd && vmgr list` never races.  Returns the pipe's write
 * end in the child.
 */
/* The child died before it served: show why, from its log. */
static void
print_fatal(void)
{
	char path[PATH_MAX], *log, *last = NULL;

	snprintf(path, sizeof(path), "%s/vmgrd.log", vmgrd->state_dir);
	if ((log = read_file(path, 1 << 20, NULL)) == NULL)
		return;
	for (char *l = log; (l = strstr(l, " fatal ")) != NULL; l++)
		last = l + 7;
	if (last)
		fprintf(stderr, "vmgrd: %.*s\n", (int)strcspn(last, "\n"), last);
	free(log);
}

static int
daemonize(void)
{
	int p[2];
	char c;

	if (pipe2(p, O_CLOEXEC) < 0)
		fatal("pipe");
	switch (fork()) {
	case -1:
		fatal("fork");
	case 0:
		close(p[0]);
		setsid();
		return p[1];
	default:
		close(p[1]);
		if (read(p[0], &c, 1) == 1 && c == 'k')
			_exit(0);
		print_fatal();
		fprintf(stderr, "vmgrd: failed to start; see %s/vmgrd.log\n",
		    vmgrd->state_dir);
		_exit(1);
	}
}

static int
open_log(void)
{
	char path[PATH_MAX];
	int fd, devnull;

	snprintf(path, sizeof(path), "%s/vmgrd.log", vmgrd->state_dir);
	if ((fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC,
	    0600)) < 0)
		return -1;
	if ((devnull = open("/dev/null", O_RDONLY)) >= 0) {
		dup2(devnull, 0);
		close(devnull);
	}
	dup2(fd, 1);
	dup2(fd, 2);
	close(fd);
	return 0;
}

/* What the command line says, besides what goes straight into vmgrd. */
struct options {
	const char	*state_dir, *images, *image_cache, *nat, *kswitch;
	const char	*listen, *token_file, *tls_cert, *tls_key;
	int		 foreground, verbose, policy_given;
	long long	 timeout;
	double		 sample_s;
};

/* Say what is wrong with an option; 2, the exit status for it. */
static int
bad(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int
bad(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "vmgrd: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n");
	return 2;
}

/* One option (ch, with arg): 0, or 2 after saying what is wrong. */
static int
parse_option(int ch, const char *arg, struct options *o)
{
	struct vmgrd *d = vmgrd;
	long long v;
	char *end;

	switch (ch) {
	case 's': o->state_dir = arg; break;
	case 'f': o->foreground = 1; break;
	case 'i': o->images = arg; break;
	case 'X': o->image_cache = arg; break;
	case 'n':
		if (strcmp(arg, "auto") != 0 && strcmp(arg, "passt") != 0 &&
		    strcmp(arg, "slirp") != 0)
			return bad("--nat: auto, passt or slirp");
		o->nat = arg;
		break;
	case 'W':
		if (strcmp(arg, "auto") != 0 && strcmp(arg, "kernel") != 0 &&
		    strcmp(arg, "user") != 0)
			return bad("--switch: auto, kernel or user");
		o->kswitch = arg;
		break;
	case 'v': o->verbose = 1; break;
	case 'L': o->listen = arg; break;
	case 'T': o->token_file = arg; break;
	case 'c': o->tls_cert = arg; break;
	case 'k': o->tls_key = arg; break;
	case 't':
		if (parse_duration_s(arg, &o->timeout) < 0 ||
		    o->timeout > 86400)
			return bad("--shutdown-timeout: bad duration \"%s\"",
			    arg);
		break;
	case 'C':
		d->cap.cpus = strtod(arg, &end);
		if (*end || !(d->cap.cpus > 0) || d->cap.cpus > 4096)
			return bad("--capacity-cpus: bad number \"%s\"", arg);
		break;
	case 'M':
		if (parse_size_mib(arg, &v) < 0 || v < 16)
			return bad("--capacity-memory: bad size \"%s\"", arg);
		d->cap.memory_mib = (double)v;
		break;
	case 'R':
	case 'm': {
		double r = strtod(arg, &end);
		if (*end || !(r > 0) || r > 100)
			return bad("bad ratio \"%s\"", arg);
		*(ch == 'R' ? &d->cap.cpu_ratio : &d->cap.memory_ratio) = r;
		break;
	}
	case 'P':
		if (sched_policy_parse(arg) < 0)
			return bad("--policy: fcfs, sjf, priority or rr");
		d->policy = (enum sched_policy)sched_policy_parse(arg);
		o->policy_given = 1;
		break;
	case 'I':
		o->sample_s = strtod(arg, &end);
		if (*end || !(o->sample_s >= 0.1) || o->sample_s > 3600)
			return bad("--sample-interval: 0.1 to 3600 seconds");
		break;
	case 'Q':
		if (parse_duration_s(arg, &v) < 0 || v < 1 || v > 86400)
			return bad("--quantum: bad duration \"%s\"", arg);
		d->quantum_s = (double)v;
		break;
	case 'G': {
		struct group *g = getgrnam(arg);
		if (g == NULL)
			return bad("--socket-group: no group \"%s\"", arg);
		d->socket_gid = g->gr_gid;
		d->socket_group = 1;
		break;
	}
	case 'N':
		v = strtoll(arg, &end, 10);
		if (*arg == '\0' || *end || v < 1 || v > 65536)
			return bad("--max-connections: a whole number from 1 "
			    "to 65536");
		d->max_conns = (int)v;
		break;
	case 'U': {
		unsigned long b = strtoul(arg, &end, 0);
		if (*end || b > 0xf0000000ul)
			return bad("--qemu-uid-base: a uid, or 0");
		priv_set_base((unsigned)b);
		break;
	}
	case 'O':
		if (parse_duration_s(arg, &v) < 0 || v < 1 || v > 600)
			return bad("--qmp-timeout: 1 to 600 seconds");
		qmp_set_default_timeout((double)v);
		break;
	default:
		usage(stderr);
		return 2;
	}
	return 0;
}

/* -1 to go on, else the exit status (after --help or a bad option). */
static int
parse_options(int argc, char *argv[], struct options *o)
{
	static const struct option opts[] = {
		{ "state-dir", required_argument, NULL, 's' },
		{ "foreground", no_argument, NULL, 'f' },
		{ "images-dir", required_argument, NULL, 'i' },
		{ "image-cache", required_argument, NULL, 'X' },
		{ "shutdown-timeout", required_argument, NULL, 't' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "capacity-cpus", required_argument, NULL, 'C' },
		{ "capacity-memory", required_argument, NULL, 'M' },
		{ "cpu-ratio", required_argument, NULL, 'R' },
		{ "memory-ratio", required_argument, NULL, 'm' },
		{ "policy", required_argument, NULL, 'P' },
		{ "quantum", required_argument, NULL, 'Q' },
		{ "sample-interval", required_argument, NULL, 'I' },
		{ "socket-group", required_argument, NULL, 'G' },
		{ "max-connections", required_argument, NULL, 'N' },
		{ "listen", required_argument, NULL, 'L' },
		{ "qemu-uid-base", required_argument, NULL, 'U' },
		{ "qmp-timeout", required_argument, NULL, 'O' },
		{ "nat", required_argument, NULL, 'n' },
		{ "switch", required_argument, NULL, 'W' },
		{ "token-file", required_argument, NULL, 'T' },
		{ "tls-cert", required_argument, NULL, 'c' },
		{ "tls-key", required_argument, NULL, 'k' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	int ch, rc;

	o->timeout = 120;
	o->sample_s = 1.0;
	while ((ch = getopt_long(argc, argv, "s:fi:t:vh", opts, NULL)) != -1) {
		if (ch == 'h') {
			usage(stdout);
			return 0;
		}
		if (ch == 'V') {
			printf("vmgrd %s\n", VMGR_VERSION);
			return 0;
		}
		if ((rc = parse_option(ch, optarg, o)) != 0)
			return rc;
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	return -1;
}

/*
 * The state dir, made if need be, its real path in vmgrd->state_dir: -1
 * to go on, else the exit status after saying what is wrong.
 */
static int
state_dir(const struct options *o)
{
	char sd[PATH_MAX], path[PATH_MAX];

	if (o->state_dir)
		snprintf(sd, sizeof(sd), "%s", o->state_dir);
	else if (default_state_dir(sd, sizeof(sd)) < 0) {
		fprintf(stderr, "vmgrd: cannot find a state dir; use "
		    "--state-dir\n");
		return 2;
	}
	if (mkdir_p(sd, 0700) < 0) {
		fprintf(stderr, "vmgrd: %s: %s\n", sd, strerror(errno));
		return 1;
	}
	/* Only the group may pass through to the socket; nothing else changes. */
	if (vmgrd->socket_group && (chown(sd, (uid_t)-1,
	    vmgrd->socket_gid) < 0 || chmod(sd, priv_enabled() ? 0711 :
	    0710) < 0)) {
		fprintf(stderr, "vmgrd: %s: %s\n", sd, strerror(errno));
		return 1;
	}
	if (realpath(sd, path) == NULL) {
		fprintf(stderr, "vmgrd: %s: %s\n", sd, strerror(errno));
		return 1;
	}
	/* Sockets live at STATE_DIR/vm/ID/console.sock: 108 bytes at most. */
	if (strlen(path) > 80) {
		fprintf(stderr, "vmgrd: state dir path too long (over 80 "
		    "bytes) for unix sockets: %s\n", path);
		return 2;
	}
	memcpy(vmgrd->state_dir, path, strlen(path) + 1);
	return -1;
}

/* The host, the database, the loop, and everything recorded in them. */
static void
load(const struct options *o)
{
	struct vmgrd *d = vmgrd;
	char err[1024], path[PATH_MAX];

	if (host_probe(err, sizeof(err)) < 0 ||
	    nat_setup(o->nat ? o->nat : "auto", err, sizeof(err)) < 0 ||
	    kswitch_setup(o->kswitch ? o->kswitch : "auto", err,
	    sizeof(err)) < 0)
		fatalx("%s", err);
	host_capacity();
	cgroup_probe();
	snprintf(path, sizeof(path), "%s/vmgr.db", d->state_dir);
	if (db_open(path, &d->db, err, sizeof(err)) < 0 ||
	    host_id_load(err, sizeof(err)) < 0)
		fatalx("%s", err);
	if ((d->base = event_base_new()) == NULL)
		fatalx("cannot create the event loop");
	int quantum_given = d->quantum_s > 0;
	sched_init();
	if (o->policy_given || quantum_given) {
		/* Given on the command line: it is also the new default. */
		char q[32];
		snprintf(q, sizeof(q), "%g", d->quantum_s);
		if (o->policy_given)
			db_setting_set(d->db, "policy",
			    sched_policy_name(d->policy));
		if (quantum_given)
			db_setting_set(d->db, "quantum_s", q);
	}
	d->started_at = now_unix_ms();
	/* Each round of samples also writes states the disk could not take. */
	monitor_init(o->sample_s, vm_db_sync);
	if (net_load_all() < 0)
		fatalx("cannot load networks: %s", db_errmsg(d->db));
	if (priv_init() < 0)
		fatalx("cannot prepare the state dir for unprivileged QEMUs");
	if (vm_load_all() < 0)
		fatalx("cannot load VMs: %s", db_errmsg(d->db));
	if (volume_load_all() < 0)
		fatalx("cannot load volumes: %s", db_errmsg(d->db));
	if (image_load_all() < 0)
		fatalx("cannot load the image catalog: %s", db_errmsg(d->db));
	if (backup_load_all() < 0)
		fatalx("cannot load the backup catalog: %s", db_errmsg(d->db));
	peer_load();
	if (migrate_load() < 0)
		fatalx("cannot load the migrations: %s", db_errmsg(d->db));
	db_reserve_init(d->state_dir);
	raise_fd_limit();
}

/* The API on sock, and on the network if asked. */
static void
serve(const struct options *o, const char *sock)
{
	char err[1024];

	if (api_listen(sock) < 0)
		fatalx("cannot serve the API on %s", sock);
	if ((o->listen || o->token_file || o->tls_cert || o->tls_key) &&
	    (o->listen == NULL || remote_listen(o->listen, o->token_file,
	    o->tls_cert, o->tls_key, err, sizeof(err)) < 0))
		fatalx("%s", o->listen ? err : "--token-file and --tls-* "
		    "need --listen");
}

int
main(int argc, char *argv[])
{
	static struct vmgrd d;
	struct options o = { 0 };
	char path[PATH_MAX];
	const char *env;
	int ready_fd = -1, rc;

	vmgrd = &d;
	d.policy = SCHED_NPOLICIES;	/* not given */
	d.max_conns = 512;
	TAILQ_INIT(&d.vms);
	if ((rc = parse_options(argc, argv, &o)) >= 0)
		return rc;
	d.shutdown_timeout_s = (int)o.timeout;
	if ((rc = state_dir(&o)) >= 0)
		return rc;
	if (!o.foreground) {
		ready_fd = daemonize();
		if (open_log() < 0)
			return 1;
	}
	log_init(stderr, o.verbose);
	signal(SIGPIPE, SIG_IGN);
	umask(0077);

	find_images_dir(o.images);
	env = o.image_cache ? o.image_cache : getenv("VMGR_IMAGE_CACHE");
	if (env && *env)
		snprintf(d.image_cache, sizeof(d.image_cache), "%s", env);
	else
		snprintf(d.image_cache, sizeof(d.image_cache), "%s/cache/images",
		    d.state_dir);
	env = getenv("VMGR_QEMU");
	snprintf(d.qemu_binary, sizeof(d.qemu_binary), "%s",
	    env && *env ? env : "qemu-system-x86_64");
	env = getenv("VMGR_QEMU_IMG");
	snprintf(d.qemu_img, sizeof(d.qemu_img), "%s",
	    env && *env ? env : "qemu-img");

	if (take_lock() < 0)
		return 1;
	load(&o);
	snprintf(path, sizeof(path), "%s/vmgrd.sock", d.state_dir);
	serve(&o, path);

	struct event *sigterm = evsignal_new(d.base, SIGTERM, on_signal, NULL);
	struct event *sigint = evsignal_new(d.base, SIGINT, on_signal, NULL);
	evsignal_add(sigterm, NULL);
	evsignal_add(sigint, NULL);
	signal(SIGHUP, SIG_IGN);

	log_info("vmgrd %s ready: %s, accel %s (%s), QEMU %s, images %s",
	    VMGR_VERSION, path, d.accel, d.accel_reason, d.qemu_version,
	    d.images_dir);
	log_info("capacity %g CPUs x %g, %g MiB x %g; scheduler %s, quantum "
	    "%gs; enforcement: %s", d.cap.cpus, d.cap.cpu_ratio,
	    d.cap.memory_mib, d.cap.memory_ratio, sched_policy_name(d.policy),
	    d.quantum_s, d.enforce_reason);
	vm_autostart();
	if (ready_fd >= 0) {
		if (write(ready_fd, "k", 1) != 1)
			log_warn("ready pipe");
		close(ready_fd);
	}
	event_base_dispatch(d.base);

	migrate_stop();
	vm_shutdown_daemon();
	remote_close();
	migrate_close();
	peer_close();
	evhttp_free(d.http);
	unlink(path);
	event_free(sigterm);
	event_free(sigint);
	event_base_free(d.base);
	db_close(d.db);
	return 0;
}
