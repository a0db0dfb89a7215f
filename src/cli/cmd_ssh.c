/*
 * cmd_ssh.c - `vmgr ssh NAME [-- ARGS...]`: ssh to the VM as its
 * cloud-init user, the way vmgrd says it is reached (the VM object's
 * "ssh": a forward to port 22, or an address on a bridge).
 */
#include "cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int
cmd_ssh(int argc, char **argv)
{
	const char *name = NULL, *user = NULL;
	char path[256], port[16], dest[256];
	json_t *vm, *ssh;
	int i, rc;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--") == 0) {
			i++;
			break;
		}
		if (strcmp(argv[i], "--user") == 0 && i + 1 < argc)
			user = argv[++i];
		else if (argv[i][0] == '-')
			return usage_error("ssh", "unknown option \"%s\" (ssh's own "
			    "options go after --)", argv[i]);
		else if (name == NULL)
			name = argv[i];
		else
			break;	/* the command, without a -- */
	}
	if (name == NULL)
		return usage_error("ssh", "give a VM name");
	snprintf(path, sizeof(path), "/v1/vms/%s", name);
	if ((vm = api_get(path, &rc)) == NULL)
		return rc;
	if ((ssh = json_object_get(vm, "ssh")) == NULL) {
		fprintf(stderr, "vmgr ssh: %s has no way in for ssh: give it a "
		    "forward to its port 22 (vmgr create %s ... --forward "
		    "tcp:2222:22) or a NIC on a bridge network; cloud-init makes "
		    "its user (--user, --ssh-key)\n", name, name);
		json_decref(vm);
		return 1;
	}
	if (strcmp(jstr(vm, "state"), "running") != 0)
		fprintf(stderr, "vmgr ssh: %s is %s; its sshd answers only while "
		    "it runs\n", name, jstr(vm, "state"));
	snprintf(port, sizeof(port), "%lld", (long long)json_integer_value(
	    json_object_get(ssh, "port")));
	snprintf(dest, sizeof(dest), "%s@%s", user ? user : jstr(ssh, "user"),
	    jstr(ssh, "host"));
	json_decref(vm);

	/*
	 * The VM's host key is not checked: it is made at its first boot and
	 * reached through this host (a loopback forward or a local bridge).
	 */
	char *args[64 + 16];
	int n = 0;
	args[n++] = "ssh";
	args[n++] = "-p";
	args[n++] = port;
	args[n++] = "-o";
	args[n++] = "StrictHostKeyChecking=no";
	args[n++] = "-o";
	args[n++] = "UserKnownHostsFile=/dev/null";
	args[n++] = "-o";
	args[n++] = "LogLevel=ERROR";
	args[n++] = "-o";
	args[n++] = "ConnectTimeout=10";
	/* ssh's own options (after --) come before the destination. */
	for (; i < argc && argv[i][0] == '-' && n < 62; i++) {
		args[n++] = argv[i];
		/* ssh's options that take the next word as their value */
		if (strlen(argv[i]) == 2 && strchr("BbcDEeFIiJLlmOoPpQRSWw",
		    argv[i][1]) && i + 1 < argc)
			args[n++] = argv[++i];
	}
	args[n++] = dest;
	for (; i < argc && n < 64 + 14; i++)
		args[n++] = argv[i];
	args[n] = NULL;
	fflush(stdout);
	execvp("ssh", args);
	fprintf(stderr, "vmgr ssh: cannot run ssh: %s (install openssh-client)\n",
	    strerror(errno));
	return 1;
}
