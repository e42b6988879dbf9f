#include "ioplex.h"

#include <string.h>

const char *iop_strerror(int err)
{
    switch (err) {
    case 0: return "success";
    case IOP_EADDR: return "malformed address";
    case IOP_ERESOLVE: return "name does not resolve";
    case IOP_ERESOLVE_AGAIN: return "temporary failure in name resolution";
    case IOP_EMODEL: return "unknown model";
    case IOP_ESERVICE: return "unknown service";
    case IOP_EUNFIT: return "model, service and transport do not fit together";
    }
    return strerror(err < 0 ? -err : err);
}
