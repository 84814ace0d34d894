/* libFuzzer target for tpc-kv's RESP parser (resp.c). The input is parsed whole, then again fed
 * in pieces as a connection receives it (the first byte picks the piece size), growing the
 * buffer each time the parser asks for more. Checked:
 * - both ways give the same commands (argument counts and bytes) and the same end: an error,
 *   or the same bytes left unparsed;
 * - a parse that asks for more never consumed anything, and a `need` it reports is beyond what
 *   is buffered;
 * - no argument is longer than the bulk limit, no command has more arguments than the limit;
 * - every command written back in the array form parses again to the same arguments.
 * Built into the fuzz configuration (tests/fuzz/meson.build, target fuzz-kv-resp; seeds in
 * tests/fuzz/corpus/kv-resp). Linked with ../corpus-replay.c it replays files of hex lines: the
 * kv-resp-corpus test does so with resp-corpus.hex. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "resp.h"

static const struct resp_limits lim = {.max_bulk = 64, .max_args = 16, .max_inline = 256};

struct result {
    size_t nargs;
    char *bytes; /* every argument, each preceded by its length as 8 bytes */
    size_t len;
    size_t ncmds;
    int error;
    size_t consumed;
};

static void check(int cond, const char *what)
{
    if (!cond) {
        fprintf(stderr, "kv resp fuzz: %s\n", what);
        abort();
    }
}

static void record(struct result *r, const struct resp_args *a, size_t from)
{
    for (size_t i = from; i < a->n; i++) {
        check(a->argl[i] <= lim.max_bulk, "argument too long");
        r->bytes = realloc(r->bytes, r->len + 8 + a->argl[i]);
        uint64_t l = a->argl[i];
        memcpy(r->bytes + r->len, &l, 8);
        memcpy(r->bytes + r->len + 8, a->argv[i], a->argl[i]);
        r->len += 8 + a->argl[i];
    }
    check(a->n - from <= lim.max_args, "too many arguments");
    r->nargs += a->n - from;
}

/* Re-encodes a command's arguments as an array and checks they parse back the same. */
static void roundtrip(const struct resp_args *a, size_t from)
{
    struct sbuf b = {0};
    sb_array(&b, (long long)(a->n - from));
    for (size_t i = from; i < a->n; i++)
        sb_bulk(&b, a->argv[i], a->argl[i]);
    struct resp_args back = {0};
    size_t need;
    const char *err;
    long r = resp_parse(b.p, b.len, &lim, &back, &need, &err);
    check(r == (long)b.len || (a->n == from && r > 0), "re-encoded command does not parse whole");
    check(back.n == a->n - from, "re-encoded command has another argument count");
    for (size_t i = 0; i < back.n; i++)
        check(back.argl[i] == a->argl[from + i] &&
                  memcmp(back.argv[i], a->argv[from + i], back.argl[i]) == 0,
              "re-encoded argument differs");
    resp_args_free(&back);
    sb_free(&b);
}

/* Parses buf[0..len) as a connection would, receiving `piece` bytes at a time. */
static void run(const uint8_t *data, size_t size, size_t piece, struct result *r)
{
    char *buf = malloc(size + 1);
    size_t have = 0, off = 0;
    struct resp_args a = {0};
    memset(r, 0, sizeof(*r));
    for (;;) {
        size_t need;
        const char *err;
        resp_args_clear(&a); /* (as the connection does: a partial command's progress stays) */
        long n = resp_parse(buf + off, have - off, &lim, &a, &need, &err);
        if (n < 0) {
            check(a.n == 0 && a.resume.done == 0, "a failed parse left arguments");
            r->error = 1;
            break;
        }
        if (n > 0) {
            check((size_t)n <= have - off, "parse took more than buffered");
            check(a.resume.done == 0, "a whole command left progress behind");
            record(r, &a, 0);
            roundtrip(&a, 0);
            r->ncmds++;
            off += (size_t)n;
            continue;
        }
        check(a.n == a.resume.done, "a partial parse appended arguments");
        check(need == 0 || need > have - off, "need is not beyond what is buffered");
        if (have == size)
            break;
        size_t take = size - have < piece ? size - have : piece;
        memcpy(buf + have, data + have, take);
        have += take;
    }
    r->consumed = off;
    resp_args_free(&a);
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t piece = (size_t)(data[0] % 17) + 1;
    data++;
    size--;
    struct result whole, pieces;
    run(data, size, size ? size : 1, &whole);
    run(data, size, piece, &pieces);
    check(whole.error == pieces.error, "whole and pieces disagree on an error");
    check(whole.ncmds == pieces.ncmds && whole.nargs == pieces.nargs,
          "whole and pieces disagree on the commands");
    check(whole.len == pieces.len && (!whole.len || !memcmp(whole.bytes, pieces.bytes, whole.len)),
          "whole and pieces disagree on the arguments");
    check(whole.consumed == pieces.consumed, "whole and pieces disagree on what was left");
    free(whole.bytes);
    free(pieces.bytes);
    return 0;
}
