/* parts.h: a test program run as several ctest entries, one per part.
 *
 * ctest -j2 (scripts/test) runs two test programs at a time, so one program
 * much longer than the others holds up the end of the suite with the other
 * core idle.  Such a program divides its cmocka tests into named parts, each
 * a group of tests that shares no compiled model with another part (a model
 * is compiled once per process, and compiling dominates); CMakeLists.txt
 * registers NAME.PART for each, running `test_NAME --parts=A,B,... PART`.
 * The list is the one CMakeLists.txt registers: a program whose own parts
 * differ fails every entry, so a part added on one side only cannot go
 * unrun.  Without arguments the program runs every part in turn.
 * Include after <cmocka.h>.
 */
#ifndef LLN_TEST_PARTS_H
#define LLN_TEST_PARTS_H

#include <stdio.h>
#include <string.h>

typedef struct test_part {
	const char *name;
	const struct CMUnitTest *tests;
	size_t n;
	CMFixtureFunction setup, teardown;   /* of the part's group, as cmocka_run_group_tests */
} test_part;

#define TEST_PART(name, tests, setup, teardown) { name, tests, sizeof tests / sizeof *tests, setup, teardown }

/* The names of parts[], comma-separated, into buf. */
static inline void parts_list(const test_part *parts, size_t n, char *buf, size_t len)
{
	size_t k = 0;
	buf[0] = 0;
	for (size_t i = 0; i < n && k < len; i++)
		k += (size_t)snprintf(buf + k, len - k, "%s%s", i ? "," : "", parts[i].name);
}

/* main's body: the part argv names, or all of them; cmocka's count of
 * failed tests, or 2 on a usage error. */
static inline int run_parts(int argc, char **argv, const test_part *parts, size_t n)
{
	char have[512];
	parts_list(parts, n, have, sizeof have);
	const char *only = NULL;
	for (int i = 1; i < argc; i++) {
		if (strncmp(argv[i], "--parts=", 8) == 0) {
			if (strcmp(argv[i] + 8, have) != 0) {
				fprintf(stderr, "%s: CMakeLists.txt registers the parts %s, the program has %s\n", argv[0],
				        argv[i] + 8, have);
				return 2;
			}
		} else if (!only) {
			only = argv[i];
		} else {
			fprintf(stderr, "usage: %s [--parts=LIST] [PART]; parts: %s\n", argv[0], have);
			return 2;
		}
	}
	int failed = 0, ran = 0;
	for (size_t i = 0; i < n; i++) {
		if (only && strcmp(only, parts[i].name) != 0)
			continue;
		failed += _cmocka_run_group_tests(parts[i].name, parts[i].tests, parts[i].n, parts[i].setup,
		                                  parts[i].teardown);
		ran++;
	}
	if (!ran) {
		fprintf(stderr, "%s: no part %s; parts: %s\n", argv[0], only, have);
		return 2;
	}
	return failed;
}

#endif
