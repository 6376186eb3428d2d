/* parse.c: source text to AST.
 *
 * The flex scanner and bison parser are generated, reentrant, and private to
 * this file: the rest of the compiler sees only ast_parse.  The scanner owns
 * malloc'd buffers, so it is created and destroyed here on every path; the
 * tree itself is in the arena.
 */
#include <errno.h>
#include <limits.h>
#include <string.h>

#include "llnc.h"
#include "lln.tab.h"
#define YYSTYPE LLNSTYPE
#define YYLTYPE LLNLTYPE
#include "lln.lex.h"

ast_program *ast_parse(arena *a, source *src)
{
	if (src->len > INT_MAX) {
		diag_error(src, (loc){ 0, 0 }, "file too large (%zu bytes)", src->len);
		return NULL;
	}
	parse_state ps = { .arena = a, .src = src, .line = 1, .col = 1 };
	yyscan_t scanner;
	if (llnlex_init_extra(&ps, &scanner) != 0)
		internal_error("cannot create the scanner: %s", strerror(errno));
	YY_BUFFER_STATE buf = lln_scan_bytes(src->text, (int)src->len, scanner);
	int errors = src->errors;
	int rc = llnparse(scanner, &ps);
	lln_delete_buffer(buf, scanner);
	llnlex_destroy(scanner);
	if (rc != 0 && src->errors == errors)
		internal_error("parser failed without reporting an error");
	if (src->errors != errors)
		return NULL;
	return ps.program;
}
