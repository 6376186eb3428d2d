/* defaults.c: a checked program's training settings as command-line flags.
 *
 * The runtime's train, eval and plot commands take their settings as flags;
 * a .lln file's objective and train blocks reach them as default flags,
 * parsed before the command line so that it overrides them.  llnc's
 * commands, standalone trainers (embedded as lln_train_defaults) and
 * liblln's lln_train all get them from here.
 */
#include "llnc.h"

/* s and one more default flag, named as the settings table names it */
static char *put(arena *a, char *s, int id, const char *value)
{
	return arena_printf(a, "%s--%s\n%s\n", s, rt_settings[id].flag, value);
}

/* The train and objective blocks as the runtime's default flags, one
 * argument per line (paths may hold spaces, never newlines).  Numbers are
 * printed with 15 significant digits, which gives back the literal of the
 * source exactly. */
char *sema_defaults(arena *a, const sema_program *p)
{
	const sema_objective *ob = &p->objective;
	const sema_train *t = &p->train;
	char *s = "";
#define NUM(id, v) s = put(a, s, RT_SET_##id, arena_printf(a, "%.15g", (double)(v)))
#define NAME(id, v) s = put(a, s, RT_SET_##id, v)
	NAME(OBJECTIVE, rt_objective_names[ob->reg]);
	NUM(LAMBDA, ob->lambda);
	NUM(C, ob->C);
	NUM(GAMMA, ob->gamma);
	NAME(P, rt_p_names[ob->p]);
	NAME(OPTIMIZER, rt_optimizer_names[t->optimizer]);
	NUM(LR, t->lr);
	NUM(MOMENTUM, t->momentum);
	NAME(NESTEROV, rt_switch_names[t->nesterov]);
	NUM(BETA1, t->beta1);
	NUM(BETA2, t->beta2);
	NUM(EPS, t->adam_eps);
	NUM(WEIGHT_DECAY, t->weight_decay);
	NUM(LR_STEP, t->lr_step);
	NUM(LR_GAMMA, t->lr_gamma);
	NUM(BATCH, t->batch);
	NUM(EPOCHS, t->epochs);
	NAME(SEED, arena_printf(a, "%llu", (unsigned long long)t->seed));
	NAME(INIT_SCHEME, rt_init_names[t->init]);
	NUM(VALID, t->valid);
	const sema_data *d[2] = { &t->data, &t->test };
	for (int i = 0; i < 2; i++) {
		if (d[i]->kind == DATA_TOY2D)
			s = put(a, s, i ? RT_SET_TEST : RT_SET_DATA,
			        arena_printf(a, "toy2d:kind=%s,n=%lld,noise=%.15g,seed=%llu", d[i]->toy_kind,
			                     (long long)d[i]->toy_n, d[i]->toy_noise, (unsigned long long)d[i]->toy_seed));
		else if (d[i]->kind != DATA_NONE)
			s = put(a, s, i ? RT_SET_TEST : RT_SET_DATA,
			        arena_printf(a, "%s%s%s", d[i]->path[0], d[i]->path[1] ? "," : "",
			                     d[i]->path[1] ? d[i]->path[1] : ""));
	}
#undef NUM
#undef NAME
	return s;
}
