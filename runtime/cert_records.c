/* cert_records.c: the certifier's per-input records, as text.
 *
 * One record per input in the format of --format: a JSON object per line,
 * a CSV row under a header, or aligned table columns under a header; and
 * the line that opens a shard file (--shard-out), which says what run its
 * records belong to.  The certifier prints records of the batches it
 * certifies and `llnc merge` prints records it read back from shard files;
 * both go through here, so a merged output is the unsharded one byte for
 * byte.  A record carries its binding neurons already placed in their
 * layers (rt_bind), so printing needs no model.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "rt.h"

static const char *norm_name[RT_NNORMS] = { "l1", "l2", "linf" };

void rt_bind_of(const rt_model *m, int32_t len, int32_t h, rt_bind *out)
{
	int32_t idx = 0;
	const rt_layer *l = h >= 0 ? rt_layer_of(m, h, &idx) : NULL;
	idx = rt_seq_index(m, l, len, idx);
	memset(out, 0, sizeof *out);
	if (!l)
		return;
	out->layer = l->name;
	out->index = idx;
	if (l->h > 0) {   /* an image layer: also where in it */
		out->shape = RT_BIND_IMAGE;
		out->a = idx / (l->h * l->w);
		out->b = idx / l->w % l->h;
		out->c = idx % l->w;
	} else if (l->w > 0) {   /* a sequence layer (rnn): the time step and unit */
		out->shape = RT_BIND_SEQUENCE;
		out->a = idx / l->w;
		out->b = idx % l->w;
	}
}

static void print_number(FILE *out, float v, bool json)
{
	char buf[64];
	rt_format_down(buf, sizeof buf, v, 9);
	fputs(isinf(v) ? (json ? "null" : "inf") : buf, out);
}

static void print_binding(FILE *out, const rt_bind *b, bool json)
{
	if (json) {
		if (!b->layer)
			fputs("null", out);
		else if (b->shape == RT_BIND_IMAGE)
			fprintf(out, "{\"layer\":\"%s\",\"index\":%d,\"channel\":%d,\"row\":%d,\"col\":%d}", b->layer,
			        b->index, b->a, b->b, b->c);
		else if (b->shape == RT_BIND_SEQUENCE)
			fprintf(out, "{\"layer\":\"%s\",\"index\":%d,\"step\":%d,\"unit\":%d}", b->layer, b->index, b->a,
			        b->b);
		else
			fprintf(out, "{\"layer\":\"%s\",\"index\":%d}", b->layer, b->index);
	} else if (b->layer) {
		fprintf(out, "%s,%d", b->layer, b->index);
	} else {
		fputs(",", out);
	}
}

/* Without labels a radius says whether the prediction is robust; with
 * them, whether it is certified (robust and correct). */
static const char *radius_field(const rt_record_layout *L)
{
	return L->labeled ? "certified" : "robust";
}

void rt_record_header(FILE *out, const rt_record_layout *L)
{
	const rt_radii *r = L->radii;
	if (L->format == RT_FORMAT_TABLE) {
		fprintf(out, "%6s %5s", "input", "pred");
		if (L->labeled)
			fprintf(out, " %5s %7s", "label", "correct");
		for (int p = 0; p < RT_NNORMS; p++)
			if (L->norms & RT_NORM_BIT(p)) {
				char t[16];
				snprintf(t, sizeof t, "eps_%s", norm_name[p]);
				fprintf(out, " %11s %-14s %11s", t, "binding", "eps_pred");
			}
		if (L->dirs)
			fprintf(out, " %11s", "eps_dir");
		for (int k = 0; k < r->n; k++) {
			char t[48];
			snprintf(t, sizeof t, "%s@%s", L->labeled ? "cert" : "robust", r->key[k]);
			fprintf(out, " %11s", t);
		}
		fprintf(out, "  %-16s\n", "pattern");
	} else if (L->format == RT_FORMAT_CSV) {
		fputs(L->labeled ? "index,pred,label,correct" : "index,pred", out);
		for (int p = 0; p < RT_NNORMS; p++)
			if (L->norms & RT_NORM_BIT(p))
				fprintf(out, ",eps_%s,bind_%s_layer,bind_%s_index,eps_pred_%s", norm_name[p],
				        norm_name[p], norm_name[p], norm_name[p]);
		if (L->dirs)
			fputs(",eps_dir,bind_dir_layer,bind_dir_index", out);
		for (int k = 0; k < r->n; k++)
			fprintf(out, ",%s_%s@%s", radius_field(L), norm_name[r->norm], r->key[k]);
		fputs(",pattern\n", out);
	}
}

static void print_table_row(FILE *out, const rt_record_layout *L, const rt_record *rec)
{
	const rt_cert *c = &rec->c;
	fprintf(out, "%6lld %5d", (long long)rec->index, c->label);
	if (L->labeled)
		fprintf(out, " %5d %7s", rec->y, rec->y == c->label ? "yes" : "no");
	for (int p = 0; p < RT_NNORMS; p++) {
		if (!(L->norms & RT_NORM_BIT(p)))
			continue;
		char bind[64] = "-";
		const rt_bind *b = &rec->bind[p];
		if (b->layer && b->shape == RT_BIND_IMAGE)
			snprintf(bind, sizeof bind, "%s[%d,%d,%d]", b->layer, b->a, b->b, b->c);
		else if (b->layer && b->shape == RT_BIND_SEQUENCE)
			snprintf(bind, sizeof bind, "%s[t=%d,%d]", b->layer, b->a, b->b);
		else if (b->layer)
			snprintf(bind, sizeof bind, "%s[%d]", b->layer, b->index);
		char e[32], ep[32];
		rt_format_down(e, sizeof e, c->eps[p], 4);
		rt_format_down(ep, sizeof ep, c->eps_pred[p], 4);
		fprintf(out, " %11s %-14s %11s", e, bind, ep);
	}
	if (L->dirs) {
		char t[32];
		rt_format_down(t, sizeof t, rec->t, 4);
		fprintf(out, " %11s", t);
	}
	for (int k = 0; k < L->radii->n; k++) {
		bool ok = rt_robust_at(c, L->radii, k) && (!L->labeled || rec->y == c->label);
		fprintf(out, " %11s", ok ? "yes" : "no");
	}
	fprintf(out, "  %016llx\n", (unsigned long long)rec->pattern);
}

void rt_record_print(FILE *out, const rt_record_layout *L, const rt_record *rec)
{
	if (L->format == RT_FORMAT_TABLE) {
		print_table_row(out, L, rec);
		return;
	}
	bool json = L->format == RT_FORMAT_JSONL;
	const rt_radii *r = L->radii;
	const rt_cert *c = &rec->c;
	bool correct = L->labeled && rec->y == c->label;
	fprintf(out, json ? "{\"index\":%lld,\"pred\":%d" : "%lld,%d", (long long)rec->index, c->label);
	if (L->labeled)
		fprintf(out, json ? ",\"label\":%d,\"correct\":%s" : ",%d,%s", rec->y,
		        json ? (correct ? "true" : "false") : (correct ? "1" : "0"));
	for (int p = 0; p < RT_NNORMS; p++) {
		if (!(L->norms & RT_NORM_BIT(p)))
			continue;
		fprintf(out, json ? ",\"eps_%s\":" : ",", norm_name[p]);
		print_number(out, c->eps[p], json);
		fprintf(out, json ? ",\"bind_%s\":" : ",", norm_name[p]);
		print_binding(out, &rec->bind[p], json);
		fprintf(out, json ? ",\"eps_pred_%s\":" : ",", norm_name[p]);
		print_number(out, c->eps_pred[p], json);
	}
	if (L->dirs) {
		fputs(json ? ",\"eps_dir\":" : ",", out);
		print_number(out, rec->t, json);
		fputs(json ? ",\"bind_dir\":" : ",", out);
		print_binding(out, &rec->tbind, json);
	}
	if (r->n && json)
		fprintf(out, ",\"%s\":{", radius_field(L));
	for (int k = 0; k < r->n; k++) {
		bool ok = rt_robust_at(c, r, k) && (!L->labeled || correct);
		if (json)
			fprintf(out, "%s\"%s\":%s", k ? "," : "", r->key[k], ok ? "true" : "false");
		else
			fputs(ok ? ",1" : ",0", out);
	}
	if (r->n && json)
		fputc('}', out);
	if (json && c->undecided)   /* signs within rounding error of 0: every radius is 0 */
		fprintf(out, ",\"undecided\":%d", c->undecided);
	fprintf(out, json ? ",\"pattern\":\"%016llx\"}\n" : ",%016llx\n", (unsigned long long)rec->pattern);
}

void rt_shard_head_print(FILE *out, const rt_shard_head *h, const rt_record_layout *L)
{
	const rt_radii *r = L->radii;
	/* the model's name is an identifier of the .lln language: no escaping */
	fprintf(out,
	        "{\"lln_shard\":%d,\"model\":\"%s\",\"model_digest\":\"%016" PRIx64 "\",\"input_digest\":\"%016" PRIx64
	        "\",\"n_in\":%d,\"n_out\":%d,\"inputs\":%lld,\"shard\":%d,\"shards\":%d,\"norms\":[",
	        RT_SHARD_VERSION, h->model, h->model_digest, h->input_digest, h->n_in, h->n_out, (long long)h->inputs,
	        h->part, h->parts);
	for (int p = 0, first = 1; p < RT_NNORMS; p++)
		if (L->norms & RT_NORM_BIT(p)) {
			fprintf(out, "%s\"%s\"", first ? "" : ",", norm_name[p]);
			first = 0;
		}
	fprintf(out, "],\"labeled\":%s,\"direction\":%s", L->labeled ? "true" : "false", L->dirs ? "true" : "false");
	if (r->n) {   /* exactly, so that merge decides robustness as the certifier did */
		fprintf(out, ",\"eps_norm\":\"%s\",\"eps\":[", norm_name[r->norm]);
		for (int k = 0; k < r->n; k++)
			fprintf(out, "%s%.17g", k ? "," : "", r->r[k]);
		fputc(']', out);
	}
	fputs("}\n", out);
}
