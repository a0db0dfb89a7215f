/*
 * net_nat.c - NAT for `--nic nat`: passt when the host has it, else
 * QEMU's own user-mode stack (slirp).
 *
 * passt (Debian's passt, the backend podman and libvirt use) runs as a
 * process of its own per NIC, as the VM's QEMU user and in its cgroups,
 * and talks to QEMU over a socket pair vmgrd makes (QEMU's -netdev stream
 * on one end, passt's --fd on the other), so no socket file is ever
 * made.  It is started with --one-off: when QEMU goes, its end closes and
 * passt quits; vmgrd also ends it then.  The guest sees what slirp gives
 * (10.0.2.15/24, gateway and host 10.0.2.2, DNS 10.0.2.3), so a guest
 * does not care which it has; host port forwards are passt's -t and -u.
 *
 * vmgrd picks the backend at start (--nat auto|passt|slirp): auto takes
 * passt when it is installed and passes a trial run here (its sandbox
 * needs namespaces some containers refuse).  Called by vm_spawn.c (a
 * start), vm_qemu.c (QEMU's exit) and vm.c (a VM's JSON).
 */
#include "net_int.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../lib/log.h"
#include "../lib/util.h"
#include "../qemu/proc.h"

static char passt[PATH_MAX];		/* the binary, or "": slirp */
static char nat_why[PATH_MAX + 256];	/* why this backend */

static int
find_passt(char *buf, size_t len)
{
	const char *path = getenv("PATH");
	char dirs[1024];

	snprintf(dirs, sizeof(dirs), "%s", path && *path ? path :
	    "/usr/bin:/bin:/usr/sbin:/sbin");
	for (char *save, *d = strtok_r(dirs, ":", &save); d;
	    d = strtok_r(NULL, ":", &save)) {
		snprintf(buf, len, "%s/passt", d);
		if (access(buf, X_OK) == 0)
			return 0;
	}
	return -1;
}

/*
 * A trial: passt on one end of a socket pair whose other end closes at
 * once must start, see the close and quit with 0, within two seconds.
 */
static int
passt_works(const char *bin, char *why, size_t len)
{
	char *argv[] = { (char *)bin, "-f", "-q", "-1", "--fd", "3", NULL };
	int sp[2], status = 0;
	pid_t pid;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) < 0) {
		snprintf(why, len, "socketpair: %s", strerror(errno));
		return 0;
	}
	if ((pid = fork()) == 0) {
		int null = open("/dev/null", O_RDWR);
		dup2(null, 0);
		dup2(null, 1);
		dup2(null, 2);
		dup2(sp[0], 3);
		execv(bin, argv);
		_exit(127);
	}
	close(sp[0]);
	close(sp[1]);
	if (pid < 0) {
		snprintf(why, len, "fork: %s", strerror(errno));
		return 0;
	}
	for (int i = 0; i < 200; i++) {
		if (waitpid(pid, &status, WNOHANG) == pid) {
			if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
				return 1;
			snprintf(why, len, "%.200s failed a trial run (exit status "
			    "%d)", bin, WIFEXITED(status) ? WEXITSTATUS(status) :
			    128 + WTERMSIG(status));
			return 0;
		}
		poll(NULL, 0, 10);
	}
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	snprintf(why, len, "%.200s did not finish a trial run in 2 s", bin);
	return 0;
}

/* --nat MODE: "auto", "passt" or "slirp".  -1 with err when passt is
 * asked for and cannot be had. */
int
nat_setup(const char *mode, char *err, size_t errlen)
{
	char bin[PATH_MAX], why[256] = "";

	passt[0] = '\0';
	if (strcmp(mode, "slirp") == 0) {
		snprintf(nat_why, sizeof(nat_why), "--nat slirp");
		return 0;
	}
	if (find_passt(bin, sizeof(bin)) < 0)
		snprintf(why, sizeof(why), "passt is not installed (Debian's "
		    "package passt)");
	else if (passt_works(bin, why, sizeof(why)))
		snprintf(passt, sizeof(passt), "%s", bin);
	if (strcmp(mode, "passt") == 0 && !passt[0]) {
		snprintf(err, errlen, "--nat passt: %s", why);
		return -1;
	}
	snprintf(nat_why, sizeof(nat_why), "%s", passt[0] ? passt : why);
	log_info("NAT: %s (%s)", passt[0] ? "passt" : "QEMU's slirp", nat_why);
	return 0;
}

int
nat_uses_passt(void)
{
	return passt[0] != '\0';
}

json_t *
nat_host_json(void)
{
	return json_pack("{s:s, s:s}", "backend", passt[0] ? "passt" : "slirp",
	    "reason", nat_why);
}

static void
passt_pidfile(const struct vm *vm, int nic, char *buf, size_t len)
{
	char f[32];

	snprintf(f, sizeof(f), "passt%d.pid", nic);
	vm_path(vm, f, buf, len);
}

/* The log passt writes, as QEMU's user, in QEMU's own directory. */
static void
passt_log(const struct vm *vm, int nic, char *buf, size_t len)
{
	snprintf(buf, len, "%s/qemu/passt%d.log", vm->dir, nic);
}

/* A passt of ours, watched so that its exit is reaped and logged. */
struct passt_watch {
	struct proc_watch *watch;
	char		 vm[SPEC_NAME_MAX + 1];
	int		 nic;
};

static void
passt_exited(pid_t pid, int status, void *arg)
{
	struct passt_watch *w = arg;
	char how[128];

	proc_status_str(status, how, sizeof(how));
	log_info("%s: NIC %d: passt pid %d %s", w->vm, w->nic, (int)pid, how);
	proc_watch_free(w->watch);
	free(w);
}

/*
 * passt for NIC nic of vm, on fd (its end of the pair; closed by the
 * caller), in the cgroups and as the user its QEMU will have.
 */
int
nat_passt_spawn(const struct vm *vm, int nic, int fd, char *const *cgroups,
    const struct proc_cred *cred, char *err, size_t errlen)
{
	const struct spec_nic *n = &vm->spec.nics[nic];
	char pidfile[PATH_MAX], log[PATH_MAX], fw[SPEC_MAX_FORWARDS][64];
	char *argv[32 + 2 * SPEC_MAX_FORWARDS];
	int argc = 0;
	pid_t pid;

	passt_pidfile(vm, nic, pidfile, sizeof(pidfile));
	passt_log(vm, nic, log, sizeof(log));
	argv[argc++] = passt;
	argv[argc++] = "-f";		/* ours to watch: no daemon */
	argv[argc++] = "-1";		/* quit when QEMU's end closes */
	argv[argc++] = "--fd";
	argv[argc++] = "3";
	argv[argc++] = "--log-file";
	argv[argc++] = log;
	argv[argc++] = "-a";
	argv[argc++] = "10.0.2.15";
	argv[argc++] = "-n";
	argv[argc++] = "24";
	argv[argc++] = "-g";
	argv[argc++] = "10.0.2.2";
	argv[argc++] = "-D";
	argv[argc++] = "10.0.2.3";
	argv[argc++] = "--dns-forward";
	argv[argc++] = "10.0.2.3";
	for (int k = 0; k < n->nforwards; k++) {
		const struct spec_forward *f = &n->forwards[k];
		argv[argc++] = strcmp(f->proto, "udp") == 0 ? "-u" : "-t";
		snprintf(fw[k], sizeof(fw[k]), "%s/%d:%d", f->host_addr,
		    f->host_port, f->guest_port);
		argv[argc++] = fw[k];
	}
	argv[argc] = NULL;
	struct proc_spawn sp = {
		.argv = argv,
		.pidfile = pidfile,
		.fds = &fd,
		.nfds = 1,
		.cgroups = cgroups,
		.cred = cred,
	};
	if ((pid = proc_spawn_detached(&sp)) < 0) {
		snprintf(err, errlen, "passt: fork: %s", strerror(errno));
		return -1;
	}
	log_info("%s: NIC %d: passt started, pid %d", vm->spec.name, nic,
	    (int)pid);
	struct passt_watch *w = calloc(1, sizeof(*w));
	if (w != NULL) {
		snprintf(w->vm, sizeof(w->vm), "%s", vm->spec.name);
		w->nic = nic;
		if ((w->watch = proc_watch_new(vmgrd->base, pid, passt_exited,
		    w)) == NULL)
			free(w);
	}
	return 0;
}

/* The pid of NIC nic's passt if it still runs, else 0. */
static pid_t
passt_pid(const struct vm *vm, int nic)
{
	char pidfile[PATH_MAX], log[PATH_MAX], *s;
	const char *args[] = { "--log-file", log, NULL };
	pid_t pid;

	passt_pidfile(vm, nic, pidfile, sizeof(pidfile));
	if ((s = read_file_private(pidfile, 32, NULL)) == NULL)
		return 0;
	pid = (pid_t)strtol(s, NULL, 10);
	free(s);
	passt_log(vm, nic, log, sizeof(log));
	return pid > 0 && proc_cmdline_has(pid, args) ? pid : 0;
}

/* NIC nic's NAT: "passt" or "slirp", for a running VM. */
const char *
nat_backend(const struct vm *vm, int nic)
{
	char pidfile[PATH_MAX];

	passt_pidfile(vm, nic, pidfile, sizeof(pidfile));
	return access(pidfile, F_OK) == 0 ? "passt" : "slirp";
}

/* QEMU is gone: so are its passts (they quit on their own; make sure). */
void
nat_stop(const struct vm *vm)
{
	char pidfile[PATH_MAX];
	pid_t pid;

	for (int i = 0; i < vm->spec.nnics; i++) {
		if (strcmp(vm->spec.nics[i].network, "nat") != 0)
			continue;
		if ((pid = passt_pid(vm, i)) > 0)
			kill(pid, SIGTERM);
		passt_pidfile(vm, i, pidfile, sizeof(pidfile));
		unlink(pidfile);
	}
}
