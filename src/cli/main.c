/*
 * main.c - vmgr, the command-line client: global options, the command
 * table and its help, and shared output helpers.
 */
#include "cli.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>


#include "../core/spec.h"
#include "../lib/util.h"

struct cli cli;

const struct command commands[] = {
	{ "host", cmd_host, "vmgr host",
	  "Show the host as vmgrd sees it: CPUs, memory, the accelerator (kvm\n"
	  "or tcg, and why), the QEMU version, the cgroup layout and how many\n"
	  "VMs are in each state.\n" },
	{ "list", cmd_list, "vmgr list",
	  "List every VM: name, state, vCPUs, memory, uptime and IP address (the\n"
	  "guest's own, as its agent reports it; else the one vmgr assigned on a\n"
	  "vmgr network).  With --json, an array of the same objects `vmgr info\n"
	  "--json` prints.\n" },
	{ "info", cmd_info, "vmgr info NAME",
	  "Show one VM: its state and why, its spec, and while QEMU runs its\n"
	  "pid, uptime and console socket; and what its guest agent reports:\n"
	  "connected since when, the OS, hostname, each NIC's addresses and the\n"
	  "file systems' use.  --json prints the API object (name, state,\n"
	  "state_reason, spec, pid, runtime, guest, ip, ...).\n" },
	{ "create", cmd_create,
	  "vmgr create NAME [--image IMAGE | --kernel FILE [--initrd FILE]]\n"
	  "                 [--cmdline ARGS] [--vcpus N] [--memory SIZE]\n"
	  "                 [--machine q35|pc] [--disk VOLUME|new:SIZE]...\n"
	  "                 [--nic nat|NETWORK[,mac-filter=off]]...\n"
	  "                 [--forward tcp|udp:[HOSTADDR:]HOSTPORT:GUESTPORT]...\n"
	  "                 [--policy fixed|dynamic|hybrid] [--priority 1..10] [--weight W]\n"
	  "                 [--min-memory SIZE] [--runtime DURATION] [--preemptible]\n"
	  "                 [--disk-size SIZE] [--ssh-key FILE]... [--user NAME]\n"
	  "                 [--password-file FILE] [--user-data FILE]\n"
	  "                 [--firmware bios|uefi] [--secure-boot]\n"
	  "                 [--cdrom FILE] [--boot disk,cdrom|cdrom,disk] [--autostart]\n"
	  "                 [--no-agent] [--no-freeze] [--vnc | --no-vnc]\n"
	  "       vmgr create -f SPEC.json [NAME]",
	  "Define a VM (it starts in state created).  SIZE takes M, G or T\n"
	  "(128M, 1G); a plain number is MiB.  --image tiny selects the\n"
	  "built-in guest, which boots its kernel directly.  --image NAME of a\n"
	  "disk image (see `vmgr help image`) gives the VM a linked clone of it,\n"
	  "NAME-root, as its first disk (--disk-size grows it; cloud-init grows\n"
	  "the file system), booted by SeaBIOS, or OVMF with --firmware uefi\n"
	  "(--secure-boot: Secure Boot with Microsoft's keys; the default is what\n"
	  "the image can boot, BIOS when both).  Such a VM gets a cloud-init\n"
	  "seed: its user (--user, default vmgr, with sudo), the keys of\n"
	  "--ssh-key .pub files, --password-file (a crypt hash, or a password\n"
	  "hashed here; without one the password is locked), --user-data (your\n"
	  "own #cloud-config, merged after vmgr's), its name as hostname, and\n"
	  "each NIC's address.  --cdrom attaches an ISO read-only; firmware\n"
	  "boots the disk and then the cdrom unless --boot cdrom,disk.\n"
	  "--disk new:SIZE adds a new qcow2 volume named\n"
	  "NAME-diskN, deleted with the VM; --disk VOLUME attaches an existing\n"
	  "volume (see `vmgr help volume`), which stays when the VM is deleted.\n"
	  "--nic nat adds a virtio NIC on QEMU's user-mode NAT; --nic NETWORK\n"
	  "one on a vmgr network.  On an isolated network a NIC may only send\n"
	  "from its own MAC (other frames are dropped and counted as spoofed\n"
	  "in `vmgr stats`); ,mac-filter=off lets it use others (a bridge or\n"
	  "VMs nested in the guest).\n"
	  "Every VM gets a channel for the QEMU guest agent (a guest that runs\n"
	  "qemu-guest-agent, as images do, is then seen from inside: see `vmgr\n"
	  "help exec`); --no-agent leaves it out.  --no-freeze: snapshots and\n"
	  "backups never freeze the guest's file systems through it.\n"
	  "--forward tcp:8080:80 forwards host port 8080 (on 127.0.0.1; give\n"
	  "0.0.0.0:8080:80 to expose it) to the guest's port 80, on the last\n"
	  "--nic (a NAT NIC is added when there is none).  A port another VM\n"
	  "forwards is refused at create; one that is busy on the host, at\n"
	  "start.\n"
	  "-f reads a JSON spec (see docs/API.md; \"-\" reads stdin); unknown\n"
	  "fields are refused.  Defaults: 1 vCPU, 128 MiB, q35, policy fixed,\n"
	  "priority 5, weight 1, minimum memory half the memory.  A VM that\n"
	  "could never fit the host is refused.\n" },
	{ "start", cmd_action, "vmgr start NAME",
	  "Start a VM.  When the scheduler admits it at once, QEMU is spawned\n"
	  "and the guest runs when this returns; when the host is full, the VM\n"
	  "is queued and this prints its place and what it waits for (exit 0).\n"
	  "From saved, the guest continues where it was saved.  Works from\n"
	  "created, saved and crashed.\n" },
	{ "save", cmd_action, "vmgr save NAME",
	  "Suspend a running or paused VM to disk: its memory and device state\n"
	  "go to a file in its directory and QEMU ends (state saved).  `vmgr\n"
	  "start` brings the guest back where it was.  A full disk fails the\n"
	  "save with 507 and the VM keeps running.\n" },
	{ "set", cmd_set,
	  "vmgr set NAME [--priority 1..10] [--weight W] [--policy fixed|dynamic|hybrid]\n"
	  "                [--min-memory SIZE] [--runtime DURATION] [--[no-]preemptible]\n"
	  "                [--vcpus N] [--memory SIZE] [--[no-]autostart]\n"
	  "                [--ssh-key FILE] [--cdrom FILE | --eject]",
	  "Change a VM's resources and scheduling.  Priority, weight, policy and\n"
	  "minimum take effect at once on a running VM (its cgroup limits and\n"
	  "balloon follow); --vcpus and --memory only while it is stopped.\n"
	  "--autostart: start it when vmgrd first starts after the host boots.\n"
	  "--ssh-key adds the keys of a .pub file to its cloud-init user, for its\n"
	  "next boot (the seed changes, so cloud-init applies it).  --eject takes\n"
	  "out its ISO, at once on a running VM; --cdrom inserts one while it\n"
	  "is stopped.\n" },
	{ "queue", cmd_queue, "vmgr queue",
	  "The scheduler's queue in policy order: each VM's position, what it\n"
	  "waits for and its expected admission (from declared runtimes), and\n"
	  "the admitted VMs with their share of CPU and memory.\n" },
	{ "scheduler", cmd_scheduler,
	  "vmgr scheduler [show | set [--policy fcfs|sjf|priority|rr] [--quantum DURATION]]",
	  "Show or change the scheduling policy.  fcfs: arrival order; sjf:\n"
	  "shortest declared runtime first; priority: highest first; rr: like\n"
	  "fcfs, and preemptible VMs are preempted after a slice of QUANTUM\n"
	  "vCPU-seconds (pause when CPU is short, save when memory is) so\n"
	  "queued ones get their turn.  The choice survives vmgrd restarts.\n" },
	{ "pause", cmd_action, "vmgr pause NAME",
	  "Pause a running VM's vCPUs (QEMU keeps its memory).\n" },
	{ "resume", cmd_action, "vmgr resume NAME",
	  "Resume a paused VM.\n" },
	{ "shutdown", cmd_action,
	  "vmgr shutdown NAME [--method auto|agent|acpi] [--timeout DURATION] [--no-wait]",
	  "Ask the guest to power off and wait until it has (state created):\n"
	  "through its guest agent (guest-shutdown) when the agent answers, else\n"
	  "by pressing the ACPI power button.  --method agent insists on the\n"
	  "agent (409 no_agent without one), acpi on the button.  After --timeout\n"
	  "(default: vmgrd's, 120s) QEMU is stopped by force.  --no-wait returns\n"
	  "at once, in state stopping.  A paused VM is resumed first so the\n"
	  "guest can react (and gets the button).  The state's reason says which\n"
	  "way it went: \"guest powered off (guest agent)\" or \"(ACPI button)\".\n" },
	{ "exec", cmd_exec,
	  "vmgr exec NAME [--timeout DURATION] [--env NAME=VALUE]... [--stdin] -- COMMAND [ARGS...]",
	  "Run a command in the guest through its agent (guest-exec) and wait for\n"
	  "it: its output is printed (standard output and error apart, 1 MiB of\n"
	  "each at most) and vmgr exits with its exit status (128+N when signal\n"
	  "N ended it).  COMMAND is a program's path or a name on the guest's\n"
	  "PATH, run as the agent's user (root) with no shell: give sh -c '...'\n"
	  "for one.  --stdin sends vmgr's standard input to it (6 MiB at most).\n"
	  "After --timeout (default 60s) vmgr exits 124 and says so; the command\n"
	  "goes on in the guest.  Exit 125: it could not be run (409 no_agent\n"
	  "when the agent is not connected).\n" },
	{ "freeze", cmd_freeze, "vmgr freeze NAME [--timeout DURATION]",
	  "Freeze the running guest's file systems through its agent\n"
	  "(guest-fsfreeze-freeze), for a snapshot taken by other means (of the\n"
	  "storage under the state dir, say).  vmgrd thaws them after --timeout\n"
	  "(default 60s, at most 1h) if `vmgr thaw` has not come first, and\n"
	  "whenever the agent or vmgrd restarts meanwhile.  Writes in the guest\n"
	  "wait while it is frozen.  vmgr's own snapshots and backups freeze by\n"
	  "themselves (see `vmgr help backup`).\n" },
	{ "thaw", cmd_freeze, "vmgr thaw NAME",
	  "Thaw the guest's file systems (guest-fsfreeze-thaw).\n" },
	{ "screenshot", cmd_screenshot, "vmgr screenshot NAME FILE.png",
	  "Write a PNG of the VM's screen now (QMP screendump): the firmware, a\n"
	  "boot loader, an installer, a desktop.  The VM needs a graphical\n"
	  "console: VMs that boot through firmware get one by default (VGA);\n"
	  "`vmgr create --vnc` gives one to others, --no-vnc takes it away.\n" },
	{ "vnc", cmd_vnc, "vmgr vnc NAME [--port N] [--once]",
	  "Serve the VM's graphical console to a VNC viewer: vmgr listens on\n"
	  "127.0.0.1 (a free port, printed; --port N to choose) and relays each\n"
	  "connection to the VM's VNC display, which QEMU opens on no port of\n"
	  "its own (vmgrd hands it each client).  Runs until Ctrl-C; --once ends\n"
	  "after the first viewer leaves.  Reach it from elsewhere through ssh\n"
	  "-L, never by exposing the port.\n" },
	{ "set-password", cmd_set_password,
	  "vmgr set-password NAME USER [--password-file FILE]",
	  "Set USER's password in the running guest through its agent\n"
	  "(guest-set-user-password).  The password is read from the terminal\n"
	  "(twice, not echoed), from standard input, or from FILE's first line,\n"
	  "and hashed here (SHA-512 crypt): it never leaves in clear.  A crypt\n"
	  "hash given instead is used as it is.\n" },
	{ "stop", cmd_action, "vmgr stop NAME",
	  "Stop a VM by force: QEMU ends now, the guest is not asked.  From\n"
	  "crashed or saved it only resets the state to created.\n" },
	{ "delete", cmd_delete, "vmgr delete NAME",
	  "Delete a VM that is not running, with its disks and logs.\n" },
	{ "console", cmd_console, "vmgr console NAME [--log [--tail N]]",
	  "Attach to the VM's serial console.  On a terminal it is interactive;\n"
	  "Ctrl-] detaches.  With stdin not a terminal, stdin is sent to the\n"
	  "guest, the guest's output is copied to stdout, and vmgr exits soon\n"
	  "after end of input (--linger DURATION, default 1s).  --log prints\n"
	  "the console log of the current (or last) run instead; --tail N only\n"
	  "its last N lines.\n" },
	{ "events", cmd_events,
	  "vmgr events [NAME] [--since SEQ] [--limit N] [--follow]",
	  "Show lifecycle events: sequence, time, VM, from -> to, the event and\n"
	  "its reason.  --follow keeps printing new ones as they happen.\n" },
	{ "stats", cmd_stats, "vmgr stats NAME [--history DURATION]",
	  "What a VM uses, from vmgrd's sampler (every second by default): CPU\n"
	  "percent of one core and CPU seconds of its QEMU, vCPUs, memory (RSS,\n"
	  "balloon where known), and per disk the bytes and requests read and\n"
	  "written.  NIC counters are absent: QEMU's user-mode NAT keeps none.\n"
	  "--history 10m shows the last 10 minutes as a small chart (an hour is\n"
	  "kept); --json prints the samples.  Samples whose disk counters QEMU\n"
	  "did not answer for in time are marked stale.\n" },
	{ "top", cmd_top, "vmgr top [--interval DURATION] [--once]",
	  "Every running VM, busiest first, refreshed every 2 s; q quits.  Not on\n"
	  "a terminal (or with --once) it prints one screen and exits.\n" },
	{ "network", cmd_network,
	  "vmgr network create NAME [--subnet CIDR] [--type isolated|bridge]\n"
	  "                     [--bridge-name IFNAME | --adopt-bridge IFNAME]\n"
	  "                     [--nat] [--mtu BYTES] |\n"
	  "                     list | show NAME | delete NAME",
	  "Isolated networks: an Ethernet segment for VMs only (no root needed).\n"
	  "As root, vmgrd puts each on a Linux bridge in a network namespace of\n"
	  "its own, where guests keep their NICs' offloads; otherwise (or with\n"
	  "vmgrd --switch user) vmgrd switches the frames itself; `vmgr host`\n"
	  "says which.  VMs join with `vmgr create VM --nic NAME`; each NIC\n"
	  "gets the next free address of the subnet (default: the first free\n"
	  "10.N.0.0/24), which the built-in guest configures at boot.  VMs on\n"
	  "different networks cannot reach each other.  Their guests use a large\n"
	  "MTU (--mtu, default 65520; 1280 to 65520), set at boot like the\n"
	  "address: on vmgrd's own switch NICs have no offloads, so large frames\n"
	  "are what makes them fast.  Overlapping subnets are\n"
	  "refused, and so is deleting a network a VM uses.  --type bridge (root\n"
	  "only): a Linux bridge of vmgr's own (vmgrbrN, or --bridge-name IFNAME,\n"
	  "which must not exist) with the subnet's first address, a tap per NIC\n"
	  "and a DHCP server (dnsmasq) run by vmgrd; vmgr never touches an\n"
	  "interface it did not make.  --adopt-bridge IFNAME puts the VMs' taps\n"
	  "on a bridge the host has (its LAN): vmgr adds no address or DHCP\n"
	  "there and never deletes it.  --nat (a bridge of vmgr's own): the guests\n"
	  "reach out through the host's uplink, masqueraded, and nothing from\n"
	  "outside reaches them unasked; the rules are an nftables table of\n"
	  "vmgr's own (ip vmgr_ID), made and removed with the network, and vmgr\n"
	  "turns on net.ipv4.ip_forward.  `--nic nat` is something else: a NIC\n"
	  "of its own behind user-mode NAT (passt, or QEMU's slirp), no root.\n" },
	{ "volume", cmd_volume,
	  "vmgr volume create NAME --size SIZE [--from BASE] | import NAME FILE |\n"
	  "                    list | show NAME | resize NAME [+]SIZE | delete NAME",
	  "Disk volumes: qcow2 files in the state dir's pool.  create makes an\n"
	  "empty one; --from BASE makes a linked clone whose backing file is\n"
	  "BASE (a larger --size grows it).  A base with clones is read-only: it\n"
	  "cannot be attached, resized or deleted until its clones are gone, and\n"
	  "a volume a VM uses cannot become a base.  import copies a raw or\n"
	  "qcow2 FILE into the pool; an image whose header would make qemu-img\n"
	  "open another file (a backing or external data file, encryption, a\n"
	  "feature vmgr does not know) is refused.  SIZE is as qemu-img takes\n"
	  "it (512M, 10G, 1.5G; a plain number is MiB).\n"
	  "resize only grows (+SIZE adds to the current size); a running VM's\n"
	  "volume is grown live and the guest sees the new size.  delete refuses\n"
	  "a volume a VM attaches.  Attach volumes with `vmgr create --disk`.\n" },
	{ "image", cmd_image,
	  "vmgr image import NAME FILE | build NAME [--recipe debian-12] [--rebuild] |\n"
	  "                   list | show NAME | delete NAME",
	  "Disk images to make VMs of (`vmgr create VM --image NAME`): read-only\n"
	  "volumes of the pool, each VM getting a linked clone (NAME-root, as large\n"
	  "as --disk-size) that boots through firmware, with cloud-init.  import\n"
	  "copies a bootable raw or qcow2 FILE (a distribution's cloud image) into\n"
	  "the pool once, checked as `vmgr volume import` checks, and reads its\n"
	  "partition table: an EFI system partition means UEFI can boot it, a\n"
	  "BIOS boot partition or MBR boot code means SeaBIOS can (firmware\n"
	  "bios, uefi or any; none is refused at create).  build makes a Debian 12\n"
	  "cloud image from the Debian archive (mmdebstrap; no loop device or\n"
	  "mount; a few minutes) and prints each step; the result is cached and\n"
	  "reused until the recipe changes or --rebuild is given.  The built-in\n"
	  "kernel image \"tiny\" is listed too.  delete refuses an image that\n"
	  "VMs' disks are clones of.\n" },
	{ "ssh", cmd_ssh, "vmgr ssh NAME [--user USER] [-- SSH-ARGS... [COMMAND...]]",
	  "Log in to a VM with ssh as its cloud-init user, through its TCP\n"
	  "forward to port 22 (create it with --forward tcp:2222:22), else its\n"
	  "address on a bridge network.  Everything after -- goes to ssh: a\n"
	  "command to run, or ssh's own options (-i KEY, -t, -L ...).  The VM's\n"
	  "host key is not checked or recorded: it is made at the VM's first\n"
	  "boot, and the VM is reached through this host (a loopback forward\n"
	  "or a local bridge), so a new VM of an old name never trips your\n"
	  "known_hosts.\n" },
	{ "snapshot", cmd_snapshot,
	  "vmgr snapshot create VM NAME [--memory] [--no-freeze] | list VM |\n"
	  "                      revert VM NAME |\n"
	  "                      delete VM NAME",
	  "Internal qcow2 snapshots of all of a VM's disks, taken at one instant.\n"
	  "A VM that runs keeps running.  --memory keeps the guest's RAM and\n"
	  "device state too (the VM must be running or paused): reverting to it\n"
	  "brings the running guest back to that moment, and it runs on.  A\n"
	  "snapshot of the disks alone is reverted with the VM stopped.  A disk\n"
	  "snapshot of a running guest with an agent freezes its file systems\n"
	  "around the instant (--no-freeze: not), as backups do.\n"
	  "Reverting drops the change tracking of backups: the next backup of\n"
	  "the VM must be a full one.\n" },
	{ "backup", cmd_backup,
	  "vmgr backup create VM [--incremental] [--store DIR] [--bwlimit RATE]\n"
	  "                    [--no-freeze] [--freeze-timeout DURATION] |\n"
	  "                    list [VM] |\n"
	  "                    show ID | verify ID | restore ID [--as NAME] |\n"
	  "                    delete ID | prune VM --keep N",
	  "Backups of a VM's disks, live (the guest is not paused) or stopped.\n"
	  "A running guest whose agent answers is frozen (its file systems\n"
	  "flushed and held) just around the instant the backup is taken, and\n"
	  "thawed right after, so the backup is consistent: its `consistency` is\n"
	  "filesystem.  Without an agent, with --no-freeze or agent.freeze off,\n"
	  "or when the freeze does not complete within --freeze-timeout (10s),\n"
	  "it goes on crash-consistent and says so (crash, with the reason); a\n"
	  "stopped VM's is stopped.\n"
	  "A full backup copies every disk; --incremental copies only what\n"
	  "changed since the VM's last backup, tracked by QEMU in the disks\n"
	  "themselves, so it stays incremental across VM and vmgrd restarts.\n"
	  "When the tracking is lost (QEMU killed, a snapshot reverted, a\n"
	  "restore) --incremental is refused and says so: take a full one.\n"
	  "A backup lives in DIR/VM/ID (default STATE/backups): one qcow2 per\n"
	  "disk (an incremental's backing file is the previous backup) and a\n"
	  "manifest with the spec and the SHA-256 of every file.  On a\n"
	  "terminal, create shows progress; --bwlimit 50M caps it at 50 MiB/s.\n"
	  "verify re-reads every file the backup needs: checksums and qemu-img\n"
	  "check; it names any damaged file and exits 1.  restore checks the\n"
	  "checksums first and refuses a damaged backup; it makes a new VM\n"
	  "(--as NAME, or the original name when that VM is gone) or replaces\n"
	  "the disks of the stopped VM of that name.  prune keeps the newest N\n"
	  "backups of VM, merging a kept incremental whose base goes, so every\n"
	  "kept backup still restores.  delete refuses a backup others build on.\n" },
	{ "remote", cmd_remote,
	  "vmgr remote add NAME URL --token-file FILE [--cacert FILE] |\n"
	  "                  list | show NAME | remove NAME",
	  "Other vmgrd hosts this vmgrd knows, by name.  URL is the remote\n"
	  "vmgrd's --listen: https://HOST[:PORT] (default port 8443) or\n"
	  "http://HOST[:PORT] for a listener without TLS.  --token-file is a\n"
	  "file holding the remote's token (its vmgrd --token-file); --cacert\n"
	  "a PEM file of the CA that signed its certificate (default: the\n"
	  "system's CAs).  The certificate must name the URL's host or address.\n"
	  "add checks that the remote answers with that token before keeping\n"
	  "it; vmgrd keeps the token (in its state dir, mode 0600) and never\n"
	  "prints it.  show asks the remote again and says whether it answers.\n"
	  "`vmgr --remote NAME COMMAND ...` runs a command on the remote through\n"
	  "this vmgrd (not console, display, ssh or a followed stream).\n" },
	{ "migrate", cmd_migrate,
	  "vmgr migrate NAME --to REMOTE [--max-downtime 300ms] [--bandwidth 1G]\n"
	  "                  [--auto-converge] [--timeout S] [--offline]\n"
	  "                  [--no-wait] |\n"
	  "                  NAME --cancel",
	  "Move the VM NAME, with its disks, to the vmgrd host REMOTE (`vmgr\n"
	  "remote add`); it goes on there with the same name, spec and MACs,\n"
	  "and this host forgets it.  A running or paused VM moves live: its\n"
	  "disks are copied while it runs, then its memory (pre-copy; the\n"
	  "guest's dirty rate is measured first, and a migration that does not\n"
	  "converge says so).  A stopped or saved VM moves offline (--offline\n"
	  "says so): its disk files byte for byte, snapshots included, a linked\n"
	  "clone's disk whole, its saved state (it resumes there where it was)\n"
	  "and UEFI variables.  A volume it attaches moves too and stays\n"
	  "attached.  Every stream is TLS with a key made for this migration.\n"
	  "--max-downtime bounds the guest's final pause (default 300ms);\n"
	  "--bandwidth caps the memory stream (bytes per second; no cap by\n"
	  "default); --auto-converge slows a guest that dirties memory faster\n"
	  "than the link moves it; --timeout fails a live migration whose\n"
	  "memory has not converged after S seconds (default 600): the guest\n"
	  "runs on here.  The command follows the migration to its end (a\n"
	  "progress line on a terminal) and prints its downtime, time and\n"
	  "bytes, or why it failed (exit 1); --no-wait returns at once.\n"
	  "--cancel stops it before the switch-over; the VM stays here.  If\n"
	  "either host or the link between them fails, the VM is on exactly\n"
	  "one of them.  Live, a VM with snapshots, a cdrom or UEFI firmware\n"
	  "is refused (stop or save it: it moves offline); post-copy is\n"
	  "refused (a cut link would lose the VM).  Backups stay here: the\n"
	  "next backup there is a full one.\n" },
	{ "migrations", cmd_migrations, "vmgr migrations [--json]",
	  "Every migration this host took part in (as source or destination),\n"
	  "oldest first: VM, from, to, mode, state, phase, downtime and total\n"
	  "time, and why one failed; --json adds setup, disk and memory figures,\n"
	  "the switch-over the guest felt, and a note when pre-copy did not\n"
	  "converge.\n" },
	{ "help", cmd_help, "vmgr help [COMMAND]",
	  "Show the commands, or how to use one.\n" },
	{ NULL, NULL, NULL, NULL },
};

const struct command *
command_find(const char *name)
{
	for (const struct command *c = commands; c->name; c++)
		if (strcmp(c->name, name) == 0)
			return c;
	return NULL;
}

static void
overview(FILE *out)
{
	fprintf(out,
"usage: vmgr [--state-dir DIR | --socket PATH] [--remote NAME] [--json]\n"
"            COMMAND [ARGS]\n"
"\n"
"Commands:\n");
	for (const struct command *c = commands; c->name; c++) {
		const char *nl = strchr(c->usage, '\n');
		fprintf(out, "  %.*s\n", (nl ? (int)(nl - c->usage) :
		    (int)strlen(c->usage)) - 5, c->usage + 5);
	}
	fprintf(out,
"\n"
"Global options (anywhere on the line):\n"
"  --state-dir DIR   talk to the vmgrd of DIR (default $VMGR_STATE_DIR,\n"
"                    /var/lib/vmgr for root, ~/.local/state/vmgr otherwise)\n"
"  --socket PATH     talk to vmgrd at this socket\n"
"  --remote NAME     run the command on remote NAME (`vmgr remote`), through\n"
"                    this vmgrd\n"
"  --json            print the API's JSON instead of tables\n"
"\n"
"Exit status: 0 done, 1 refused or failed, 2 usage error.\n"
"`vmgr help COMMAND` tells more.\n");
}

int
cmd_help(int argc, char **argv)
{
	const struct command *c;

	if (argc < 2) {
		overview(stdout);
		return 0;
	}
	if ((c = command_find(argv[1])) == NULL) {
		fprintf(stderr, "vmgr: no command \"%s\"\n", argv[1]);
		overview(stderr);
		return EXIT_USAGE;
	}
	printf("usage: %s\n\n%s", c->usage, c->help);
	return 0;
}

int
usage_error(const char *cmd, const char *fmt, ...)
{
	const struct command *c = command_find(cmd);
	va_list ap;

	fprintf(stderr, "vmgr %s: ", cmd);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nusage: %s\n", c ? c->usage : "vmgr help");
	return EXIT_USAGE;
}

int
print_api_error(long status, json_t *resp)
{
	json_t *e = json_object_get(resp, "error");
	const char *msg = json_string_value(json_object_get(e, "message"));
	const char *code = json_string_value(json_object_get(e, "code"));

	if (status < 0)
		return EXIT_REFUSED;	/* already reported */
	if (cli.json && resp)
		print_json(resp);
	fprintf(stderr, "vmgr: %s (%ld %s)\n", msg ? msg : "request failed",
	    status, code ? code : "error");
	return EXIT_REFUSED;
}

const char *
jstr(json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));

	return s ? s : "";
}

void
print_json(json_t *v)
{
	json_dumpf(v, stdout, JSON_INDENT(2));
	fputc('\n', stdout);
}

char *
fmt_mib(long long mib, char *buf, size_t len)
{
	if (mib >= 1024 && mib % 1024 == 0)
		snprintf(buf, len, "%lldG", mib / 1024);
	else
		snprintf(buf, len, "%lldM", mib);
	return buf;
}

int
cli_print(json_t *resp, void (*show)(json_t *))
{
	if (cli.json)
		print_json(resp);
	else
		show(resp);
	json_decref(resp);
	return 0;
}

/* A small text file given to an option, whole; NULL after saying why. */
char *
cli_option_file(const char *opt, const char *path, size_t max)
{
	size_t len = 0;
	char *text = read_file(path, max, &len);

	if (text == NULL) {
		fprintf(stderr, "vmgr: %s %s: %s\n", opt, path, errno ==
		    EFBIG ? "too large" : strerror(errno));
		return NULL;
	}
	if (strlen(text) != len) {
		fprintf(stderr, "vmgr: %s %s: not a text file\n", opt,
		    path);
		free(text);
		return NULL;
	}
	return text;
}

int
cli_show(const char *path, void (*show)(json_t *))
{
	json_t *resp;
	int rc;

	if ((resp = api_get(path, &rc)) == NULL)
		return rc;
	return cli_print(resp, show);
}

int
cli_delete(const char *path, const char *what, const char *name)
{
	json_t *resp;
	int rc;

	if ((resp = api_send("DELETE", path, NULL, 60, &rc)) == NULL)
		return rc;
	if (cli.json)
		print_json(resp);
	else
		printf("deleted %s %s\n", what, name);
	json_decref(resp);
	return 0;
}

int
cli_size(const char *s, uint64_t *bytes)
{
	char buf[40];
	size_t n = strspn(s, "0123456789");

	/* The CLI's rule: a plain number is MiB (the API's is bytes). */
	if (n > 0 && s[n] == '\0' && n < 20) {
		snprintf(buf, sizeof(buf), "%sM", s);
		s = buf;
	}
	return spec_size_parse(s, bytes);
}

char *
fmt_bytes(double v, char *buf, size_t len)
{
	static const char units[] = "BKMGTP";
	int u = 0;

	while (v >= 1024 && u < 5) {
		v /= 1024;
		u++;
	}
	snprintf(buf, len, u ? "%.1f%c" : "%.0f%c", v, units[u]);
	return buf;
}

char *
fmt_when(long long ms, char *buf, size_t len)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;

	if (ms <= 0 || localtime_r(&t, &tm) == NULL)
		snprintf(buf, len, "-");
	else
		strftime(buf, len, "%Y-%m-%d %H:%M:%S", &tm);
	return buf;
}

/*
 * Take the global options out of argv wherever they stand, so that
 * `vmgr info web --json` works as well as `vmgr --json info web`.
 */
static int
global_options(int *argcp, char **argv)
{
	const char *state_dir = NULL, *sock = NULL, *remote = NULL;
	int argc = *argcp, out = 1;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "--") == 0) {
			while (i < argc)
				argv[out++] = argv[i++];
			break;
		}
		if (strcmp(a, "--json") == 0) {
			cli.json = 1;
		} else if (strcmp(a, "--state-dir") == 0 || strcmp(a,
		    "--socket") == 0) {
			if (i + 1 >= argc) {
				fprintf(stderr, "vmgr: %s needs a value\n", a);
				return -1;
			}
			*(a[2] == 's' && a[3] == 't' ? &state_dir : &sock) =
			    argv[++i];
		} else if (strcmp(a, "--remote") == 0) {
			if (i + 1 >= argc) {
				fprintf(stderr, "vmgr: --remote needs a value\n");
				return -1;
			}
			remote = argv[++i];
		} else if (strncmp(a, "--remote=", 9) == 0) {
			remote = a + 9;
		} else if (strncmp(a, "--state-dir=", 12) == 0) {
			state_dir = a + 12;
		} else if (strncmp(a, "--socket=", 9) == 0) {
			sock = a + 9;
		} else
			argv[out++] = argv[i];
	}
	argv[out] = NULL;
	*argcp = out;
	if (remote) {
		if (!spec_name_valid(remote)) {
			fprintf(stderr, "vmgr: --remote: \"%.64s\" is not a "
			    "remote's name (see `vmgr remote list`)\n", remote);
			return -1;
		}
		snprintf(cli.remote, sizeof(cli.remote), "%s", remote);
	}
	if (sock)
		snprintf(cli.sock, sizeof(cli.sock), "%s", sock);
	else {
		char dir[4000];
		if (state_dir)
			snprintf(dir, sizeof(dir), "%s", state_dir);
		else if (default_state_dir(dir, sizeof(dir)) < 0) {
			fprintf(stderr, "vmgr: no state dir; use "
			    "--state-dir\n");
			return -1;
		}
		snprintf(cli.sock, sizeof(cli.sock), "%s/vmgrd.sock", dir);
	}
	return 0;
}

int
main(int argc, char **argv)
{
	const struct command *c;
	int rc;

	if (global_options(&argc, argv) < 0)
		return EXIT_USAGE;
	if (argc < 2) {
		overview(stderr);
		return EXIT_USAGE;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		overview(stdout);
		return 0;
	}
	if (strcmp(argv[1], "--version") == 0) {
		printf("vmgr 0.1.0\n");
		return 0;
	}
	if ((c = command_find(argv[1])) == NULL) {
		fprintf(stderr, "vmgr: no command \"%s\"; see `vmgr help`\n",
		    argv[1]);
		return EXIT_USAGE;
	}
	for (int i = 2; i < argc; i++)
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") ==
		    0) {
			printf("usage: %s\n\n%s", c->usage, c->help);
			return 0;
		}
	if (cli.remote[0] && (strcmp(c->name, "console") == 0 ||
	    strcmp(c->name, "display") == 0 || strcmp(c->name, "ssh") == 0)) {
		fprintf(stderr, "vmgr: %s is not available through --remote: "
		    "run it on %s's host\n", c->name, cli.remote);
		return EXIT_USAGE;
	}
	rc = c->run(argc - 1, argv + 1);
	return rc;
}
