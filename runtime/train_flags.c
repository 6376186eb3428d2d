/* train_flags.c: the command lines of `train` and `eval`, read against the
 * settings table.
 *
 * Settings come from two lists: the defaults llnc derives from the .lln
 * file (one argument per line, any setting) and then the command line
 * (only its command's flags), which overrides them.  Both go through the
 * same reader (flags.c) and the same checks (settings.c), and every
 * setting starts from the table's default, so a value means the same
 * wherever it is written.  --help is the table too, with the values in
 * force.
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train.h"

static const size_t field_off[RT_NSETTINGS] = {
#define SETTING(id, flag, kind, lo, hi, open, choices, def, metavar, group, modes, field, help) \
	[RT_SET_##id] = offsetof(config, field),
#include "settings.def"
#undef SETTING
};

static const char from_file[] = " (in the settings from the .lln file)";

static bool in_defaults;   /* while reading the .lln file's settings, for messages */

int rt_usage_fail(const config *c, const char *fmt, ...)
{
	fprintf(stderr, "%s: ", c->prog);
	va_list ap;
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	if (in_defaults)
		fputs(from_file, stderr);
	fputc('\n', stderr);
	return 2;
}

static const char *dashes(int id)
{
	return rt_settings[id].flag[0] == '-' ? "" : "--";
}

static int bad_rule(const config *c, int id, double x, const char *v)
{
	char rule[64];
	if (rt_setting_in_range(id, x, rule, sizeof rule))
		return 0;
	return rt_usage_fail(c, "%s%s must be %s, got %s", dashes(id), rt_settings[id].flag, rule, v);
}

/* One value into its field. */
static int set_value(config *c, int id, const char *v)
{
	const rt_setting *s = &rt_settings[id];
	void *field = (char *)c + field_off[id];
	char *end;
	errno = 0;
	switch (s->kind) {
	case RT_SK_NUM: {
		double x = strtod(v, &end);
		if (end == v || *end || !isfinite(x))
			return rt_usage_fail(c, "%s%s takes a number, got '%s'", dashes(id), s->flag, v);
		if (bad_rule(c, id, x, v))
			return 2;
		*(double *)field = x;
		return 0;
	}
	case RT_SK_INT: {
		/* integral reals too (1e3), as in a .lln file */
		double x = strtod(v, &end);
		if (end == v || *end || !isfinite(x))
			return rt_usage_fail(c, "%s%s takes an integer, got '%s'", dashes(id), s->flag, v);
		if (x != floor(x) && x >= s->lo)
			return rt_usage_fail(c, "%s%s must be an integer, got %s", dashes(id), s->flag, v);
		if (bad_rule(c, id, x, v))
			return 2;
		*(int *)field = (int)x;
		return 0;
	}
	case RT_SK_SEED: {
		unsigned long long x = strtoull(v, &end, 10);
		if (v[0] < '0' || v[0] > '9' || *end || errno)
			return rt_usage_fail(c, "%s%s takes an integer from 0 to 18446744073709551615, got '%s'",
			                     dashes(id), s->flag, v);
		*(uint64_t *)field = x;
		return 0;
	}
	case RT_SK_CHOICE: {
		char alts[160];
		int k = rt_setting_choice(id, v, alts, sizeof alts);
		if (k < 0)
			return rt_usage_fail(c, "%s%s takes %s, got '%s'", dashes(id), s->flag, alts, v);
		*(int *)field = k;
		return 0;
	}
	case RT_SK_NORMS:
		if (rt_parse_norms(v, (int32_t *)field) != 0)
			return rt_usage_fail(c, "%s%s takes a comma-separated list of 1, 2, inf; got '%s'", dashes(id), s->flag, v);
		return 0;
	case RT_SK_TEXT:
		*(const char **)field = v;
		if (id == RT_SET_DATA)
			c->data_cli = !in_defaults;
		return 0;
	case RT_SK_LIST: {
		char err[RT_ERRLEN], flag[64];
		snprintf(flag, sizeof flag, "%s%s", dashes(id), s->flag);
		return rt_names_flag(field, flag, v, err) ? rt_usage_fail(c, "%s", err) : 0;
	}
	case RT_SK_SWITCH:
		*(bool *)field = true;
		return 0;
	}
	return 0;
}

/* Reads args[0..n) (args[0] the program); the defaults list may hold any
 * setting, the command line only its command's. */
static int parse_list(config *c, char **args, int n, bool defaults)
{
	rt_flag flags[RT_NSETTINGS + 1];
	int k = 0;
	for (int i = 0; i < RT_NSETTINGS; i++)
		if (defaults ? i != RT_SET_HELP : (rt_settings[i].modes & c->mode) != 0)
			flags[k++] = (rt_flag){ rt_settings[i].flag, rt_settings[i].kind != RT_SK_SWITCH, i };
	if (!defaults)
		flags[k++] = (rt_flag){ "-h", false, RT_SET_HELP };
	rt_flags f;
	rt_flags_init(&f, flags, k, n, args);
	f.prog = c->prog;
	f.context = defaults ? from_file : NULL;
	in_defaults = defaults;
	int rc = 0;
	for (int id; !rc && (id = rt_flags_next(&f)) != RT_FLAG_END;) {
		if (id == RT_FLAG_ERROR)
			rc = 2;
		else if (id == RT_FLAG_ARG)
			rc = rt_usage_fail(c, "unexpected argument '%s' (see --help)", f.value);
		else
			rc = set_value(c, id, f.value);
		if (!rc && c->help)
			break;
	}
	in_defaults = false;
	rt_flags_done(&f);
	return rc;
}

int rt_config_parse(config *c, int mode, const char *defaults, int argc, char **argv)
{
	memset(c, 0, sizeof *c);
	c->prog = argc > 0 && argv[0] ? argv[0] : mode == RT_MODE_EVAL ? "eval" : "train";
	c->mode = mode;
	c->argc = argc;
	c->argv = argv;
	c->loss = -1;
	for (int i = 0; i < RT_NSETTINGS; i++)
		if (rt_settings[i].def && set_value(c, i, rt_settings[i].def))
			return 70;   /* a table that contradicts itself */
	int rc = 0;
	if (defaults && defaults[0]) {
		c->dcopy = strdup(defaults);
		int n = 2;
		for (const char *p = defaults; *p; p++)
			n += *p == '\n';
		char **list = malloc(sizeof(char *) * (size_t)n);
		if (!c->dcopy || !list) {
			free(list);
			return rt_user_fail(c, "out of memory");
		}
		int k = 0;
		list[k++] = (char *)c->prog;
		for (char *save = NULL, *tok = strtok_r(c->dcopy, "\n", &save); tok; tok = strtok_r(NULL, "\n", &save))
			list[k++] = tok;
		list[k] = NULL;
		rc = parse_list(c, list, k, true);
		free(list);
	}
	if (!rc)
		rc = parse_list(c, argv, argc, false);
	c->opt.nesterov = c->nesterov;
	return rc;
}

void rt_config_free(config *c)
{
	free(c->dcopy);
	c->dcopy = NULL;
}

const char *rt_config_eval_data(const config *c)
{
	return c->data_cli ? c->data : c->test ? c->test : c->data;
}

bool rt_config_sigmoid(const rt_model *m, const config *c)
{
	return c->loss >= 0 ? c->loss == 1 : m->n_out == 1;
}

int rt_config_objective(const rt_model *m, config *c)
{
	const char *why;
	if (c->obj.kind == RT_OBJ_DISTANCE && (why = rt_distance_unsupported(c->distance_p)))
		return rt_usage_fail(c, "%s, got --p %s", why, rt_p_names[c->distance_p]);
	/* approximate ROLL estimates the mean over all neurons (docs/training.md) */
	if (c->obj.kind == RT_OBJ_ROLL && m->samples && c->obj.gamma != 100)
		return rt_usage_fail(c, "the model's roll(samples = %d) needs --gamma 100, got %g", m->samples,
		                     c->obj.gamma);
	bool sigmoid = rt_config_sigmoid(m, c);
	if (sigmoid != (m->n_out == 1))
		return rt_usage_fail(c, sigmoid ? "sigmoid_cross_entropy needs one output logit, the model has %d"
		                                : "cross_entropy needs at least 2 outputs, the model has %d",
		                     m->n_out);
	c->obj.sigmoid = sigmoid;
	return 0;
}

/* The value in force, for --help; NULL for a flag without one. */
static const char *value_text(const rt_model *m, const config *c, int id, char *buf, size_t cap)
{
	const rt_setting *s = &rt_settings[id];
	const void *field = (const char *)c + field_off[id];
	switch (s->kind) {
	case RT_SK_NUM: snprintf(buf, cap, "%g", *(const double *)field); break;
	case RT_SK_INT: snprintf(buf, cap, "%d", *(const int *)field); break;
	case RT_SK_SEED: snprintf(buf, cap, "%llu", (unsigned long long)*(const uint64_t *)field); break;
	case RT_SK_CHOICE:
		if (id == RT_SET_LOSS)
			snprintf(buf, cap, "%s", m ? rt_loss_names[rt_config_sigmoid(m, c)] : "from the model");
		else
			snprintf(buf, cap, "%s", s->choices[*(const int *)field]);
		break;
	case RT_SK_NORMS: {
		buf[0] = 0;
		for (int p = 0; p < RT_NNORMS; p++)
			if (*(const int32_t *)field & RT_NORM_BIT(p)) {
				size_t l = strlen(buf);
				snprintf(buf + l, cap - l, "%s%s", l ? "," : "", (const char *[]){ "1", "2", "inf" }[p]);
			}
		break;
	}
	case RT_SK_TEXT: {
		const char *v = *(const char *const *)field;
		if (id == RT_SET_DATA && c->mode == RT_MODE_EVAL)
			v = rt_config_eval_data(c);
		snprintf(buf, cap, "%s", v ? v : "(none)");
		break;
	}
	default: return NULL;
	}
	return buf;
}

static const char *group_title[RT_SG_COUNT] = {
	[RT_SG_DATA] = "data", [RT_SG_OBJECTIVE] = "objective", [RT_SG_OPTIMIZATION] = "optimization",
	[RT_SG_FILES] = "files", [RT_SG_REPORT] = "report",
	[RT_SG_DISTORTION] = "gradient distortion of the true class's logit (docs/robustness.md)",
};

void rt_config_usage(FILE *f, const rt_model *m, const config *c)
{
	if (c->mode == RT_MODE_TRAIN) {
		fprintf(f, "usage: %s [options] -o OUT.safetensors\n\n", c->prog);
		if (m)
			fprintf(f, "Trains the model '%s' (%d inputs, %d outputs, %d hidden neurons, %lld parameters)\n"
			        "and writes", m->name, m->n_in, m->n_out, m->n_hidden, (long long)m->n_params);
		else
			fputs("Trains the model of FILE.lln\nand writes", f);
		fputs(" the weights with the best validation loss (or, with --valid 0,\n"
		      "the final weights) to OUT.  Values in brackets are the current settings: the\n"
		      "defaults, overridden by the .lln file's train and objective blocks, then by the\n"
		      "options before --help.  --threads 0 uses every core; the trained weights depend\n"
		      "on the thread count.  Ctrl-C stops after the checkpoint is written and prints\n"
		      "the --resume command.\n", f);
	} else {
		fprintf(f, "usage: %s --weights W.safetensors [--data FILE[,LABELS]] [options]\n\n", c->prog);
		fprintf(f, "Evaluates the model '%s' with weights W on a labeled data set: accuracy, loss,\n"
		        "margins eps_p (percentiles, raw input units), distinct activation patterns and\n"
		        "distinct logit Jacobians.  --data defaults to the train block's test set, else\n"
		        "its data; the results do not depend on --threads.  Values in brackets are the\n"
		        "current settings.\n", m ? m->name : "of FILE.lln");
	}
	for (int g = 0; g < RT_SG_COUNT; g++) {
		bool head = false;
		for (int i = 0; i < RT_NSETTINGS; i++) {
			const rt_setting *s = &rt_settings[i];
			if (s->group != g || !(s->modes & c->mode))
				continue;
			if (!head)
				fprintf(f, "%s:\n", group_title[g]);
			head = true;
			char left[64], val[256];
			snprintf(left, sizeof left, "%s%s%s%s", dashes(i), s->flag, s->metavar[0] ? " " : "", s->metavar);
			const char *v = value_text(m, c, i, val, sizeof val);
			fprintf(f, "  %-21s %s", left, s->help);
			if (v)
				fprintf(f, "%s[%s]", strlen(left) > 21 || 27 + strlen(s->help) + strlen(v) > 100
				                     ? "\n                        " : " ", v);
			fputc('\n', f);
		}
	}
}

void rt_settings_help(FILE *f, int mode, const char *prog)
{
	config c;
	char *argv[] = { (char *)prog, NULL };
	if (rt_config_parse(&c, mode, NULL, 1, argv) == 0)
		rt_config_usage(f, NULL, &c);
	rt_config_free(&c);
}
