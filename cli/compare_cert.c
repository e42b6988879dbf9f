/*
 * ioplex compare's TLS scenarios need a certificate for the servers it
 * starts: a throwaway one, made here with OpenSSL's API (an EC P-256 key,
 * self-signed, a day long, CN=localhost with the loopback names) rather
 * than by running the openssl command, which a machine with the library
 * need not have. bench --tls does not verify, so nothing trusts it; it
 * lives in a private temporary directory removed at the end.
 */
#define _GNU_SOURCE
#include "compare.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int write_pem(const char *path, EVP_PKEY *key, X509 *cert)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!f) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    int ok = key ? PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL)
                 : PEM_write_X509(f, cert);
    return (fclose(f) == 0 && ok == 1) ? 0 : -1;
}

int cmp_make_cert(struct cmp_cert *c)
{
    memset(c, 0, sizeof *c);
    snprintf(c->dir, sizeof c->dir, "%s/ioplex-compare.XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(c->dir)) /* mode 0700: the key is nobody else's */
        return -1;
    snprintf(c->cert, sizeof c->cert, "%s/cert.pem", c->dir);
    snprintf(c->key, sizeof c->key, "%s/key.pem", c->dir);
    int rc = -1;
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    X509_EXTENSION *san = NULL;
    if (!key || !x)
        goto out;
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), -60);
    X509_gmtime_adj(X509_getm_notAfter(x), 24 * 3600);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"localhost",
                               -1, -1, 0);
    X509_set_issuer_name(x, name);
    X509_set_pubkey(x, key);
    san = X509V3_EXT_conf_nid(NULL, NULL, NID_subject_alt_name,
                              "DNS:localhost,IP:127.0.0.1,IP:::1");
    if (!san || !X509_add_ext(x, san, -1) || !X509_sign(x, key, EVP_sha256()))
        goto out;
    if (write_pem(c->key, key, NULL) != 0 || write_pem(c->cert, NULL, x) != 0)
        goto out;
    rc = 0;
out:
    X509_EXTENSION_free(san);
    X509_free(x);
    EVP_PKEY_free(key);
    if (rc != 0)
        cmp_remove_cert(c);
    return rc;
}

void cmp_remove_cert(struct cmp_cert *c)
{
    if (!c->dir[0])
        return;
    unlink(c->cert);
    unlink(c->key);
    rmdir(c->dir);
    c->dir[0] = '\0';
}
