/* tpc-proxy: a TCP reverse proxy (README.md).
 *   tpc-proxy -c FILE [--shards N]     run
 *   tpc-proxy --check -c FILE          validate FILE: its errors with line numbers, exit 1 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tpc.h>
#include "config.h"

static int usage(const char *argv0)
{
    fprintf(stderr, "usage: %s [--check] -c FILE [--shards N]\n", argv0);
    return 2;
}

int main(int argc, char **argv)
{
    const char *file = NULL;
    int check = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-c") && i + 1 < argc)
            file = argv[++i];
        else if (!strcmp(argv[i], "--check"))
            check = 1;
        else
            return usage(argv[0]);
    }
    if (!file)
        return usage(argv[0]);
    px_config *c;
    int rc = px_config_load(file, &c, stderr);
    if (rc != 0)
        return 1;
    if (check) {
        printf("%s: ok\n", file);
        px_config_free(c);
        return 0;
    }
    px_config_free(c);
    return 0;
}
