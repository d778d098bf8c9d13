/* The floor for bench/run.py: STK pushes from C through one libcurl easy handle.
 *
 * Usage: floor URL CA_FILE TOKEN BODY
 * Writes the libcurl version line, then for every line "N" read on stdin performs
 * N POSTs of BODY on the same handle (so its connection stays warm between rounds)
 * and writes N latencies in nanoseconds, one a line. Any failed push ends the program
 * with status 1 and a message on stderr.
 */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct reply {
    char data[4096];
    size_t len;
};

static void
die(const char *what, const char *detail)
{
    fprintf(stderr, "floor: %s: %s\n", what, detail);
    exit(1);
}

/* Appends to the fixed reply buffer; returning short makes libcurl fail the transfer. */
static size_t
sink(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    struct reply *r = userdata;
    size_t n = size * nmemb;

    if (n > sizeof(r->data) - 1 - r->len) {
        return 0;
    }
    memcpy(r->data + r->len, ptr, n);
    r->len += n;
    r->data[r->len] = '\0';
    return n;
}

static long long
now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

#define SET(h, opt, val)                                               \
    do {                                                               \
        CURLcode rc_ = curl_easy_setopt((h), (opt), (val));            \
        if (rc_ != CURLE_OK) {                                         \
            die("curl_easy_setopt " #opt, curl_easy_strerror(rc_));    \
        }                                                              \
    } while (0)

int
main(int argc, char **argv)
{
    static struct reply reply;
    char auth[512], line[64], errbuf[CURL_ERROR_SIZE];
    struct curl_slist *headers = NULL;
    CURL *h;

    if (argc != 5) {
        fprintf(stderr, "usage: floor URL CA_FILE TOKEN BODY\n");
        return 2;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK || !(h = curl_easy_init())) {
        die("init", "libcurl");
    }
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", argv[3]);
    headers = curl_slist_append(headers, auth);
    headers = curl_slist_append(headers, "Content-Type: application/json");
    if (!headers) {
        die("init", "headers");
    }
    SET(h, CURLOPT_URL, argv[1]);
    SET(h, CURLOPT_CAINFO, argv[2]);
    SET(h, CURLOPT_POSTFIELDS, argv[4]);
    SET(h, CURLOPT_POSTFIELDSIZE, (long)strlen(argv[4]));
    SET(h, CURLOPT_HTTPHEADER, headers);
    SET(h, CURLOPT_WRITEFUNCTION, sink);
    SET(h, CURLOPT_WRITEDATA, &reply);
    SET(h, CURLOPT_ERRORBUFFER, errbuf);
    SET(h, CURLOPT_NOSIGNAL, 1L);
    SET(h, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
    SET(h, CURLOPT_TIMEOUT_MS, 30000L);
    SET(h, CURLOPT_PROTOCOLS_STR, "https");

    printf("%s\n", curl_version());
    fflush(stdout);
    while (fgets(line, sizeof(line), stdin)) {
        long n = strtol(line, NULL, 10);

        for (long i = 0; i < n; i++) {
            long status = 0;
            CURLcode rc;
            long long t0;

            reply.len = 0;
            errbuf[0] = '\0';
            t0 = now_ns();
            rc = curl_easy_perform(h);
            printf("%lld\n", now_ns() - t0);
            if (rc != CURLE_OK) {
                die("perform", errbuf[0] ? errbuf : curl_easy_strerror(rc));
            }
            curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
            if (status != 200 || !strstr(reply.data, "\"ResponseCode\":\"0\"")) {
                die("unexpected reply", reply.data);
            }
        }
        fflush(stdout);
    }
    curl_slist_free_all(headers);
    curl_easy_cleanup(h);
    curl_global_cleanup();
    return 0;
}
