/* defaults.c: a checked program's training settings as command-line flags.
 *
 * The runtime's train, eval and plot commands take their settings as flags;
 * a .lln file's objective and train blocks reach them as default flags,
 * parsed before the command line so that it overrides them.  llnc's
 * commands, standalone trainers (embedded as lln_train_defaults) and
 * liblln's lln_train all get them from here.
 */
#include "llnc.h"

/* The train and objective blocks as the runtime's default flags, one
 * argument per line (paths may hold spaces, never newlines).  Numbers are
 * printed with 15 significant digits, which gives back the literal of the
 * source exactly. */
char *sema_defaults(arena *a, const sema_program *p)
{
	static const char *objective[] = { [REG_NONE] = "vanilla", [REG_ROLL] = "roll", [REG_DISTANCE] = "distance" };
	static const char *optimizer[] = { [OPT_SGD] = "sgd", [OPT_ADAM] = "adam", [OPT_AMSGRAD] = "amsgrad" };
	const sema_objective *ob = &p->objective;
	const sema_train *t = &p->train;
	char *s = arena_printf(a,
		"--objective\n%s\n--lambda\n%.15g\n--C\n%.15g\n--gamma\n%.15g\n"
		"--optimizer\n%s\n--lr\n%.15g\n--momentum\n%.15g\n--nesterov\n%s\n--beta1\n%.15g\n"
		"--beta2\n%.15g\n--eps\n%.15g\n--weight-decay\n%.15g\n--lr-step\n%d\n--lr-gamma\n%.15g\n"
		"--batch\n%d\n--epochs\n%d\n--seed\n%llu\n--init-scheme\n%s\n--valid\n%d\n--p\n%s\n",
		objective[ob->reg], ob->lambda, ob->C, ob->reg == REG_ROLL ? ob->gamma : 100.0,
		optimizer[t->optimizer], t->lr, t->momentum, t->nesterov ? "on" : "off", t->beta1,
		t->beta2, t->adam_eps, t->weight_decay, t->lr_step, t->lr_gamma,
		t->batch, t->epochs, (unsigned long long)t->seed, rt_init_name(t->init), t->valid,
		ob->p == 1 ? "1" : ob->p == 2 ? "2" : "inf");
	const sema_data *d[2] = { &t->data, &t->test };
	for (int i = 0; i < 2; i++) {
		const char *flag = i ? "test" : "data";
		if (d[i]->kind == DATA_TOY2D)
			s = arena_printf(a, "%s--%s\ntoy2d:kind=%s,n=%lld,noise=%.15g,seed=%llu\n", s, flag, d[i]->toy_kind,
			                 (long long)d[i]->toy_n, d[i]->toy_noise, (unsigned long long)d[i]->toy_seed);
		else if (d[i]->kind != DATA_NONE)
			s = arena_printf(a, "%s--%s\n%s%s%s\n", s, flag, d[i]->path[0],
			                 d[i]->path[1] ? "," : "", d[i]->path[1] ? d[i]->path[1] : "");
	}
	return s;
}
