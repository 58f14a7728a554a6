/* SSE framing over the HTTP layer's streamed responses (see sse.h). */
#include "gateway/sse.h"

#include "gateway/http.h"

#include <stdlib.h>
#include <string.h>

#define SSE_HEADERS "Cache-Control: no-cache\r\nX-Accel-Buffering: no\r\n"

void gw_sse_begin(struct gw_http_req *r, const char *extra_headers)
{
    size_t n = strlen(SSE_HEADERS) + (extra_headers ? strlen(extra_headers) : 0) + 1;
    char *h = malloc(n);
    if (h) {
        strcpy(h, SSE_HEADERS);
        if (extra_headers) strcat(h, extra_headers);
    }
    gw_http_stream_begin(r, 200, "text/event-stream; charset=utf-8", h ? h : SSE_HEADERS);
    free(h);
}

int gw_sse_data(struct gw_http_req *r, const char *json)
{
    size_t n = strlen(json);
    char *frame = malloc(n + 9);
    if (!frame) return -1;
    memcpy(frame, "data: ", 6);
    memcpy(frame + 6, json, n);
    memcpy(frame + 6 + n, "\n\n", 2);
    int rc = gw_http_stream_write(r, frame, n + 8);
    free(frame);
    return rc;
}

void gw_sse_done(struct gw_http_req *r)
{
    static const char done[] = "data: [DONE]\n\n";
    gw_http_stream_write(r, done, sizeof done - 1);
    gw_http_stream_end(r);
}
