/* tpc-proxy's configuration file (config.h). libinih does the INI syntax; Debian builds it
 * without line numbers for the handler, so the file is fed to ini_parse_stream through a reader
 * that counts lines, and every error is reported with the line it is on, not only the first. */
#include "config.h"
#include <errno.h>
#include <ini.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define S_NS  (1000LL * 1000 * 1000)
#define MS_NS (1000LL * 1000)

enum { SEC_NONE, SEC_FRONTEND, SEC_BACKEND, SEC_STATS, SEC_BAD };

typedef struct parse {
    const char *file;
    FILE *in, *errs;
    int line; /* the line the reader handed out last */
    int errors;
    px_config *c;
    char section[PX_NAME_MAX * 2]; /* the section being read, as written */
    int kind;                      /* SEC_... */
    unsigned index;                /* of the frontend or backend being read */
    bool stats_seen;
    int stats_line;    /* the line of a [stats] header, 0: none */
    bool stats_listen; /* [stats] has a listen key */
    bool header;       /* the reader saw a [section] line not yet handled */
    int header_line;   /* its line */
    int read_err;      /* errno of a failed read (a directory, say), 0: none */
    char seen[24][24]; /* the keys of the section so far (server and route may repeat) */
    int seen_line[24];
    int nseen;
} parse;

static void error_at(parse *p, int line, const char *fmt, ...)
{
    p->errors++;
    if (!p->errs)
        return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(p->errs, "%s:%d: ", p->file, line);
    vfprintf(p->errs, fmt, ap);
    fputc('\n', p->errs);
    va_end(ap);
}

/* libinih's limit on a section's name (its MAX_SECTION, less the NUL): a longer one it cuts. */
#define INI_SECTION_MAX 49

/* One line for libinih, counted. A line longer than libinih's buffer is an error here, and
 * the rest of it is dropped (libinih would read it as a line of its own). Indentation is taken
 * away (libinih would read an indented line as the previous value's continuation), and so is a
 * UTF-8 byte order mark before the first line. */
static char *reader(char *str, int num, void *stream)
{
    parse *p = stream;
    errno = 0;
    char *s = fgets(str, num, p->in);
    if (!s && ferror(p->in))
        p->read_err = errno ? errno : EIO;
    if (s) {
        p->line++;
        size_t n = strlen(s);
        if (n > 0 && s[n - 1] != '\n' && !feof(p->in)) {
            error_at(p, p->line, "line too long (at most %d characters)", num - 2);
            int ch;
            while ((ch = fgetc(p->in)) != EOF && ch != '\n')
                ;
            s[0] = '\0'; /* an empty line for libinih */
        }
        size_t skip = p->line == 1 && !strncmp(s, "\xEF\xBB\xBF", 3) ? 3 : 0;
        skip += strspn(s + skip, " \t");
        if (skip)
            memmove(s, s + skip, strlen(s + skip) + 1);
        if (*s == '[') {
            p->header = true;
            p->header_line = p->line;
            const char *end = strchr(s, ']');
            if (!end) { /* (libinih took it for a header all the same) */
                error_at(p, p->line, "section header without ]");
                p->header = false;
                s[0] = '\0';
            } else if (end - s == 6 && !strncmp(s, "[stats", 6)) {
                p->stats_line = p->line; /* (a [stats] with no key runs no handler) */
            } else if (end - s - 1 > INI_SECTION_MAX) {
                error_at(p, p->line, "section name too long (at most %d characters in [ ])",
                         INI_SECTION_MAX);
                p->header = false;
                s[0] = '\0';
            }
        } else if (*s && *s != ';' && *s != '#' && *s != '\n' && *s != '\r' && !strpbrk(s, "=:")) {
            /* every such line said (libinih says only the first) */
            error_at(p, p->line,
                     "syntax error (expected [section], key = value, or a ; or # comment)");
            s[0] = '\0';
        }
    }
    return s;
}

int px_duration_parse(const char *text, int64_t *ns)
{
    char *end;
    errno = 0;
    if (!text || *text < '0' || *text > '9')
        return -EINVAL;
    unsigned long long v = strtoull(text, &end, 10);
    int64_t unit;
    if (!strcmp(end, "") || !strcmp(end, "ms"))
        unit = MS_NS;
    else if (!strcmp(end, "s"))
        unit = S_NS;
    else if (!strcmp(end, "m"))
        unit = 60 * S_NS;
    else if (!strcmp(end, "us"))
        unit = 1000;
    else
        return -EINVAL;
    if (errno || v > (unsigned long long)(INT64_MAX / unit))
        return -EINVAL;
    *ns = (int64_t)v * unit;
    return 0;
}

static int parse_uint(const char *text, unsigned lo, unsigned hi, unsigned *out)
{
    char *end;
    errno = 0;
    if (*text < '0' || *text > '9')
        return -EINVAL;
    unsigned long v = strtoul(text, &end, 10);
    if (errno || *end || v < lo || v > hi)
        return -EINVAL;
    *out = (unsigned)v;
    return 0;
}

int px_backend_find(const px_config *c, const char *name)
{
    for (unsigned i = 0; i < c->nbackends; i++)
        if (!strcmp(c->backends[i].name, name))
            return (int)i;
    return -1;
}

static void *grow(void *base, unsigned n, size_t size)
{
    void *p = realloc(base, (n + 1) * size);
    if (p)
        memset((char *)p + n * size, 0, size);
    return p;
}

/* Names go into logs, stats and Prometheus labels as they are: letters, digits and - _ . : */
static bool name_ok(const char *name)
{
    return strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:") ==
           strlen(name);
}

/* A "[kind NAME]" header: a new frontend or backend. */
static void section_start(parse *p, const char *section)
{
    snprintf(p->section, sizeof(p->section), "%s", section);
    char kind[16], name[PX_NAME_MAX + 1], extra[2];
    int n = sscanf(section, "%15s %64s %1s", kind, name, extra);
    px_config *c = p->c;
    if (n == 1 && !strcmp(kind, "stats")) {
        if (p->stats_seen)
            error_at(p, p->header_line, "duplicate section [stats]");
        p->stats_seen = true;
        p->kind = SEC_STATS;
        return;
    }
    if (n != 2 || (strcmp(kind, "frontend") && strcmp(kind, "backend"))) {
        error_at(p, p->header_line,
                 "unknown section [%s] (expected [frontend NAME], [backend NAME] "
                 "or [stats])",
                 section);
        p->kind = SEC_BAD;
        return;
    }
    if (strlen(name) >= PX_NAME_MAX) {
        error_at(p, p->header_line, "name too long in [%s]", section);
        p->kind = SEC_BAD;
        return;
    }
    if (!name_ok(name)) {
        error_at(p, p->header_line, "bad name in [%s] (letters, digits and - _ . : only)", section);
        p->kind = SEC_BAD;
        return;
    }
    if (!strcmp(kind, "frontend")) {
        for (unsigned i = 0; i < c->nfrontends; i++)
            if (!strcmp(c->frontends[i].name, name))
                error_at(p, p->header_line, "duplicate frontend '%s' (first on line %d)", name,
                         c->frontends[i].line);
        px_frontend *f = grow(c->frontends, c->nfrontends, sizeof(*f));
        if (!f) {
            error_at(p, p->header_line, "out of memory");
            p->kind = SEC_BAD;
            return;
        }
        c->frontends = f;
        f += c->nfrontends;
        snprintf(f->name, sizeof(f->name), "%s", name);
        f->line = p->header_line;
        f->maxconn = 10000;
        f->client_idle_ns = 60 * S_NS;
        f->server_connect_ns = 5 * S_NS;
        f->server_idle_ns = 60 * S_NS;
        f->http_request_ns = 10 * S_NS;
        p->index = c->nfrontends++;
        p->kind = SEC_FRONTEND;
    } else {
        if (px_backend_find(c, name) >= 0)
            error_at(p, p->header_line, "duplicate backend '%s' (first on line %d)", name,
                     c->backends[px_backend_find(c, name)].line);
        px_backend *b = grow(c->backends, c->nbackends, sizeof(*b));
        if (!b) {
            error_at(p, p->header_line, "out of memory");
            p->kind = SEC_BAD;
            return;
        }
        c->backends = b;
        b += c->nbackends;
        snprintf(b->name, sizeof(b->name), "%s", name);
        b->line = p->header_line;
        b->check = PX_CHECK_TCP;
        b->check_interval_ns = 2 * S_NS;
        b->rise = 2;
        b->fall = 3;
        snprintf(b->check_path, sizeof(b->check_path), "/");
        p->index = c->nbackends++;
        p->kind = SEC_BACKEND;
    }
}

static bool parse_addr(parse *p, const char *key, const char *value, tpc_addr *out)
{
    if (tpc_addr_parse(value, out) == 0)
        return true;
    error_at(p, p->line,
             "bad address '%s' for %s in [%s] (expected 1.2.3.4:80, [::1]:80 or "
             "unix:/path)",
             value, key, p->section);
    return false;
}

static void duration(parse *p, const char *key, const char *value, int64_t *out)
{
    if (px_duration_parse(value, out) < 0 || *out == 0)
        error_at(p, p->line, "bad duration '%s' for %s in [%s] (expected 5s, 200ms, 1m ...)", value,
                 key, p->section);
}

/* route = HOST PATHPREFIX BACKEND */
static void route_line(parse *p, px_frontend *f, const char *value)
{
    char host[PX_HOST_MAX + 1], prefix[PX_PATH_MAX + 1], backend[PX_NAME_MAX + 1], extra[2];
    int n = sscanf(value, "%128s %256s %64s %1s", host, prefix, backend, extra);
    if (n != 3 || strlen(host) >= PX_HOST_MAX || strlen(prefix) >= PX_PATH_MAX ||
        strlen(backend) >= PX_NAME_MAX || prefix[0] != '/') {
        error_at(p, p->line,
                 "bad route '%s' in [%s] (expected HOST PATHPREFIX BACKEND: a host name or *, "
                 "a path starting with /, a backend)",
                 value, p->section);
        return;
    }
    px_route *r = grow(f->routes, f->nroutes, sizeof(*r));
    if (!r) {
        error_at(p, p->line, "out of memory");
        return;
    }
    f->routes = r;
    r += f->nroutes++;
    snprintf(r->host, sizeof(r->host), "%s", host);
    snprintf(r->prefix, sizeof(r->prefix), "%s", prefix);
    r->prefix_len = strlen(prefix);
    snprintf(r->backend_name, sizeof(r->backend_name), "%s", backend);
    r->line = p->line;
}

/* "NAME ADDR [weight=N]" */
static void server_line(parse *p, px_backend *b, const char *value)
{
    char name[PX_NAME_MAX + 1], addr[128], opt[64], extra[2];
    int n = sscanf(value, "%64s %127s %63s %1s", name, addr, opt, extra);
    if (n < 2 || n > 3) {
        error_at(p, p->line, "bad server '%s' in [%s] (expected NAME ADDR [weight=N])", value,
                 p->section);
        return;
    }
    px_server s = {.weight = 1, .line = p->line};
    if (strlen(name) >= PX_NAME_MAX) {
        error_at(p, p->line, "server name too long in [%s]", p->section);
        return;
    }
    if (!name_ok(name)) {
        error_at(p, p->line, "bad server name '%s' in [%s] (letters, digits and - _ . : only)",
                 name, p->section);
        return;
    }
    snprintf(s.name, sizeof(s.name), "%s", name);
    if (!parse_addr(p, "server", addr, &s.addr))
        return;
    if ((s.addr.sa.sa_family == AF_INET && !s.addr.in4.sin_port) ||
        (s.addr.sa.sa_family == AF_INET6 && !s.addr.in6.sin6_port)) {
        error_at(p, p->line, "server '%s' in [%s] has port 0 (nothing listens there)", name,
                 p->section);
        return;
    }
    if (n == 3 && (strncmp(opt, "weight=", 7) || parse_uint(opt + 7, 1, 256, &s.weight) < 0)) {
        error_at(p, p->line, "bad server option '%s' in [%s] (expected weight=1..256)", opt,
                 p->section);
        return;
    }
    for (unsigned i = 0; i < b->nservers; i++)
        if (!strcmp(b->servers[i].name, s.name)) {
            error_at(p, p->line, "duplicate server '%s' in [%s] (first on line %d)", s.name,
                     p->section, b->servers[i].line);
            return;
        }
    if (b->nservers == PX_SERVERS_MAX) {
        error_at(p, p->line, "too many servers in [%s] (at most %d)", p->section, PX_SERVERS_MAX);
        return;
    }
    px_server *v = grow(b->servers, b->nservers, sizeof(*v));
    if (!v) {
        error_at(p, p->line, "out of memory");
        return;
    }
    b->servers = v;
    v[b->nservers++] = s;
}

static void frontend_key(parse *p, px_frontend *f, const char *key, const char *value)
{
    if (!strcmp(key, "listen"))
        f->has_listen = parse_addr(p, key, value, &f->listen) || f->has_listen;
    else if (!strcmp(key, "route"))
        route_line(p, f, value);
    else if (!strcmp(key, "mode")) {
        f->mode_line = p->line;
        if (!strcmp(value, "tcp"))
            f->mode = PX_MODE_TCP;
        else if (!strcmp(value, "http"))
            f->mode = PX_MODE_HTTP;
        else
            error_at(p, p->line, "bad mode '%s' in [%s] (expected tcp or http)", value, p->section);
    } else if (!strcmp(key, "accept")) {
        if (!strcmp(value, "reuseport") || !strcmp(value, "handoff"))
            f->handoff = !strcmp(value, "handoff");
        else
            error_at(p, p->line, "bad accept '%s' in [%s] (expected reuseport or handoff)", value,
                     p->section);
    } else if (!strcmp(key, "maxconn")) {
        if (parse_uint(value, 1, 10000000, &f->maxconn) < 0)
            error_at(p, p->line, "bad maxconn '%s' in [%s] (expected 1..10000000)", value,
                     p->section);
    } else if (!strcmp(key, "timeout_client_idle"))
        duration(p, key, value, &f->client_idle_ns);
    else if (!strcmp(key, "timeout_server_connect"))
        duration(p, key, value, &f->server_connect_ns);
    else if (!strcmp(key, "timeout_server_idle"))
        duration(p, key, value, &f->server_idle_ns);
    else if (!strcmp(key, "timeout_http_request"))
        duration(p, key, value, &f->http_request_ns);
    else if (!strcmp(key, "backend")) {
        if (strlen(value) >= PX_NAME_MAX || !*value)
            error_at(p, p->line, "bad backend name '%s' in [%s]", value, p->section);
        else {
            snprintf(f->backend_name, sizeof(f->backend_name), "%s", value);
            f->backend_line = p->line;
        }
    } else
        error_at(p, p->line, "unknown key '%s' in [%s]", key, p->section);
}

static void backend_key(parse *p, px_backend *b, const char *key, const char *value)
{
    if (!strcmp(key, "server"))
        server_line(p, b, value);
    else if (!strcmp(key, "balance")) {
        if (!strcmp(value, "roundrobin"))
            b->balance = PX_BAL_ROUNDROBIN;
        else if (!strcmp(value, "leastconn"))
            b->balance = PX_BAL_LEASTCONN;
        else if (!strcmp(value, "source"))
            b->balance = PX_BAL_SOURCE;
        else
            error_at(p, p->line,
                     "bad balance '%s' in [%s] (expected roundrobin, leastconn or source)", value,
                     p->section);
    } else if (!strcmp(key, "check")) {
        if (!strcmp(value, "tcp"))
            b->check = PX_CHECK_TCP;
        else if (!strcmp(value, "http"))
            b->check = PX_CHECK_HTTP;
        else if (!strcmp(value, "none"))
            b->check = PX_CHECK_NONE;
        else
            error_at(p, p->line, "bad check '%s' in [%s] (expected tcp, http or none)", value,
                     p->section);
    } else if (!strcmp(key, "check_path")) {
        bool ok = value[0] == '/' && strlen(value) < PX_PATH_MAX;
        for (const char *c = value; ok && *c; c++)
            ok = *c > ' ' && *c < 127;
        if (ok)
            snprintf(b->check_path, sizeof(b->check_path), "%s", value);
        else
            error_at(p, p->line,
                     "bad check_path '%s' in [%s] (expected a path starting with /, no spaces)",
                     value, p->section);
    } else if (!strcmp(key, "check_interval"))
        duration(p, key, value, &b->check_interval_ns);
    else if (!strcmp(key, "rise") || !strcmp(key, "fall")) {
        if (parse_uint(value, 1, 1000, !strcmp(key, "rise") ? &b->rise : &b->fall) < 0)
            error_at(p, p->line, "bad %s '%s' in [%s] (expected 1..1000)", key, value, p->section);
    } else
        error_at(p, p->line, "unknown key '%s' in [%s]", key, p->section);
}

static int handler(void *user, const char *section, const char *key, const char *value)
{
    parse *p = user;
    if (p->header) {
        p->header = false;
        p->nseen = 0;
        section_start(p, section);
    }
    if (p->kind == SEC_BAD)
        return 1; /* reported with its header */
    if (p->kind != SEC_NONE && strcmp(key, "server") && strcmp(key, "route")) {
        for (int i = 0; i < p->nseen; i++)
            if (!strcmp(p->seen[i], key)) {
                error_at(p, p->line, "duplicate key '%s' in [%s] (first on line %d)", key,
                         p->section, p->seen_line[i]);
                return 1;
            }
        if (p->nseen < 24 && strlen(key) < sizeof(p->seen[0])) {
            strcpy(p->seen[p->nseen], key);
            p->seen_line[p->nseen++] = p->line;
        }
    }
    if (p->kind == SEC_FRONTEND)
        frontend_key(p, &p->c->frontends[p->index], key, value);
    else if (p->kind == SEC_BACKEND)
        backend_key(p, &p->c->backends[p->index], key, value);
    else if (p->kind == SEC_NONE)
        error_at(p, p->line,
                 "'%s' outside any section (a key goes under [frontend NAME], "
                 "[backend NAME] or [stats])",
                 key);
    else if (!strcmp(key, "listen")) {
        p->stats_listen = true;
        if (parse_addr(p, key, value, &p->c->stats_listen))
            p->c->has_stats = true;
    } else
        error_at(p, p->line, "unknown key '%s' in [%s]", key, p->section);
    return 1;
}

/* The same fixed address (port 0 lets the kernel choose: never the same). */
static bool same_addr(const tpc_addr *a, const tpc_addr *b)
{
    if ((a->sa.sa_family == AF_INET && a->in4.sin_port == 0) ||
        (a->sa.sa_family == AF_INET6 && a->in6.sin6_port == 0))
        return false;
    if (a->sa.sa_family == AF_INET && b->sa.sa_family == AF_INET &&
        a->in4.sin_port == b->in4.sin_port &&
        (a->in4.sin_addr.s_addr == INADDR_ANY || b->in4.sin_addr.s_addr == INADDR_ANY))
        return true; /* a wildcard takes the port on every address */
    if (a->sa.sa_family == AF_INET6 && b->sa.sa_family == AF_INET6 &&
        a->in6.sin6_port == b->in6.sin6_port &&
        (IN6_IS_ADDR_UNSPECIFIED(&a->in6.sin6_addr) || IN6_IS_ADDR_UNSPECIFIED(&b->in6.sin6_addr)))
        return true;
    return a->len == b->len && !memcmp(&a->sa, &b->sa, a->len);
}

/* What holds across sections, once all are read. */
static void validate(parse *p)
{
    px_config *c = p->c;
    if (p->stats_line && !p->stats_listen)
        error_at(p, p->stats_line, "no listen address in [stats]");
    if (c->nfrontends > PX_FRONTENDS_MAX)
        error_at(p, c->frontends[PX_FRONTENDS_MAX].line, "more than %d frontends",
                 PX_FRONTENDS_MAX);
    if (c->nfrontends == 0)
        error_at(p, p->line, "no [frontend NAME] section");
    for (unsigned i = 0; i < c->nfrontends; i++) {
        px_frontend *f = &c->frontends[i];
        if (!f->has_listen)
            error_at(p, f->line, "no listen address in [frontend %s]", f->name);
        if (!f->backend_name[0])
            error_at(p, f->line, "no backend in [frontend %s]", f->name);
        else {
            int b = px_backend_find(c, f->backend_name);
            if (b < 0)
                error_at(p, f->backend_line, "unknown backend '%s' in [frontend %s]",
                         f->backend_name, f->name);
            else
                f->backend = (unsigned)b;
        }
        for (unsigned r = 0; r < f->nroutes; r++) {
            px_route *rt = &f->routes[r];
            int b = px_backend_find(c, rt->backend_name);
            if (b < 0)
                error_at(p, rt->line, "unknown backend '%s' in a route of [frontend %s]",
                         rt->backend_name, f->name);
            else
                rt->backend = (unsigned)b;
            if (f->mode != PX_MODE_HTTP)
                error_at(p, rt->line, "route in [frontend %s] needs mode = http", f->name);
        }
        for (unsigned j = 0; j < i && f->has_listen; j++)
            if (c->frontends[j].has_listen && same_addr(&f->listen, &c->frontends[j].listen))
                error_at(p, f->line, "[frontend %s] listens where [frontend %s] does", f->name,
                         c->frontends[j].name);
        if (f->has_listen && c->has_stats && same_addr(&f->listen, &c->stats_listen))
            error_at(p, f->line, "[frontend %s] listens where [stats] does", f->name);
    }
    for (unsigned i = 0; i < c->nbackends; i++)
        if (c->backends[i].nservers == 0)
            error_at(p, c->backends[i].line, "no server in [backend %s]", c->backends[i].name);
}

int px_config_load(const char *file, px_config **out, FILE *errs)
{
    *out = NULL;
    parse p = {.file = file, .errs = errs};
    p.in = fopen(file, "r");
    if (!p.in) {
        int err = errno;
        if (errs)
            fprintf(errs, "%s: cannot open: %s\n", file, strerror(err));
        return -err;
    }
    p.c = calloc(1, sizeof(*p.c));
    if (!p.c) {
        fclose(p.in);
        return -ENOMEM;
    }
    int rc = ini_parse_stream(reader, &p, handler, &p);
    fclose(p.in);
    if (p.read_err)
        error_at(&p, p.line, "cannot read: %s", strerror(p.read_err));
    else if (rc > 0)
        error_at(&p, rc, "syntax error (expected [section], key = value, or a ; or # comment)");
    else if (rc < 0)
        error_at(&p, 0, "cannot read");
    if (!p.read_err)
        validate(&p);
    if (p.errors) {
        px_config_free(p.c);
        return p.errors;
    }
    *out = p.c;
    return 0;
}

void px_config_free(px_config *c)
{
    if (!c)
        return;
    for (unsigned i = 0; i < c->nbackends; i++)
        free(c->backends[i].servers);
    for (unsigned i = 0; i < c->nfrontends; i++)
        free(c->frontends[i].routes);
    free(c->backends);
    free(c->frontends);
    free(c);
}
