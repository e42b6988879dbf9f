/* The built-in services, by name. */
#include "ioplex.h"

#include <string.h>

extern const struct iop_service iop_service_ack, iop_service_echo,
    iop_service_discard, iop_service_daytime, iop_service_chargen,
    iop_service_bytes, iop_service_chat;

static const struct iop_service *const services[] = {
    &iop_service_ack,     &iop_service_echo,    &iop_service_discard,
    &iop_service_daytime, &iop_service_chargen, &iop_service_bytes,
    &iop_service_chat,    NULL,
};

const struct iop_service *const *iop_services(void) { return services; }

const struct iop_service *iop_service_find(const char *name)
{
    for (size_t i = 0; services[i]; i++)
        if (strcmp(services[i]->name, name) == 0)
            return services[i];
    return NULL;
}
