/* settings.c: the settings table of training and evaluation.
 *
 * rt_settings is settings.def expanded: for each setting its flag, kind,
 * range, choices, default and help.  The rules a value must follow live
 * here, once, as does the wording that states them, so that `llnc train`,
 * `llnc eval`, standalone trainers (runtime/train_flags.c) and the .lln
 * checker (compiler/sema.c) accept the same values and say so alike.  The
 * two combinations no kernel supports are stated here too.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rt.h"

const char *const rt_objective_names[] = { "vanilla", "roll", "distance", NULL };
const char *const rt_optimizer_names[] = { "sgd", "adam", "amsgrad", NULL };
const char *const rt_loss_names[] = { "cross_entropy", "sigmoid_cross_entropy", NULL };
const char *const rt_p_names[] = { "inf", "1", "2", NULL };
const char *const rt_switch_names[] = { "off", "on", NULL };
const char *const rt_init_names[] = { "pytorch", "he", NULL };

enum { CLOSED, LOPEN, HOPEN };

const rt_setting rt_settings[RT_NSETTINGS] = {
#define SETTING(id, flag, kind, lo, hi, open, choices, def, metavar, group, modes, field, help) \
	[RT_SET_##id] = { flag, RT_SK_##kind, lo, hi, (open) == LOPEN, (open) == HOPEN, choices, def, \
	                  metavar, help, RT_SG_##group, modes },
#define TRAIN RT_MODE_TRAIN
#define EVAL RT_MODE_EVAL
#include "settings.def"
#undef TRAIN
#undef EVAL
#undef SETTING
};

/* Integers are printed as integers, 1e9 included. */
static void num_text(char *buf, size_t cap, double v)
{
	if (v == floor(v) && fabs(v) < 1e15)
		snprintf(buf, cap, "%.0f", v);
	else
		snprintf(buf, cap, "%g", v);
}

bool rt_setting_in_range(int id, double v, char *rule, size_t cap)
{
	const rt_setting *s = &rt_settings[id];
	bool lo_ok = s->lo_open ? v > s->lo : v >= s->lo;
	bool hi_ok = s->hi_open ? v < s->hi : v <= s->hi;
	if (lo_ok && hi_ok)
		return true;
	char lo[32], hi[32];
	num_text(lo, sizeof lo, s->lo);
	num_text(hi, sizeof hi, s->hi);
	if (s->kind == RT_SK_INT) {
		if (!lo_ok)
			snprintf(rule, cap, ">= %s", lo);
		else
			snprintf(rule, cap, "from %s to %s", lo, hi);
	} else if (s->hi >= 1e300) {
		snprintf(rule, cap, "%s %s", s->lo_open ? ">" : ">=", lo);
	} else {
		snprintf(rule, cap, "in %c%s, %s%c", s->lo_open ? '(' : '[', lo, hi, s->hi_open ? ')' : ']');
	}
	return false;
}

int rt_setting_choice(int id, const char *name, char *alts, size_t cap)
{
	const char *const *c = rt_settings[id].choices;
	int n = 0;
	while (c[n])
		n++;
	for (int i = 0; i < n; i++)
		if (!strcmp(name, c[i]))
			return i;
	if (id == RT_SET_OBJECTIVE && !strcmp(name, "none"))
		return 0;
	if (id == RT_SET_NESTEROV && (!strcmp(name, "true") || !strcmp(name, "1")))
		return 1;
	if (id == RT_SET_NESTEROV && (!strcmp(name, "false") || !strcmp(name, "0")))
		return 0;
	if (alts) {
		alts[0] = 0;
		for (int i = 0; i < n; i++) {
			size_t l = strlen(alts);
			snprintf(alts + l, cap - l, "%s%s", i == 0 ? "" : i == n - 1 ? " or " : ", ", c[i]);
		}
	}
	return -1;
}

double rt_setting_default(int id)
{
	const rt_setting *s = &rt_settings[id];
	if (!s->def)
		return 0;
	if (s->kind == RT_SK_CHOICE)
		return rt_setting_choice(id, s->def, NULL, 0);
	return strtod(s->def, NULL);
}

const char *rt_distance_unsupported(int p)
{
	return p == 2 ? NULL
	              : "the distance regularizer trains only with p = 2 (the kernels provide ||g||_2)";
}

const char *rt_nesterov_unsupported(bool nesterov, double momentum)
{
	return nesterov && momentum == 0 ? "nesterov needs momentum > 0" : NULL;
}
