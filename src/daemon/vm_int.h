/*
 * vm_int.h - what the files of the VM layer (vm*.c) share and nobody
 * else may use.  daemon.h holds what the VM layer offers the layers above.
 */
#ifndef VMGR_VM_INT_H
#define VMGR_VM_INT_H

#include "daemon.h"

#define STOP_GRACE_S	5	/* quit/SIGTERM before SIGKILL */
#define START_TIMEOUT_S	60	/* spawn to running, restores included */
#define SAVE_TIMEOUT_S	600	/* a save that takes longer is abandoned */
#define CONSOLE_MAX	(1 << 20)

/* vm.c: the VM object, its state, its waiters and its deadline */
void	 vm_changed(void);
const struct vm_mig_hooks *vm_mig_hooks(void);
struct vm	*vm_new(void);
void	 vm_free(struct vm *vm);
int	 vm_set_state(struct vm *vm, enum vm_event ev, const char *actor,
	    const char *fmt, ...) __attribute__((format(printf, 4, 5)));
int	 vm_refuse(const struct vm *vm, enum vm_event ev, struct api_err *);
int	 vm_need_qmp(const struct vm *vm, struct api_err *);
int	 vm_db_err(struct api_err *);
void	 vm_wait(struct vm *vm, struct parked *p, enum vm_op op);
int	 vm_park(struct vm *vm, struct api_call *c, enum vm_op op);
void	 vm_complete(struct vm *vm, enum vm_op op, int status,
	    const char *code, const char *fmt, ...)
	    __attribute__((format(printf, 5, 6)));
void	 vm_kill(struct vm *vm, int sig);
void	 vm_disarm(struct vm *vm);
void	 vm_arm(struct vm *vm, int seconds,
	    void (*fn)(evutil_socket_t, short, void *));
void	 vm_kill_now(evutil_socket_t fd, short what, void *arg);
void	 vm_force_off(struct vm *vm);
void	 vm_shutdown_timeout(evutil_socket_t fd, short what, void *arg);
void	 vm_remove_runtime_files(const struct vm *vm);
void	 vm_drop_saved_state(struct vm *vm);
void	 vm_qemu_log_tail(const struct vm *vm, char *buf, size_t len);

/* vm_save.c: save to disk (preemption is in daemon.h) */
int	 vm_do_save(struct api_call *c);
void	 vm_save_migration(struct vm *vm, const char *status);

/* vm_qemu.c: what QEMU says, and its exit */
extern const struct qmp_handlers vm_qmp_handlers;
void	 vm_qemu_exited(pid_t pid, int status, void *arg);

/* vm_spawn.c: QEMU's start */
const struct vm *vm_forward_owner(const struct spec_forward *,
	    const struct vm *self);
int	 vm_forwards_free(const struct vm *vm, char *err, size_t errlen);
/*
 * It boots a kernel directly (boot.kernel, or a kernel image such as
 * "tiny"), not firmware its disks: a disk image is always cloned as the
 * first disk.
 */
int	 vm_boots_kernel(const struct vm_spec *);
int	 vm_resolve_boot(const struct vm_spec *spec, char *kernel,
	    char *initrd, char **cmdline, char *err, size_t errlen);
int	 vm_spawn(struct vm *vm, char *err, size_t errlen);

#endif
