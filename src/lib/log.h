/*
 * log.h - the daemon's log: to stderr in the foreground, to the state
 * dir's vmgrd.log otherwise.  log_warn() appends strerror(errno); log_warnx()
 * does not.  fatal() is for states nothing can go on from.
 */
#ifndef VMGR_LOG_H
#define VMGR_LOG_H

#include <stdio.h>

void	log_init(FILE *out, int verbose);
void	log_info(const char *, ...) __attribute__((format(printf, 1, 2)));
void	log_debug(const char *, ...) __attribute__((format(printf, 1, 2)));
void	log_warn(const char *, ...) __attribute__((format(printf, 1, 2)));
void	log_warnx(const char *, ...) __attribute__((format(printf, 1, 2)));
void	fatal(const char *, ...) __attribute__((format(printf, 1, 2), noreturn));
void	fatalx(const char *, ...) __attribute__((format(printf, 1, 2), noreturn));

#endif
