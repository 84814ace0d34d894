/* libFuzzer target for tpc-http's request parser (http-parse.c on http_parser): any input, fed
 * whole and fed in pieces (sizes taken from the input's first byte), and fed whole with the
 * fast path off (http_parser for every request), must give the same answers byte for byte,
 * never write past the output buffer, and always make progress.
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -I examples examples/http-parse-fuzz.c \
 *       examples/http-parse.c -lhttp_parser -o http-parse-fuzz && ./http-parse-fuzz -max_len=4096
 * Linked with corpus-replay.c instead of libFuzzer, it runs inputs from files of hex lines
 * through the same checks: the suite does so with tests/http-parse-corpus.hex, the corpus of
 * the libFuzzer runs. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "http-parse.h"

#define OUT_CAP (2 * HTTP_ANSWER_MAX) /* small, so that the room check is exercised */

/* Feeds in[0..len) in pieces of at most `piece` bytes; the answers are appended to all[]
 * (the output buffer is emptied whenever feed asks for room, as a server sends it). */
static size_t run(const char *in, size_t len, size_t piece, char *all, size_t all_cap)
{
    http_conn c;
    http_conn_init(&c);
    char out[OUT_CAP];
    size_t out_len = 0, total = 0, off = 0;
    while (off < len && !http_conn_closing(&c)) {
        size_t n = len - off < piece ? len - off : piece;
        size_t used = http_conn_feed(&c, in + off, n, out, &out_len, sizeof(out));
        if (used > n || out_len > sizeof(out))
            abort();
        if (used == 0 && !http_conn_closing(&c) && sizeof(out) - out_len >= HTTP_ANSWER_MAX)
            abort(); /* no progress although there is room */
        if (total + out_len > all_cap)
            abort();
        memcpy(all + total, out, out_len);
        total += out_len;
        out_len = 0;
        off += used;
    }
    if (http_conn_failed(&c) && !http_conn_closing(&c))
        abort();
    return total;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t piece = data[0] % 16 + 1;
    const char *in = (const char *)data + 1;
    size_t len = size - 1;
    /* At most one answer per input byte, and an answer is shorter than HTTP_ANSWER_MAX. */
    size_t cap = (len + 1) * HTTP_ANSWER_MAX;
    char *whole = malloc(cap), *pieces = malloc(cap);
    if (!whole || !pieces)
        abort();
    size_t a = run(in, len, len ? len : 1, whole, cap);
    size_t b = run(in, len, piece, pieces, cap);
    if (a != b || memcmp(whole, pieces, a))
        abort(); /* the answers depend on how the input arrives */
    http_fast_path = false;
    b = run(in, len, len ? len : 1, pieces, cap);
    http_fast_path = true;
    if (a != b || memcmp(whole, pieces, a))
        abort(); /* the fast path answers otherwise than http_parser */
    free(whole);
    free(pieces);
    return 0;
}
