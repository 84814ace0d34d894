/* libFuzzer target: tpc_addr_parse on any text. Whatever it accepts, tpc_addr_format writes in a
 * form that parses back to the same address (round trip); it never reads past the text or
 * crashes on anything. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "tpc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1); /* exactly the text: ASan sees any read past it */
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = 0;
    tpc_addr a, b;
    if (tpc_addr_parse(text, &a) == 0) {
        char out[256];
        int n = tpc_addr_format(&a, out, sizeof(out));
        if (n < 0 || (size_t)n >= sizeof(out))
            abort(); /* a parsed address always formats, and fits */
        if (tpc_addr_parse(out, &b) != 0 || a.len != b.len || memcmp(&a.sa, &b.sa, a.len) != 0)
            abort(); /* and parses back to itself */
        char small[8];
        if (tpc_addr_format(&a, small, sizeof(small)) != n)
            abort(); /* like snprintf: the whole length, even when cut */
    }
    free(text);
    return 0;
}
