/* RESP2, the Redis protocol: parsing commands (arrays of bulk strings, and the inline form) and
 * writing replies. No libtpc here: the parser works on a buffer, so that the fuzz target and the
 * tests drive it without a runtime. */
#ifndef KV_RESP_H
#define KV_RESP_H

#include <stddef.h>
#include <stdint.h>

struct resp_limits {
    size_t max_bulk;   /* the longest argument, in bytes */
    size_t max_args;   /* the most arguments of one command */
    size_t max_inline; /* the longest inline command line */
};

/* The arguments of the commands parsed so far (pointers into the parsed buffer): a parse
 * appends one command's arguments. Reset with resp_args_clear; free with resp_args_free.
 * A multibulk command that is only partly there when it is the first parsed into a (n == 0)
 * keeps what was parsed of it (resume: its arguments so far, as offsets from its start), so
 * that the next parse of it, with more bytes, goes on where this one stopped: a command of many
 * arguments that comes in small pieces is parsed once, not once per piece. */
struct resp_args {
    const char **argv;
    size_t *argl;
    size_t n, cap;
    struct {
        long long count; /* its argument count */
        size_t done;     /* arguments parsed (argv[0..done)), 0: nothing kept */
        size_t pos;      /* where the next argument's header begins */
    } resume;
};

/* Drops the commands parsed; keeps a partial command's progress (see above). */
void resp_args_clear(struct resp_args *a);
void resp_args_free(struct resp_args *a);

/* Parses one command at buf[0..len) and appends its arguments to a (they point into buf, which
 * must stay put while they are used; an inline command's quoted arguments are unescaped in
 * place, so buf is written). Returns the bytes the command took (> 0; an empty command, such as
 * a blank line or "*0", adds no argument); 0 when buf holds only part of a command, with *need
 * set to the whole command's length if it is known yet (a bulk's length says it), else 0; or -1
 * for a protocol error, with *err pointing at Redis's message (the connection then closes).
 * Nothing is appended unless the whole command is there, but for the progress kept of a partial
 * first command: the next call must then pass the same command at buf (more of it), after
 * resp_args_clear. */
long resp_parse(char *buf, size_t len, const struct resp_limits *lim, struct resp_args *a,
                size_t *need, const char **err);

/* A growable reply buffer. Allocation failure aborts (as Redis does). */
struct sbuf {
    char *p;
    size_t len, cap;
};

void sb_free(struct sbuf *b);
char *sb_room(struct sbuf *b, size_t n); /* n writable bytes at the end (not yet counted) */
void sb_put(struct sbuf *b, const void *p, size_t n);
void sb_simple(struct sbuf *b, const char *s); /* +s\r\n */
void sb_error(struct sbuf *b, const char *s);  /* -s\r\n (s starts with ERR, WRONGTYPE ...) */
void sb_errorf(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sb_int(struct sbuf *b, long long v); /* :v\r\n */
/* :digits\r\n, for an integer already formatted (resp_fmt_ll). */
void sb_int_text(struct sbuf *b, const char *digits, size_t n);
void sb_bulk(struct sbuf *b, const void *p, size_t n);
void sb_nil(struct sbuf *b); /* $-1\r\n */
void sb_array(struct sbuf *b, long long n);

/* Reads a whole decimal integer (optional '-'; no spaces, no '+', no leading zeros other than
 * "0" itself; fits in long long). Returns 0 or -1. */
int resp_ll(const char *p, size_t n, long long *out);
/* Writes v in decimal at out (no terminating NUL); returns its length (at most 20). */
size_t resp_fmt_ll(char out[24], long long v);

#endif
