/*
 * scan: reads every file of the dataset shard a jupyter-edge site preopened
 * (read-only, at $EDGE_DATASET_PATH) and prints one line per file, then a total.
 *
 *   scan count WORD   lines, and lines holding WORD as a whole word
 *   scan sum          the sum of the number that starts each line
 *
 * Built for WebAssembly (WASI) with Debian's clang, lld and wasi-libc:
 *   clang --target=wasm32-wasi -O2 -Wl,--strip-all -o scan.wasm scan.c
 * It runs wherever a site was started with --wasm, whatever the machine.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_FILES 4096
#define MAX_NAME 256

/* Static, not on the stack: wasm-ld gives a module a 64 KiB stack. */
static char line[1 << 20];
static char names[MAX_FILES][MAX_NAME];

static int by_name(const void *a, const void *b) { return strcmp(a, b); }

/* Whether WORD is one of the whitespace-separated words of TEXT. */
static int has_word(const char *text, const char *word) {
    size_t n = strlen(word);
    for (const char *p = text; (p = strstr(p, word)) != NULL; p += n) {
        int starts = p == text || p[-1] == ' ' || p[-1] == '\t';
        char after = p[n];
        if (starts && (after == '\0' || after == ' ' || after == '\t' || after == '\n' || after == '\r')) {
            return 1;
        }
    }
    return 0;
}

static int usage(void) {
    fprintf(stderr, "usage: scan count WORD | scan sum\n");
    return 2;
}

int main(int argc, char **argv) {
    const char *root = getenv("EDGE_DATASET_PATH");
    if (root == NULL) {
        fprintf(stderr, "scan: EDGE_DATASET_PATH is not set: run it with --data NAME\n");
        return 2;
    }
    if (argc < 2) return usage();
    int counting = strcmp(argv[1], "count") == 0;
    if (!counting && strcmp(argv[1], "sum") != 0) return usage();
    if (counting && argc < 3) return usage();

    DIR *dir = opendir(root);
    if (dir == NULL) {
        perror(root);
        return 2;
    }
    int files = 0;
    struct dirent *entry;
    while ((entry = readdir(dir)) != NULL && files < MAX_FILES) {
        if (entry->d_type == DT_REG && strlen(entry->d_name) < MAX_NAME) {
            strcpy(names[files++], entry->d_name);
        }
    }
    closedir(dir);
    qsort(names, files, MAX_NAME, by_name);

    long total_lines = 0, total_matches = 0;
    double total_sum = 0;
    for (int i = 0; i < files; i++) {
        char path[MAX_NAME * 2];
        snprintf(path, sizeof path, "%s/%s", root, names[i]);
        FILE *f = fopen(path, "r");
        if (f == NULL) {
            perror(path);
            return 3;
        }
        long lines = 0, matches = 0;
        double sum = 0;
        while (fgets(line, sizeof line, f) != NULL) {
            lines++;
            if (counting) {
                matches += has_word(line, argv[2]);
            } else {
                char *end;
                double value = strtod(line, &end);
                if (end != line) sum += value;
            }
        }
        fclose(f);
        if (counting) {
            printf("%s %ld %ld\n", names[i], lines, matches);
        } else {
            printf("%s %ld %.6f\n", names[i], lines, sum);
        }
        total_lines += lines;
        total_matches += matches;
        total_sum += sum;
    }
    if (counting) {
        printf("total %ld %ld\n", total_lines, total_matches);
    } else {
        printf("total %ld %.6f\n", total_lines, total_sum);
    }
    return 0;
}
