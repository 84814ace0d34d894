/* libtpc version numbers. */
#ifndef TPC_VERSION_H
#define TPC_VERSION_H

#define TPC_VERSION_MAJOR 0
#define TPC_VERSION_MINOR 3
#define TPC_VERSION_PATCH 0
#define TPC_VERSION_HEX   ((TPC_VERSION_MAJOR << 16) | (TPC_VERSION_MINOR << 8) | TPC_VERSION_PATCH)

#endif
