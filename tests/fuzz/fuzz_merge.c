/* fuzz_merge.c: libFuzzer harness for the shard files `llnc merge` reads
 * (runtime/cert_merge.c).
 *
 * Each input is one shard file, merged alone the ways the command runs:
 * the records as a table to -o OUT, and --summary in CSV (the summary on
 * stdout, sent to /dev/null) with the records in jsonl to OUT; messages
 * go to stderr, which tests/fuzz/run closes (-close_fd_mask=2).  A
 * file alone is a whole run when it says it is shard 0/1; any other is
 * refused for the shards it lacks after its first line is read.  Besides
 * crashes, sanitizer reports and leaks, the harness checks what
 * docs/scale.md promises: the exit status is 0 or 1 (the command line is
 * right, so never 2); OUT exists exactly when it is 0 (nothing is written
 * on a failure); and no temporary file is left beside OUT.
 */
#include <dirent.h>

#include "rt.h"

#include "fuzz.h"

static char out_path[160];

/* Nothing in the directory but the input and, when kept, OUT. */
static int entries(void)
{
	DIR *d = opendir(fuzz_dir);
	int n = 0;
	for (struct dirent *e; d && (e = readdir(d));)
		n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
	if (d)
		closedir(d);
	return n;
}

static void merge(const char *path, char **flags, int nflags)
{
	char *argv[8] = { "llnc merge" };
	int argc = 1;
	for (int i = 0; i < nflags; i++)
		argv[argc++] = flags[i];
	argv[argc++] = "-o";
	argv[argc++] = out_path;
	argv[argc++] = (char *)path;
	unlink(out_path);
	int rc = rt_merge_main(argc, argv);
	promise(rc == 0 || rc == 1, "merge exits 0 or 1 on a good command line");
	promise((access(out_path, F_OK) == 0) == (rc == 0), "OUT is written exactly when merge succeeds");
	promise(entries() == 1 + (rc == 0), "no temporary file is left beside OUT");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *path = fuzz_file(data, size, ".shard");
	if (!out_path[0]) {
		snprintf(out_path, sizeof out_path, "%s/out", fuzz_dir);
		if (!freopen("/dev/null", "w", stdout))
			abort();
	}
	merge(path, (char *[]){ "--format", "table" }, 2);
	merge(path, (char *[]){ "--summary", "--format", "csv" }, 3);
	unlink(out_path);
	return 0;
}
