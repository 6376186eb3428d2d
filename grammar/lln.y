/* lln.y: the grammar of .lln programs.
 *
 * The grammar is deliberately generic: a program is blocks of statements
 * whose values are numbers, strings, names and calls with positional and
 * keyword arguments.  Which calls and settings exist, and every check on
 * them, belongs to sema.c, so a new layer type or hyperparameter never
 * changes this file.  Actions only build nodes through ast.c.
 *
 * Syntax errors get hand-written messages (parse.error custom) that name the
 * offending token and what was expected; `error` productions at statement
 * and block level let one run report several mistakes.
 */
%code requires {
#include "llnc.h"

#ifndef YY_TYPEDEF_YY_SCANNER_T
#define YY_TYPEDEF_YY_SCANNER_T
typedef void *yyscan_t;
#endif

/* State shared by the scanner, the parser and parse.c for one parse. */
typedef struct parse_state {
	arena *arena;
	source *src;
	ast_program *program;      /* the result */
	int line, col;             /* position of the next unread byte */
	size_t off;                /* its offset in src->text */
	size_t tok_off, tok_len;   /* the last match (tokens, blanks, comments) */
	size_t la_off, la_len;     /* the last token returned to the parser */
	loc la_end, prev_end;      /* one past that token, and the one before it */
	int depth;                 /* braces open */
	loc open_brace;            /* the outermost one */
} parse_state;

typedef struct lln_number {
	const char *text;
	double v;
	bool is_int;
} lln_number;
}

%code provides {
int llnlex(LLNSTYPE *lval, LLNLTYPE *lloc, yyscan_t scanner);
}

%code {
#include <string.h>

#define A (ps->arena)
#define L(y) ((loc){ (y).first_line, (y).first_column })

static void llnerror(LLNLTYPE *at, yyscan_t scanner, parse_state *ps, const char *msg);
}

%define api.pure full
%define api.prefix {lln}
%define parse.error custom
%locations
%param {yyscan_t scanner}
%parse-param {parse_state *ps}
%expect 0

%union {
	const char *str;
	lln_number num;
	ast_expr *expr;
	ast_arg *arg;
	ast_stmt *stmt;
	ast_block *block;
}

%token <str> IDENT "identifier"
%token <str> STRING "string"
%token <num> NUMBER "number"
%token MODEL "model" OBJECTIVE "objective" TRAIN "train"
%token INPUT "input" OUTPUT "output" NORMALIZE "normalize" INF "inf"

%type <block> blocks block
%type <stmt> stmts stmt
%type <expr> expr normalize_opt
%type <arg> args arg dims dim

%%

program
	: blocks                 { ps->program = ast_program_new(A, ps->src, $1); }
	;

blocks
	: %empty                 { $$ = NULL; }
	| blocks block           { $$ = ast_block_append($1, $2); }
	;

block
	: MODEL IDENT '{' stmts '}'
	                         { $$ = ast_block_new(A, AST_MODEL, L(@1), $2, L(@2), $4); }
	| OBJECTIVE '{' stmts '}'
	                         { $$ = ast_block_new(A, AST_OBJECTIVE, L(@1), NULL, L(@1), $3); }
	| TRAIN '{' stmts '}'    { $$ = ast_block_new(A, AST_TRAIN, L(@1), NULL, L(@1), $3); }
	| error '}'              { $$ = NULL; }
	;

stmts
	: %empty                 { $$ = NULL; }
	| stmts stmt             { $$ = ast_stmt_append($1, $2); }
	;

stmt
	: IDENT '=' expr ';'     { $$ = ast_assign(A, L(@1), $1, $3); }
	| INPUT IDENT '[' dims ']' normalize_opt ';'
	                         { $$ = ast_input(A, L(@1), $2, L(@2), $4, $6); }
	| OUTPUT IDENT ';'       { $$ = ast_output(A, L(@1), $2, L(@2)); }
	| error ';'              { $$ = NULL; }
	;

normalize_opt
	: %empty                 { $$ = NULL; }
	| NORMALIZE '(' ')'      { $$ = ast_call(A, L(@1), "normalize", NULL); }
	| NORMALIZE '(' args ')' { $$ = ast_call(A, L(@1), "normalize", $3); }
	;

dims
	: dim                    { $$ = $1; }
	| dims ',' dim           { $$ = ast_arg_append($1, $3); }
	;

/* '*': a sequence's length, free per example (an arg without a value) */
dim
	: expr                   { $$ = ast_arg_new(A, L(@1), NULL, $1); }
	| '*'                    { $$ = ast_arg_new(A, L(@1), NULL, NULL); }
	;

args
	: arg                    { $$ = $1; }
	| args ',' arg           { $$ = ast_arg_append($1, $3); }
	;

arg
	: expr                   { $$ = ast_arg_new(A, L(@1), NULL, $1); }
	| IDENT '=' expr         { $$ = ast_arg_new(A, L(@1), $1, $3); }
	;

expr
	: NUMBER                 { $$ = ast_number(A, L(@1), $1.text, $1.v, $1.is_int); }
	| '-' NUMBER             { $$ = ast_negate(L(@1), ast_number(A, L(@2), $2.text, $2.v, $2.is_int)); }
	| INF                    { $$ = ast_inf(A, L(@1)); }
	| '-' INF                { $$ = ast_negate(L(@1), ast_inf(A, L(@2))); }
	| STRING                 { $$ = ast_string(A, L(@1), $1); }
	| IDENT                  { $$ = ast_name(A, L(@1), $1); }
	| IDENT '(' ')'          { $$ = ast_call(A, L(@1), $1, NULL); }
	| IDENT '(' args ')'     { $$ = ast_call(A, L(@1), $1, $3); }
	;

%%

/* How a token kind reads in a message ("'model'", "a name", "';'"). */
static const char *kind_name(yysymbol_kind_t k)
{
	switch (k) {
	case YYSYMBOL_YYEOF: return "end of file";
	case YYSYMBOL_IDENT: return "a name";
	case YYSYMBOL_STRING: return "a string";
	case YYSYMBOL_NUMBER: return "a number";
	case YYSYMBOL_MODEL: return "'model'";
	case YYSYMBOL_OBJECTIVE: return "'objective'";
	case YYSYMBOL_TRAIN: return "'train'";
	case YYSYMBOL_INPUT: return "'input'";
	case YYSYMBOL_OUTPUT: return "'output'";
	case YYSYMBOL_NORMALIZE: return "'normalize'";
	case YYSYMBOL_INF: return "'inf'";
	default: return yysymbol_name(k);   /* character tokens: "';'" */
	}
}

/* The lookahead as the user wrote it: "name 'fc1'", "number '3'", "'}'". */
static const char *lookahead_text(const parse_state *ps, yysymbol_kind_t k)
{
	const char *what;
	switch (k) {
	case YYSYMBOL_YYEOF: return "end of file";
	case YYSYMBOL_IDENT: what = "name"; break;
	case YYSYMBOL_NUMBER: what = "number"; break;
	case YYSYMBOL_STRING: return "string";
	default: return kind_name(k);
	}
	int n = ps->la_len > 40 ? 40 : (int)ps->la_len;
	return arena_printf(ps->arena, "%s '%.*s'", what, n, ps->src->text + ps->la_off);
}

/* Character tokens have numbered kinds; their names ("';'") are stable. */
static bool expects_char(const yysymbol_kind_t *exp, int n, char c)
{
	char name[4] = { '\'', c, '\'', '\0' };
	for (int i = 0; i < n; i++)
		if (strcmp(yysymbol_name(exp[i]), name) == 0)
			return true;
	return false;
}

static int yyreport_syntax_error(const yypcontext_t *ctx, yyscan_t scanner, parse_state *ps)
{
	yysymbol_kind_t exp[YYNTOKENS];
	int n = yypcontext_expected_tokens(ctx, exp, YYNTOKENS);
	if (n < 0)
		n = 0;
	yysymbol_kind_t la = yypcontext_token(ctx);
	loc at = L(*yypcontext_location(ctx));
	source *src = ps->src;

	/* A statement missing its ';' is noticed only at the next token, often
	 * on the next line; the caret goes right after the statement instead,
	 * where the ';' belongs. */
	if (expects_char(exp, n, ';')) {
		diag_error(src, ps->prev_end, "expected ';' after statement");
		return 0;
	}
	bool want_brace = expects_char(exp, n, '}');
	if (want_brace && ps->depth > 0 &&
	    (la == YYSYMBOL_YYEOF || la == YYSYMBOL_MODEL || la == YYSYMBOL_OBJECTIVE ||
	     la == YYSYMBOL_TRAIN)) {
		loc ob = ps->open_brace;
		if (la == YYSYMBOL_YYEOF)
			diag_error(src, ps->prev_end,
			           "unexpected end of file: missing '}' for the '{' at %d:%d",
			           ob.line, ob.col);
		else
			diag_error(src, at, "missing '}' before %s: the '{' at %d:%d is not closed",
			           kind_name(la), ob.line, ob.col);
		return 0;
	}
	if (la == YYSYMBOL_YYEOF)
		at = ps->prev_end.line ? ps->prev_end : (loc){ 1, 1 };

	/* End of file is always acceptable between blocks; saying so is noise. */
	int m = 0;
	for (int i = 0; i < n; i++)
		if (exp[i] != YYSYMBOL_YYEOF)
			exp[m++] = exp[i];
	n = m;
	bool want_value = false;
	for (int i = 0; i < n; i++)
		if (exp[i] == YYSYMBOL_NUMBER)
			want_value = true;

	char msg[512];
	int len = snprintf(msg, sizeof msg, "unexpected %s", lookahead_text(ps, la));
	/* A long list of alternatives helps nobody. */
	if (want_value) {
		snprintf(msg + len, sizeof msg - (size_t)len, "; expected a value");
	} else if (n > 0 && n <= 4) {
		len += snprintf(msg + len, sizeof msg - (size_t)len, "; expected ");
		for (int i = 0; i < n && len < (int)sizeof msg; i++)
			len += snprintf(msg + len, sizeof msg - (size_t)len, "%s%s",
			                i == 0 ? "" : i == n - 1 ? " or " : ", ", kind_name(exp[i]));
	}
	diag_error(src, at, "%s", msg);
	return 0;
}

/* With parse.error custom, bison calls this only when its stack is full,
 * which only absurdly deep nesting can cause. */
static void llnerror(LLNLTYPE *at, yyscan_t scanner, parse_state *ps, const char *msg)
{
	if (!strcmp(msg, "memory exhausted"))
		diag_error(ps->src, L(*at), "expression nested too deeply");
	else
		diag_error(ps->src, L(*at), "%s", msg);
}
