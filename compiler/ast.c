/* ast.c: building and printing the syntax tree.
 *
 * The grammar's actions do nothing but call these constructors, so the shape
 * of the tree is decided here and the .y file stays a plain grammar.  Lists
 * are singly linked in source order; error recovery in the grammar produces
 * NULL items, which the append functions drop so later stages never see
 * half-parsed statements.  ast_dump prints the tree for `llnc --dump=ast` and
 * the golden-file test, so its format is part of the tested interface.
 */
#include <math.h>
#include <string.h>

#include "llnc.h"

ast_expr *ast_number(arena *a, loc at, const char *text, double v, bool is_int)
{
	ast_expr *e = arena_alloc(a, sizeof *e);
	e->kind = AST_NUMBER;
	e->at = at;
	e->text = text;
	e->num = v;
	e->is_int = is_int;
	return e;
}

ast_expr *ast_inf(arena *a, loc at)
{
	ast_expr *e = arena_alloc(a, sizeof *e);
	e->kind = AST_INF;
	e->at = at;
	e->text = "inf";
	e->num = INFINITY;
	return e;
}

/* The sign stays visible (negative) so sema can quote the value as written. */
ast_expr *ast_negate(loc minus, ast_expr *e)
{
	e->at = minus;
	e->negative = !e->negative;
	e->num = -e->num;
	return e;
}

ast_expr *ast_string(arena *a, loc at, const char *s)
{
	ast_expr *e = arena_alloc(a, sizeof *e);
	e->kind = AST_STRING;
	e->at = at;
	e->text = s;
	return e;
}

ast_expr *ast_name(arena *a, loc at, const char *id)
{
	ast_expr *e = arena_alloc(a, sizeof *e);
	e->kind = AST_NAME;
	e->at = at;
	e->text = id;
	return e;
}

ast_expr *ast_call(arena *a, loc at, const char *id, ast_arg *args)
{
	ast_expr *e = arena_alloc(a, sizeof *e);
	e->kind = AST_CALL;
	e->at = at;
	e->text = id;
	e->args = args;
	for (ast_arg *g = args; g; g = g->next)
		e->n_args++;
	return e;
}

ast_arg *ast_arg_new(arena *a, loc at, const char *name, ast_expr *value)
{
	ast_arg *g = arena_alloc(a, sizeof *g);
	g->at = at;
	g->name = name;
	g->value = value;
	return g;
}

/* Lists are short (a statement's arguments, a block's statements), so
 * walking to the tail keeps the nodes free of tail pointers. */
ast_arg *ast_arg_append(ast_arg *list, ast_arg *x)
{
	if (!x)
		return list;
	ast_arg *end = x;
	while (end->next)
		end = end->next;
	if (!list) {
		x->last = end;
		return x;
	}
	if (!list->last)   /* a list that began as a single item */
		for (list->last = list; list->last->next;)
			list->last = list->last->next;
	list->last->next = x;   /* the head keeps its last item: appending is O(1) */
	list->last = end;
	return list;
}

ast_stmt *ast_assign(arena *a, loc at, const char *name, ast_expr *value)
{
	ast_stmt *s = arena_alloc(a, sizeof *s);
	s->kind = AST_ASSIGN;
	s->at = s->name_at = at;
	s->name = name;
	s->value = value;
	return s;
}

ast_stmt *ast_input(arena *a, loc at, const char *name, loc name_at,
                    ast_arg *dims, ast_expr *normalize)
{
	ast_stmt *s = arena_alloc(a, sizeof *s);
	s->kind = AST_INPUT;
	s->at = at;
	s->name = name;
	s->name_at = name_at;
	s->dims = dims;
	for (ast_arg *g = dims; g; g = g->next)
		s->n_dims++;
	s->normalize = normalize;
	return s;
}

ast_stmt *ast_output(arena *a, loc at, const char *name, loc name_at)
{
	ast_stmt *s = arena_alloc(a, sizeof *s);
	s->kind = AST_OUTPUT;
	s->at = at;
	s->name = name;
	s->name_at = name_at;
	return s;
}

ast_stmt *ast_stmt_append(ast_stmt *list, ast_stmt *x)
{
	if (!x)
		return list;
	ast_stmt *end = x;
	while (end->next)
		end = end->next;
	if (!list) {
		x->last = end;
		return x;
	}
	if (!list->last)   /* a list that began as a single item */
		for (list->last = list; list->last->next;)
			list->last = list->last->next;
	list->last->next = x;   /* the head keeps its last item: appending is O(1) */
	list->last = end;
	return list;
}

ast_block *ast_block_new(arena *a, ast_block_kind k, loc at, const char *name,
                         loc name_at, ast_stmt *stmts)
{
	ast_block *b = arena_alloc(a, sizeof *b);
	b->kind = k;
	b->at = at;
	b->name = name;
	b->name_at = name_at;
	b->stmts = stmts;
	return b;
}

ast_block *ast_block_append(ast_block *list, ast_block *x)
{
	if (!x)
		return list;
	ast_block *end = x;
	while (end->next)
		end = end->next;
	if (!list) {
		x->last = end;
		return x;
	}
	if (!list->last)   /* a list that began as a single item */
		for (list->last = list; list->last->next;)
			list->last = list->last->next;
	list->last->next = x;   /* the head keeps its last item: appending is O(1) */
	list->last = end;
	return list;
}

ast_program *ast_program_new(arena *a, source *src, ast_block *blocks)
{
	ast_program *p = arena_alloc(a, sizeof *p);
	p->src = src;
	p->blocks = blocks;
	return p;
}

const char *ast_block_keyword(ast_block_kind k)
{
	switch (k) {
	case AST_MODEL: return "model";
	case AST_OBJECTIVE: return "objective";
	case AST_TRAIN: return "train";
	}
	internal_error("ast_block_keyword: bad kind %d", (int)k);
}

/* ---- dump ---- */

static void indent(FILE *out, int depth)
{
	for (int i = 0; i < depth; i++)
		fputs("  ", out);
}

/* Strings are printed with the same escapes the lexer accepts, so the dump
 * of a string can be pasted back into a program. */
static void put_string(FILE *out, const char *s)
{
	fputc('"', out);
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			fputc('\\', out);
		fputc(*s, out);
	}
	fputc('"', out);
}

static void dump_expr(FILE *out, const ast_expr *e, int depth);

static void dump_args(FILE *out, const ast_arg *g, int depth)
{
	for (; g; g = g->next) {
		if (g->name) {
			indent(out, depth);
			fprintf(out, "arg %s @%d:%d\n", g->name, g->at.line, g->at.col);
			dump_expr(out, g->value, depth + 1);
		} else if (g->value) {
			dump_expr(out, g->value, depth);
		} else {
			indent(out, depth);
			fprintf(out, "* @%d:%d\n", g->at.line, g->at.col);
		}
	}
}

static void dump_expr(FILE *out, const ast_expr *e, int depth)
{
	indent(out, depth);
	switch (e->kind) {
	case AST_NUMBER:
		fprintf(out, "number %s%s%s", e->negative ? "-" : "", e->text,
		        e->is_int ? " (integer)" : "");
		break;
	case AST_INF:
		fprintf(out, "inf%s", e->negative ? " (negative)" : "");
		break;
	case AST_STRING:
		fputs("string ", out);
		put_string(out, e->text);
		break;
	case AST_NAME:
		fprintf(out, "name %s", e->text);
		break;
	case AST_CALL:
		fprintf(out, "call %s", e->text);
		break;
	}
	fprintf(out, " @%d:%d\n", e->at.line, e->at.col);
	if (e->kind == AST_CALL)
		dump_args(out, e->args, depth + 1);
}

static void dump_stmt(FILE *out, const ast_stmt *s, int depth)
{
	indent(out, depth);
	switch (s->kind) {
	case AST_ASSIGN:
		fprintf(out, "assign %s @%d:%d\n", s->name, s->at.line, s->at.col);
		dump_expr(out, s->value, depth + 1);
		break;
	case AST_INPUT:
		fprintf(out, "input %s @%d:%d (name @%d:%d)\n", s->name, s->at.line,
		        s->at.col, s->name_at.line, s->name_at.col);
		indent(out, depth + 1);
		fprintf(out, "dims (%d)\n", s->n_dims);
		dump_args(out, s->dims, depth + 2);
		if (s->normalize)
			dump_expr(out, s->normalize, depth + 1);
		break;
	case AST_OUTPUT:
		fprintf(out, "output %s @%d:%d (name @%d:%d)\n", s->name, s->at.line,
		        s->at.col, s->name_at.line, s->name_at.col);
		break;
	}
}

void ast_dump(FILE *out, const ast_program *p)
{
	fputs("program\n", out);
	for (const ast_block *b = p->blocks; b; b = b->next) {
		indent(out, 1);
		fputs(ast_block_keyword(b->kind), out);
		if (b->name)
			fprintf(out, " %s", b->name);
		fprintf(out, " @%d:%d\n", b->at.line, b->at.col);
		for (const ast_stmt *s = b->stmts; s; s = s->next)
			dump_stmt(out, s, 2);
	}
}
