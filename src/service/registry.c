/* The built-in services, by name. */
#include "ioplex.h"

#include <string.h>

extern const struct iop_service iop__service_ack, iop__service_echo,
    iop__service_discard, iop__service_daytime, iop__service_chargen,
    iop__service_bytes, iop__service_chat;

static const struct iop_service *const services[] = {
    &iop__service_ack,     &iop__service_echo,    &iop__service_discard,
    &iop__service_daytime, &iop__service_chargen, &iop__service_bytes,
    &iop__service_chat,    NULL,
};

const struct iop_service *const *iop_services(void) { return services; }

const struct iop_service *iop_service_find(const char *name)
{
    for (size_t i = 0; services[i]; i++)
        if (strcmp(services[i]->name, name) == 0)
            return services[i];
    return NULL;
}
