/* seq.c: sequences of free length (input x[*, F]) on the runtime's side.
 *
 * The compiler builds such a model for max_len frames; a sequence of L
 * frames is stored left-padded (its frames last), and the kernels hold
 * every rnn step before its first frame at 0, exactly, so those steps add
 * nothing to the values, gradients and margins of the rest (docs/design.md,
 * "Recurrent models").  What the kernels cannot know is which neurons are
 * the sequence's own: the regularizer averages over those alone, approximate
 * ROLL draws its axes among its own input values, and a binding neuron's
 * time step counts from its first frame.  This file says which they are.
 */
#include "rt.h"

/* The padding neurons at the start of layer l for a sequence of len
 * frames: the steps before its first frame, in rnn layers (c = h = 0, w
 * units per step). */
static int32_t padding(const rt_model *m, const rt_layer *l, int32_t len)
{
	return m->max_len && l->c == 0 && l->h == 0 && l->w > 0 ? (m->max_len - len) * l->w : 0;
}

int32_t rt_seq_live(const rt_model *m, int32_t len, int32_t *live)
{
	int32_t n = 0;
	for (int32_t k = 0; k < m->n_layers; k++) {
		const rt_layer *l = &m->layers[k];
		int32_t skip = padding(m, l, len);
		for (int32_t i = skip; live && i < l->size; i++)
			live[n + i - skip] = l->offset + i;
		n += l->size - skip;
	}
	return n;
}

uint64_t rt_seq_pattern(const rt_model *m, int32_t len, const float *z)
{
	if (!m->max_len || len == m->max_len)
		return rt_pattern_hash(z, m->n_hidden);
	rt_pattern p;
	rt_pattern_start(&p, rt_seq_live(m, len, NULL));
	for (int32_t k = 0; k < m->n_layers; k++) {
		const rt_layer *l = &m->layers[k];
		int32_t skip = padding(m, l, len);
		rt_pattern_add(&p, z + l->offset + skip, l->size - skip);
	}
	return rt_pattern_end(&p);
}

int32_t rt_seq_index(const rt_model *m, const rt_layer *l, int32_t len, int32_t idx)
{
	return l ? idx - padding(m, l, len) : idx;
}

/* The input values approximate ROLL draws from: the sequence's own, or
 * with fewer than K of those, K (all its own, and padding, whose
 * gradients are 0: the estimate is then the exact sum). */
static int32_t drawn_from(const rt_model *m, int32_t len)
{
	int32_t own = m->max_len ? len * m->frame : m->n_in;
	return own > m->samples ? own : m->samples;
}

void rt_seq_axes(const rt_model *m, int32_t len, uint64_t seed, uint64_t stream, int32_t *axes)
{
	int32_t n = drawn_from(m, len);
	rt_sample_axes(seed, stream, n, m->samples, axes);
	for (int32_t k = 0; k < m->samples; k++)
		axes[k] += m->n_in - n;
}

double rt_seq_sq_scale(const rt_model *m, int32_t len)
{
	return m->samples && m->max_len ? (double)drawn_from(m, len) / m->n_in : 1.0;
}
