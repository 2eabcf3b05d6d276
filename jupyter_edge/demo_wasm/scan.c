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
/* Each read is a call out to the host: read in large blocks, not stdio's 1 KiB. */
static char block[1 << 20];
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

/* The number that starts TEXT (like strtod; *END is TEXT when there is none).
 * wasi-libc's strtod computes in long double, which wasm32 emulates in
 * software, several times slower than this, which needs only doubles: up to
 * 19 significant digits, as a whole number scaled by a power of ten. */
static double number(const char *text, const char **end) {
    static const double tens[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9, 1e10,
                                  1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
    const char *p = text;
    while (*p == ' ' || *p == '\t') p++;
    int negative = *p == '-';
    if (*p == '-' || *p == '+') p++;
    unsigned long long digits = 0;
    int count = 0, scale = 0;
    const char *start = p;
    for (; *p >= '0' && *p <= '9'; p++, count++) {
        if (count < 19) digits = digits * 10 + (unsigned)(*p - '0'); else scale++;
    }
    if (*p == '.') {
        for (p++; *p >= '0' && *p <= '9'; p++, count++) {
            if (count < 19) { digits = digits * 10 + (unsigned)(*p - '0'); scale--; }
        }
    }
    if (count == 0) {
        *end = text;
        return 0;
    }
    if ((*p == 'e' || *p == 'E') && p > start) {
        const char *q = p + 1;
        int sign = *q == '-' ? -1 : 1, exponent = 0;
        if (*q == '-' || *q == '+') q++;
        if (*q >= '0' && *q <= '9') {
            for (; *q >= '0' && *q <= '9'; q++) if (exponent < 400) exponent = exponent * 10 + (*q - '0');
            scale += sign * exponent;
            p = q;
        }
    }
    *end = p;
    double value = (double)digits;
    if (scale < 0) value = -scale <= 22 ? value / tens[-scale] : strtod(text, (char **)end);
    else if (scale > 0) value = scale <= 22 ? value * tens[scale] : strtod(text, (char **)end);
    return negative ? -value : value;
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
        setvbuf(f, block, _IOFBF, sizeof block);
        long lines = 0, matches = 0;
        double sum = 0;
        while (fgets(line, sizeof line, f) != NULL) {
            lines++;
            if (counting) {
                matches += has_word(line, argv[2]);
            } else {
                const char *end;
                double value = number(line, &end);
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
