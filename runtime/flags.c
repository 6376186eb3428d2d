/* flags.c: how every lln command reads its flags.
 *
 * One reader over getopt_long for llnc, its runtime commands (train, eval,
 * plot, data), standalone certifiers and trainers, so that they all agree:
 * `--flag value` and `--flag=value` are the same, a flag must be spelt in
 * full (getopt_long's prefix matching would make `--epoch` mean `--epochs`
 * silently, and a new flag could change what an old prefix means), a
 * misspelt flag gets the closest real one as a suggestion, and a usage
 * error prints "PROG: ..." and gives exit status 2.  Non-flag arguments are
 * returned in order (getopt's "-" mode), so a command decides itself how
 * many it takes.  The edit distance behind the suggestions is also the one
 * the .lln checker (compiler/sema.c) and the weights reader (the closest
 * tensor name, safetensors.c) use.
 */
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rt.h"

int rt_edit_distance(const char *a, const char *b)
{
	enum { MAX = 256 };
	size_t n = strlen(a), m = strlen(b);
	int stack[MAX + 1], *row = m < MAX ? stack : malloc((m + 1) * sizeof *row);
	if (!row || n >= INT_MAX || m >= INT_MAX) {
		if (row != stack)
			free(row);
		return INT_MAX;
	}
	for (size_t j = 0; j <= m; j++)
		row[j] = (int)j;
	for (size_t i = 1; i <= n; i++) {
		int diag = row[0];
		row[0] = (int)i;
		for (size_t j = 1; j <= m; j++) {
			int up = row[j];
			int best = diag + (a[i - 1] != b[j - 1]);
			if (up + 1 < best)
				best = up + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			row[j] = best;
			diag = up;
		}
	}
	int d = row[m];
	if (row != stack)
		free(row);
	return d;
}

/* Within edit distance 2, and less than the shorter name's length: a
 * one-letter name is otherwise "close" to every other one-letter name. */
int rt_closest(const char *name, const char *const *cands, int n)
{
	int best = -1, bd = 3;
	for (int i = 0; i < n; i++) {
		if (!cands[i])
			continue;
		int d = rt_edit_distance(name, cands[i]);
		size_t shorter = strlen(name) < strlen(cands[i]) ? strlen(name) : strlen(cands[i]);
		if (d < bd && (size_t)d < shorter) {
			bd = d;
			best = i;
		}
	}
	return best;
}

void rt_flags_init(rt_flags *f, const rt_flag *flags, int n, int argc, char **argv)
{
	memset(f, 0, sizeof *f);
	f->flags = flags;
	f->n = n;
	f->argc = argc;
	f->argv = argv;
	f->prog = argc > 0 && argv[0] ? argv[0] : "lln";
}

void rt_flags_done(rt_flags *f)
{
	free(f->longopts);
	f->longopts = NULL;
}

static int usage(rt_flags *f, const char *fmt, const char *a, const char *b)
{
	fprintf(stderr, "%s: ", f->prog);
	fprintf(stderr, fmt, a, b);
	fprintf(stderr, " (see --help)%s\n", f->context ? f->context : "");
	return RT_FLAG_ERROR;
}

/* The flag named by argv element s ("--epoch=3" names "epoch"), by exact
 * name; -1 if none. */
static int lookup(const rt_flags *f, const char *s, size_t len)
{
	for (int i = 0; i < f->n; i++)
		if (strlen(f->flags[i].name) == len && !strncmp(f->flags[i].name, s, len))
			return i;
	return -1;
}

static int unknown(rt_flags *f, const char *arg)
{
	size_t len = strcspn(arg + 2, "=");
	char name[128];
	snprintf(name, sizeof name, "%.*s", (int)(len < 100 ? len : 100), arg + 2);
	const char *cands[256];
	int n = f->n < 256 ? f->n : 256;
	for (int i = 0; i < n; i++)
		cands[i] = f->flags[i].name[0] != '-' ? f->flags[i].name : NULL;
	int k = rt_closest(name, cands, n);
	if (k >= 0) {
		char sug[160];
		snprintf(sug, sizeof sug, "%s", f->flags[k].name);
		return usage(f, "unknown option '--%s'; did you mean '--%s'?", name, sug);
	}
	return usage(f, "unknown option '%s'%s", arg, "");
}

int rt_flags_next(rt_flags *f)
{
	if (!f->longopts) {
		f->longopts = calloc((size_t)f->n + 1, sizeof(struct option));
		if (!f->longopts) {
			fprintf(stderr, "%s: out of memory\n", f->prog);
			return RT_FLAG_ERROR;
		}
		/* "-": non-flags in order; ":": a missing value reported as such */
		size_t k = 0;
		f->shortopts[k++] = '-';
		f->shortopts[k++] = ':';
		struct option *lo = f->longopts;
		for (int i = 0; i < f->n; i++) {
			const rt_flag *g = &f->flags[i];
			if (g->name[0] == '-') {
				if (k + 3 < sizeof f->shortopts) {
					f->shortopts[k++] = g->name[1];
					if (g->value)
						f->shortopts[k++] = ':';
				}
			} else {
				*lo++ = (struct option){ g->name, g->value ? required_argument : no_argument, NULL, 256 + i };
			}
		}
		f->shortopts[k] = 0;
		optind = 0;   /* glibc: start over, whatever was parsed before */
		opterr = 0;
	}
	if (f->rest)
		return optind < f->argc ? (f->value = f->argv[optind++], RT_FLAG_ARG) : RT_FLAG_END;
	const char *next = optind >= 1 && optind < f->argc ? f->argv[optind] : NULL;
	if (optind == 0 && f->argc > 1)
		next = f->argv[1];
	if (next && !strcmp(next, "--")) {
		f->rest = true;
		optind = optind ? optind + 1 : 2;
		return rt_flags_next(f);
	}
	if (next && next[0] == '-' && next[1] == '-' && next[2] && lookup(f, next + 2, strcspn(next + 2, "=")) < 0)
		return unknown(f, next);
	int c = getopt_long(f->argc, f->argv, f->shortopts, f->longopts, NULL);
	f->value = optarg;
	const char *spelt = f->argv[optind - 1 > 0 ? optind - 1 : 0];
	if (c == -1)
		return RT_FLAG_END;
	if (c == 1)
		return RT_FLAG_ARG;
	if (c == ':') {
		char name[128];
		if (optopt >= 256)
			snprintf(name, sizeof name, "--%s", f->flags[optopt - 256].name);
		else
			snprintf(name, sizeof name, "-%c", optopt);
		fprintf(stderr, "%s: %s needs a value%s\n", f->prog, name, f->context ? f->context : "");
		return RT_FLAG_ERROR;
	}
	if (c == '?') {
		if (optopt >= 256) {
			char name[128];
			snprintf(name, sizeof name, "--%s", f->flags[optopt - 256].name);
			return usage(f, "%s takes no value, got '%s'", name, spelt);
		}
		char s[3] = { '-', (char)optopt, 0 };
		return usage(f, "unknown option '%s'%s", optopt ? s : spelt, "");
	}
	int i = c >= 256 ? c - 256 : -1;
	for (int j = 0; i < 0 && j < f->n; j++)
		if (f->flags[j].name[0] == '-' && f->flags[j].name[1] == c)
			i = j;
	if (i < 0)
		return usage(f, "unknown option '%s'%s", spelt, "");
	f->name = f->flags[i].name;
	return f->flags[i].id;
}

const char *rt_flag_spelling(const rt_flags *f, char *buf, size_t cap)
{
	snprintf(buf, cap, "%s%s", f->name[0] == '-' ? "" : "--", f->name);
	return buf;
}
