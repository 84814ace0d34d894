/* A main() for a libFuzzer target built without libFuzzer: each argument is a file of inputs,
 * one per line in hex ('#' lines are comments), each run through LLVMFuzzerTestOneInput, whose
 * checks abort on a finding. The corpus tests (http-parse-corpus, proxy-head-corpus) replay the
 * targets' committed corpora this way in every build. Fails if no input was read. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int hex(int ch)
{
    return ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
}

int main(int argc, char **argv)
{
    static char line[1 << 17];
    static uint8_t buf[1 << 16];
    long inputs = 0;
    for (int i = 1; i < argc; i++) {
        FILE *f = fopen(argv[i], "r");
        if (!f) {
            perror(argv[i]);
            return 1;
        }
        while (fgets(line, sizeof(line), f)) {
            if (line[0] == '#')
                continue;
            size_t n = 0;
            for (char *p = line; hex(p[0]) >= 0 && hex(p[1]) >= 0 && n < sizeof(buf); p += 2)
                buf[n++] = (uint8_t)(hex(p[0]) << 4 | hex(p[1]));
            LLVMFuzzerTestOneInput(buf, n);
            inputs++;
        }
        fclose(f);
    }
    printf("%s: %ld inputs replayed, every check held\n", argv[0], inputs);
    return inputs ? 0 : 1;
}
