/*
 * stats.h - sample sets for the benchmark programs: collect milliseconds,
 * write {"n", "median_ms", "p90_ms", "min_ms", "max_ms", "samples_ms"}.
 */
#ifndef VMGR_BENCH_STATS_H
#define VMGR_BENCH_STATS_H

#include <jansson.h>

#define OPS_MAX	16

struct op {
	const char	*label;
	double		*ms;
	int		 n, cap;
};

struct ops {
	struct op	op[OPS_MAX];
	int		n;
};

void	 ops_add(struct ops *, const char *label, double ms);
json_t	*ops_json(struct ops *);	/* {"ops": {label: stats, ...}} */
int	 ops_write(struct ops *, const char *path);
double	 bench_now_ms(void);

#endif
