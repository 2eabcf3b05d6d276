/* What a module can reach at a site: it tries to write into its dataset's shard
 * (preopened read-only) and to read /etc/passwd (never preopened), and says how
 * each went, and what $GREETING holds. Exit 0 only if both were refused. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int refused(const char *what, const char *path, const char *mode) {
    FILE *f = fopen(path, mode);
    if (f != NULL) {
        printf("%s %s: allowed\n", what, path);
        fclose(f);
        return 0;
    }
    printf("%s %s: refused (%s)\n", what, path, strerror(errno));
    return 1;
}

int main(void) {
    const char *root = getenv("EDGE_DATASET_PATH");
    char path[512];
    snprintf(path, sizeof path, "%s/written-by-a-module.txt", root ? root : "/data");
    int ok = refused("write", path, "w");
    ok &= refused("read", "/etc/passwd", "r");
    const char *greeting = getenv("GREETING");
    if (greeting != NULL) printf("GREETING=%s\n", greeting);
    return ok ? 0 : 1;
}
