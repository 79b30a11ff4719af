/*  =========================================================================
    security - CURVE on tcp links: integrators, edges and stages
    =========================================================================
*/
#include <sys/stat.h>
#include "security.h"

//  Loads DIR/server.cert_secret (public and secret keys); NULL if absent
static zcert_t *
s_server_cert (const char *dir)
{
    char *path = zsys_sprintf ("%s/server.cert_secret", dir);
    zcert_t *cert = zcert_load (path);
    if (!cert)
        zsys_error ("security: cannot load %s", path);
    free (path);
    return cert;
}

//  Makes the deployment certificate on first start, and makes sure its
//  public half is among the allowed clients
static int
s_ensure_certificate (const char *dir)
{
    char *clients = zsys_sprintf ("%s/clients", dir);
    char *secret = zsys_sprintf ("%s/server.cert_secret", dir);
    char *public = zsys_sprintf ("%s/server.cert", dir);
    char *allowed = zsys_sprintf ("%s/clients/server.cert", dir);
    mkdir (dir, 0700);
    mkdir (clients, 0700);
    int rc = 0;
    zcert_t *cert = zcert_load (secret);
    if (!cert) {
        cert = zcert_new ();
        zcert_set_meta (cert, "name", "chorus deployment");
        rc = zcert_save (cert, public);
        zsys_info ("security: made a new deployment certificate in %s", dir);
    }
    if (rc == 0)
        rc = zcert_save_public (cert, allowed);
    zcert_destroy (&cert);
    free (clients);
    free (secret);
    free (public);
    free (allowed);
    return rc;
}

//  --------------------------------------------------------------------------
//  Make the certificate if missing and start zauth on DIR/clients

zactor_t *
security_start (const char *dir, bool verbose)
{
    if (s_ensure_certificate (dir)) {
        zsys_error ("security: cannot write certificates in %s", dir);
        return NULL;
    }
    zactor_t *auth = zactor_new (zauth, NULL);
    if (!auth)
        return NULL;
    if (verbose) {
        zstr_send (auth, "VERBOSE");
        zsock_wait (auth);
    }
    char *clients = zsys_sprintf ("%s/clients", dir);
    zstr_sendx (auth, "CURVE", clients, NULL);
    zsock_wait (auth);
    free (clients);
    return auth;
}

//  --------------------------------------------------------------------------
//  Make a socket a CURVE server with the deployment's certificate

int
security_apply_server (zsock_t *sock, const char *dir)
{
    zcert_t *cert = s_server_cert (dir);
    if (!cert)
        return -1;
    zcert_apply (cert, sock);
    zsock_set_curve_server (sock, 1);
    zsock_set_zap_domain (sock, "chorus");
    zcert_destroy (&cert);
    return 0;
}

//  --------------------------------------------------------------------------
//  Make a socket a CURVE client of the deployment

int
security_apply_client (zsock_t *sock, const char *dir)
{
    zcert_t *cert = s_server_cert (dir);
    if (!cert)
        return -1;
    zcert_apply (cert, sock);
    zsock_set_curve_serverkey (sock, zcert_public_txt (cert));
    zcert_destroy (&cert);
    return 0;
}
