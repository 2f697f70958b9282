//! Keeps the session token out of error answers that echo it.
//!
//! S3 answers a signature it cannot verify with `SignatureDoesNotMatch`
//! and the canonical request it computed, which holds the
//! `x-amz-security-token` line of the signed request. That answer goes to
//! the client, so with temporary credentials (`aws_session_token`, role
//! credentials) a client that can make a signature fail would read the
//! token. For a 403 or 400 answer to a request signed with a token, the
//! body filter blanks the canonical request and the token with `*`
//! (`aws_signer::redact`); the body keeps its length, so no
//! header changes. Such an answer (403, or 400) is neither cached, stored
//! nor buffered, so it reaches the filter in the upstream's own buffer; a
//! buffer the filter cannot rewrite ends the response rather than going
//! out unread.

use aws_signer::redact::Redactor;
use ngx::core::Status;
use ngx::ffi::{ngx_chain_t, ngx_http_request_t, ngx_int_t, ngx_palloc};

use crate::existing_ctx;

crate::output_filters!("the header and body filters that blank the token");

unsafe extern "C" fn header_filter(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: nginx calls header filters with a live request; the context
    // is this module's, in the request pool.
    unsafe {
        if let Some(ctx) = existing_ctx(r) {
            let status = (*r).headers_out.status;
            if ctx.token_len > 0
                && ctx.redacting.is_null()
                && !(*r).upstream.is_null()
                && (status == ngx::ffi::NGX_HTTP_BAD_REQUEST as usize
                    || status == ngx::ffi::NGX_HTTP_FORBIDDEN as usize)
            {
                let p = ngx_palloc((*r).pool, std::mem::size_of::<Redactor>()) as *mut Redactor;
                if p.is_null() {
                    return Status::NGX_ERROR.into();
                }
                p.write(Redactor::default());
                ctx.redacting = p;
                // neither cached nor stored nor buffered (as with
                // X-Accel-Buffering: no): the body goes through the
                // upstream's own buffer, which this filter rewrites, never
                // to a file first; a cache hit would serve it unblanked
                let u = (*r).upstream;
                (*u).set_cacheable(0);
                (*u).set_store(0);
                (*u).set_buffering(0);
            }
        }
        next_header(r)
    }
}

unsafe extern "C" fn body_filter(r: *mut ngx_http_request_t, input: *mut ngx_chain_t) -> ngx_int_t {
    // SAFETY: nginx calls body filters with a live request and a chain of
    // live buffers; a temporary buffer's pos..last, and a range within the
    // upstream's receive buffer (request pool memory), may be written. The
    // token points into the signed head, in the request pool.
    unsafe {
        if let Some(ctx) = existing_ctx(r).filter(|c| !c.redacting.is_null()) {
            {
                let redactor = &mut *ctx.redacting;
                let token = ctx.token();
                let u = (*r).upstream;
                let mut cl = input;
                while !cl.is_null() {
                    let b = (*cl).buf;
                    cl = (*cl).next;
                    if b.is_null() {
                        continue;
                    }
                    if (*b).in_file() != 0 {
                        // never expected (no buffering): not sent unread
                        return ngx::core::Status::NGX_ERROR.into();
                    }
                    if (*b).pos.is_null() || (*b).last <= (*b).pos {
                        continue;
                    }
                    // writable: a temporary buffer (proxy_buffering on), or
                    // one that points into the upstream's own buffer
                    // (proxy_buffering off marks those read-only)
                    let in_upstream_buffer = !u.is_null()
                        && !(*u).buffer.start.is_null()
                        && (*b).pos >= (*u).buffer.start
                        && (*b).last <= (*u).buffer.end;
                    if (*b).temporary() == 0 && !in_upstream_buffer {
                        // memory this filter may not write: not sent unread
                        return ngx::core::Status::NGX_ERROR.into();
                    }
                    let n = (*b).last.offset_from((*b).pos) as usize;
                    redactor.redact(token, std::slice::from_raw_parts_mut((*b).pos, n));
                }
            }
        }
        next_body(r, input)
    }
}
