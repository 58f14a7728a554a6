/*
 * Server-sent events for the streaming API: a 200 with text/event-stream, then one
 * "data: {json}\n\n" frame per chunk, and "data: [DONE]\n\n" at the end, as OpenAI's clients
 * expect. The JSON is compact (jansson escapes newlines), so each frame is one data line.
 */
#ifndef SYN_GW_SSE_H
#define SYN_GW_SSE_H

#include <stddef.h>

struct gw_http_req;

/* Sends the response head. extra_headers: "" or lines "Name: value\r\n". */
void gw_sse_begin(struct gw_http_req *r, const char *extra_headers);
/* One frame with json as its data. Returns 0, or -1 when the client is gone or too slow. */
int gw_sse_data(struct gw_http_req *r, const char *json);
/* "data: [DONE]" and the end of the response; r is done afterwards. */
void gw_sse_done(struct gw_http_req *r);

#endif
