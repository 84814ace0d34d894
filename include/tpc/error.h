/* Errors. Every libtpc call that can fail returns a negative errno value (e.g. -EINVAL). */
#ifndef TPC_ERROR_H
#define TPC_ERROR_H

#include <errno.h>
#include "common.h"

/* A short English description of a negative errno value (e.g. tpc_strerror(-EPERM)).
 * Never NULL; the string is static. Unknown codes give "unknown error". */
TPC_EXTERN const char *tpc_strerror(int err);

/* The symbolic name of a negative errno value ("EPERM"), or "UNKNOWN". Static string. */
TPC_EXTERN const char *tpc_err_name(int err);

#endif
