//! The request path: the precontent phase handler, the request body filter,
//! arming the upstream signing filter, and that filter, which signs the
//! request head exactly as the proxy module built it, just before it is
//! sent, or refuses it.
//!
//! Why a filter on the upstream output: whatever sits between the client and
//! the upstream (`rewrite`, a URI part in `proxy_pass`, variables in
//! `proxy_pass`, `proxy_set_header Host`, `proxy_method`, the HEAD-to-GET
//! conversion of `proxy_cache`, subrequests, internal redirects), the head
//! in the upstream buffer is what S3 receives, so it is what gets signed.
//!
//! The decision (is this head one the location lets us sign?) is the
//! signer crate's `policy::check`; the signing is `wire::sign_head`. What
//! is here is what only nginx can do: find the head, keep what the body
//! filter learned, swap the buffer, answer a refusal without counting it
//! against the upstream.

use std::cell::RefCell;
use std::ffi::c_void;
use std::ptr;

use aws_signer::metrics::Counter;
use aws_signer::policy::{self, Client, Refusal};
use aws_signer::wire::{
    sign_head_in, signed_headers, Body, HeadSignature, HeadSigning, Streaming, Workspace,
    STREAMING_UNSIGNED_TRAILER,
};
use aws_signer::{Credentials, PathRules, EMPTY_PAYLOAD_SHA256, UNSIGNED_PAYLOAD};

use crate::credentials::Unavailable;
use ngx::core::Status;
use ngx::ffi::{
    ngx_chain_t, ngx_chain_writer, ngx_http_core_run_phases, ngx_http_finalize_request,
    ngx_http_read_client_request_body, ngx_http_request_body_filter_pt, ngx_http_request_t,
    ngx_http_top_request_body_filter, ngx_http_upstream_srv_conf_t, ngx_http_upstream_t, ngx_int_t,
    ngx_list_push, ngx_log_t, ngx_pnalloc, ngx_str_t, ngx_table_elt_t, NGX_HTTP_BAD_REQUEST,
    NGX_HTTP_INTERNAL_SERVER_ERROR, NGX_HTTP_NOT_ALLOWED, NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
    NGX_HTTP_SPECIAL_RESPONSE, NGX_LOG_ERR, NGX_LOG_INFO,
};
use ngx::ffi::{ngx_uint_t, NGX_HTTP_GET, NGX_HTTP_HEAD};
use ngx::http::Request;
use ngx::{ngx_log_debug_http, ngx_log_error, ngx_string};

use crate::conf::{rules_of, LocConf, Payload};
use crate::{existing_ctx, loc_conf, request_ctx, RequestCtx};

/// Placeholder value of `$s3_auth_token` while the proxy builds the head;
/// the filter removes it. Should it ever reach S3, S3 refuses it.
pub const PENDING_AUTHORIZATION: &str = "AWS4-HMAC-SHA256 pending";

/// `aws_s3_autoindex_max_entries` by default.
pub const DEFAULT_AUTOINDEX_MAX: usize = 10_000;

/// Precontent phase, in a location that signs with `aws_sign` or lists
/// `aws_sign_methods`: refuses a method that is not signed (405) or a body
/// over `aws_payload_max_size` (413) before any upstream connection is
/// made, and reads a body that must be hashed (or arrives chunked) before
/// the proxy module builds the upstream request. Never grants access. In
/// any other location it does nothing at all.
///
/// # Safety
/// Called by nginx with a live request.
pub unsafe extern "C" fn precontent_handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    let declined: ngx_int_t = Status::NGX_DECLINED.into();
    let server_error = NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
    // SAFETY: r is live for the duration of a phase handler.
    let Some(lc) = (unsafe { loc_conf(r) }) else {
        return declined;
    };
    // SAFETY: r is live, in a phase handler.
    if let Some(rc) = unsafe { directories(r, lc) } {
        return rc;
    }
    if lc.credentials.is_none() || !(lc.sign_on() || lc.methods.is_some()) {
        return declined;
    }
    // SAFETY: r is live.
    let (req, log) = unsafe { (&mut *r, Request::from_ngx_http_request(r).log()) };
    // The context exists before the proxy runs: signing can always be armed.
    // SAFETY: r is live.
    if unsafe { request_ctx(r) }.is_none() {
        ngx_log_error!(
            NGX_LOG_ERR,
            log,
            "aws_auth: no memory for the request context"
        );
        return server_error;
    }
    let method = req.method_name.as_bytes();
    if !lc.method_allowed(method) {
        let text = format!(
            "method \"{}\" is not signed here (aws_sign_methods {}), answering 405",
            policy::escape_for_log(method, 16),
            lc.allow
        );
        // SAFETY: r is live.
        let ctx = unsafe { existing_ctx(r) }.map(|c| &*c);
        log_limited(
            ctx,
            log,
            LogReason::Method,
            LogReason::Method.level(),
            &text,
        );
        // SAFETY: r is live.
        if !unsafe { add_allow_header(r, &lc.allow) } {
            return server_error;
        }
        return NGX_HTTP_NOT_ALLOWED as ngx_int_t;
    }
    // The first requests after start wait (up to 2 s) for the first role
    // credentials in flight.
    if let Some(role) = lc.credentials.as_ref().and_then(|c| c.role()) {
        if r == req.main && role.first_fetch_pending() {
            // SAFETY: r is live.
            if let Some(ctx) = unsafe { request_ctx(r) } {
                let now = crate::role::now_ms();
                if ctx.wait_until_ms == 0 {
                    ctx.wait_until_ms = now + 2_000;
                }
                if now < ctx.wait_until_ms {
                    // SAFETY: r is the live main request, in a phase handler.
                    return unsafe { wait_for_credentials(r) };
                }
            }
        }
    }
    let chunked = req.headers_in.chunked() != 0;
    if r != req.main || !(chunked || req.headers_in.content_length_n > 0) {
        return declined;
    }
    let hashes = lc.hashes_body;
    if let Some(max) = lc.payload_max.filter(|_| hashes) {
        let n = req.headers_in.content_length_n;
        if n > 0 && n as u64 > max {
            // SAFETY: r is live.
            log_too_large(unsafe { existing_ctx(r) }.map(|c| &*c), log, max);
            return NGX_HTTP_REQUEST_ENTITY_TOO_LARGE as ngx_int_t;
        }
    }
    if !hashes && !chunked {
        // UNSIGNED-PAYLOAD: the proxy streams the body as it likes.
        return declined;
    }
    // A body to hash must be complete before the head is signed, and a
    // chunked one unbuffered would make the proxy replace the signing
    // filter.
    // SAFETY: r is the live main request, in a phase handler.
    unsafe { read_body_first(r) }
}

/// The client's GET or HEAD in a location with credentials, before it is
/// signed: a "directory" (a URI ending in `/`) is redirected to its index
/// object (`aws_s3_index`, the status returned) or becomes a listing
/// (`aws_s3_autoindex`); the index object, after that redirect, falls back
/// to the listing; another URI may get its 301 to the directory
/// (`aws_s3_append_slash`). None: the request goes on.
///
/// # Safety
/// `r` must be a live request, in a phase handler.
unsafe fn directories(r: *mut ngx_http_request_t, lc: &LocConf) -> Option<ngx_int_t> {
    // SAFETY: r is live; its URI lives as long as it.
    let (method, uri, main, internal) = unsafe {
        (
            (*r).method,
            (*r).uri.as_bytes(),
            (*r).main,
            (*r).internal() != 0,
        )
    };
    let get_or_head = method & (NGX_HTTP_GET | NGX_HTTP_HEAD) as ngx_uint_t != 0;
    // SAFETY: r is live.
    if !get_or_head || lc.credentials.is_none() || unsafe { crate::listing::is_page(r) } {
        return None;
    }
    let directory = uri.ends_with(b"/");
    let index = lc.index.as_deref().filter(|n| !n.is_empty());
    if let Some(name) = index.filter(|_| directory) {
        // SAFETY: r is live, in a phase handler.
        return Some(unsafe { redirect_to_index(r, name) });
    }
    if r != main {
        return None;
    }
    let list = (lc.autoindex == Some(true)).then(|| {
        (
            lc.autoindex_format
                .unwrap_or(aws_signer::listing::Format::Html),
            lc.autoindex_max.unwrap_or(DEFAULT_AUTOINDEX_MAX),
        )
    });
    // the index object of a directory, after the redirect
    let index_of = index
        .and_then(|name| uri.strip_suffix(name.as_bytes()))
        .filter(|d| d.ends_with(b"/") && internal);
    // SAFETY: r is the live main request; a directory's URI is in its pool.
    let attached = unsafe {
        match (list, index_of) {
            (Some((format, max)), _) if directory => crate::listing::start(r, format, max),
            (Some((format, max)), Some(dir)) => {
                let dir = ngx_str_t {
                    len: dir.len(),
                    data: dir.as_ptr() as *mut u8,
                };
                crate::listing::fallback(r, dir, format, max)
            }
            _ if !directory && !internal && lc.append_slash == Some(true) => {
                crate::listing::arm_append_slash(r)
            }
            _ => true,
        }
    };
    (!attached).then_some(NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t)
}

/// `aws_s3_index`: a GET or HEAD of a "directory" (a URI ending in `/`)
/// is redirected internally to its index object, `$uri` + `name`, with the
/// same arguments, as nginx's `index` and `try_files` redirect (the new
/// URI goes through location matching again; `$request_uri` stays the
/// client's).
///
/// # Safety
/// `r` must be a live request, in a phase handler.
unsafe fn redirect_to_index(r: *mut ngx_http_request_t, name: &str) -> ngx_int_t {
    // SAFETY: see the contract; the new URI is copied into r's pool, where
    // nginx keeps it for the rest of the request.
    unsafe {
        let uri = (*r).uri.as_bytes();
        let len = uri.len() + name.len();
        let data = ngx_pnalloc((*r).pool, len) as *mut u8;
        if data.is_null() {
            return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
        }
        ptr::copy_nonoverlapping(uri.as_ptr(), data, uri.len());
        ptr::copy_nonoverlapping(name.as_ptr(), data.add(uri.len()), name.len());
        let mut new = ngx_str_t { len, data };
        let mut args = (*r).args;
        log_index_redirect(r, &new);
        // as try_files does: the redirect's own status is the request's
        ngx::ffi::ngx_http_internal_redirect(r, &mut new, &mut args);
        ngx_http_finalize_request(r, Status::NGX_DONE.into());
    }
    Status::NGX_DONE.into()
}

fn log_index_redirect(r: *mut ngx_http_request_t, uri: &ngx_str_t) {
    // SAFETY: r is live.
    let req = unsafe { Request::from_ngx_http_request(r) };
    ngx_log_debug_http!(
        req,
        "aws_auth: aws_s3_index: internal redirect to \"{}\"",
        String::from_utf8_lossy(uri.as_bytes())
    );
}

/// Polls again in 50 ms, the way `limit_req` delays a request: a timer on
/// the client connection's write event, then the phases run again from
/// this handler (a client that goes away ends the wait).
///
/// # Safety
/// `r` must be the live main request, in a phase handler.
unsafe fn wait_for_credentials(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: see the contract; the timer belongs to r's connection and is
    // removed with it.
    unsafe {
        let wev = (*(*r).connection).write;
        (*r).read_event_handler = Some(ngx::ffi::ngx_http_test_reading);
        (*r).write_event_handler = Some(credentials_waited);
        (*wev).set_delayed(1);
        ngx::ffi::ngx_add_timer(wev, 50);
    }
    Status::NGX_AGAIN.0
}

/// The wait's timer fired: run the phases again from the precontent phase.
unsafe extern "C" fn credentials_waited(r: *mut ngx_http_request_t) {
    // SAFETY: nginx calls the write event handler with the live request.
    unsafe {
        let c = (*r).connection;
        let wev = (*c).write;
        if (*wev).delayed() != 0 {
            // some other write event: keep waiting for the timer
            if ngx::ffi::ngx_handle_write_event(wev, 0) != Status::NGX_OK.0 {
                ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t);
            }
            return;
        }
        if ngx::ffi::ngx_handle_read_event((*c).read, 0) != Status::NGX_OK.0 {
            ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t);
            return;
        }
        (*r).read_event_handler = Some(ngx::ffi::ngx_http_block_reading);
        (*r).write_event_handler = Some(ngx_http_core_run_phases);
        ngx_http_core_run_phases(r);
    }
}

/// Reads the whole request body before the content phase, as the mirror
/// module does; the phases resume in [`body_read`].
///
/// # Safety
/// `r` must be the live main request, in a phase handler.
unsafe fn read_body_first(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: see the contract.
    let Some(ctx) = (unsafe { request_ctx(r) }) else {
        return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
    };
    if ctx.read_status != 0 {
        return ctx.read_status;
    }
    ctx.read_status = Status::NGX_DONE.into();
    // SAFETY: r is live; body_read runs with it once the body is read.
    let rc = unsafe { ngx_http_read_client_request_body(r, Some(body_read)) };
    if rc >= NGX_HTTP_SPECIAL_RESPONSE as ngx_int_t {
        return rc;
    }
    // SAFETY: the read holds a reference on r (r->main->count); this
    // releases the phase handler's, as the mirror module does.
    unsafe { ngx_http_finalize_request(r, Status::NGX_DONE.into()) };
    Status::NGX_DONE.into()
}

/// Runs when the precontent handler's body read is complete: the phases
/// go on where they stopped.
unsafe extern "C" fn body_read(r: *mut ngx_http_request_t) {
    // SAFETY: nginx calls the post handler with the live request whose body
    // was read; the context was created before the read started.
    unsafe {
        if let Some(ctx) = existing_ctx(r) {
            ctx.read_status = Status::NGX_DECLINED.into();
        }
        (*r).set_preserve_body(1);
        (*r).write_event_handler = Some(ngx_http_core_run_phases);
        ngx_http_core_run_phases(r);
    }
}

fn log_too_large(ctx: Option<&RequestCtx>, log: *mut ngx_log_t, max: u64) {
    log_limited(
        ctx,
        log,
        LogReason::TooLarge,
        LogReason::TooLarge.level(),
        &format!("request body larger than aws_payload_max_size ({max} bytes), answering 413"),
    );
}

/// Adds `Allow: <methods>` to a 405 answer; false when out of memory, in
/// which case nothing was added.
///
/// # Safety
/// `r` must be a live request.
unsafe fn add_allow_header(r: *mut ngx_http_request_t, value: &str) -> bool {
    // SAFETY: r is live; the value is copied into its pool first, then the
    // entry is pushed and written whole, so a failed allocation leaves no
    // half-built entry in the response headers.
    unsafe {
        let data = ngx_pnalloc((*r).pool, value.len()) as *mut u8;
        if data.is_null() {
            return false;
        }
        ptr::copy_nonoverlapping(value.as_ptr(), data, value.len());
        let h = ngx_list_push(&mut (*r).headers_out.headers) as *mut ngx_table_elt_t;
        if h.is_null() {
            return false;
        }
        h.write(std::mem::zeroed());
        (*h).hash = 1;
        (*h).key = ngx_string!("Allow");
        (*h).value = ngx_str_t {
            len: value.len(),
            data,
        };
        true
    }
}

static mut NEXT_REQUEST_BODY_FILTER: ngx_http_request_body_filter_pt = None;

/// Puts [`request_body_filter`] at the top of the request body filters.
///
/// # Safety
/// Call from postconfiguration only (nginx is single-threaded then).
pub unsafe fn install_request_body_filter() {
    // SAFETY: see the contract; both statics are only written here.
    unsafe {
        NEXT_REQUEST_BODY_FILTER = ngx_http_top_request_body_filter;
        ngx_http_top_request_body_filter = Some(request_body_filter);
    }
}

/// Hashes the request body as it is read, where a signed payload is
/// possible, so it never has to be read again (from memory or from the
/// temporary file); answers 413 past `aws_payload_max_size` in a location
/// that signs. Elsewhere it only passes the body on.
unsafe extern "C" fn request_body_filter(
    r: *mut ngx_http_request_t,
    input: *mut ngx_chain_t,
) -> ngx_int_t {
    // SAFETY: nginx calls body filters with the live request and a chain of
    // live buffers; NEXT_REQUEST_BODY_FILTER was set at postconfiguration.
    unsafe {
        let lc = loc_conf(r);
        // A body read whole before the head goes out (nginx's buffering,
        // or hashed for a signed payload) can take longer than AWS's 15
        // minutes of clock skew: signing happens now, not when the upload
        // began, so the clock is read again at its end, provided nothing
        // was signed yet.
        if lc.is_some_and(|lc| lc.credentials.is_some()) && r == (*r).main && chain_has_last(input)
        {
            if let Some(ctx) = crate::existing_ctx(r)
                .filter(|c| c.signed_upstream.is_null() && c.authorization.len == 0)
            {
                ctx.set_clock((*ngx::ffi::ngx_cached_time).sec);
            }
        }
        if let Some(lc) = lc.filter(|lc| lc.hashes_body) {
            if r == (*r).main {
                if let Some(ctx) = request_ctx(r).filter(|c| !c.body_done) {
                    let hasher = ctx.hasher.get_or_insert_with(Default::default);
                    let mut last = false;
                    let mut cl = input;
                    while !cl.is_null() {
                        let b = (*cl).buf;
                        if (*b).in_file() != 0 {
                            ctx.body_unhashable = true;
                        } else if !(*b).pos.is_null() && (*b).last > (*b).pos {
                            let n = (*b).last.offset_from((*b).pos) as usize;
                            hasher.update(std::slice::from_raw_parts((*b).pos, n));
                        }
                        last |= (*b).last_buf() != 0;
                        cl = (*cl).next;
                    }
                    if let Some(max) = lc
                        .payload_max
                        .filter(|_| lc.sign_on() || lc.methods.is_some())
                    {
                        if hasher.len() > max {
                            log_too_large(Some(ctx), (*(*r).connection).log, max);
                            return NGX_HTTP_REQUEST_ENTITY_TOO_LARGE as ngx_int_t;
                        }
                    }
                    if last {
                        if let Some(h) = ctx.hasher.take() {
                            ctx.body_len = h.len();
                            ctx.body_hash = h.finish_hex();
                            ctx.body_done = true;
                        }
                    }
                }
            }
        }
        match NEXT_REQUEST_BODY_FILTER {
            Some(next) => next(r, input),
            None => Status::NGX_ERROR.into(),
        }
    }
}

/// True when a chain holds the last buffer of the body.
///
/// # Safety
/// `cl` is NULL or a live chain of live buffers.
unsafe fn chain_has_last(mut cl: *mut ngx_chain_t) -> bool {
    // SAFETY: see the contract.
    unsafe {
        while !cl.is_null() {
            if !(*cl).buf.is_null() && (*(*cl).buf).last_buf() != 0 {
                return true;
            }
            cl = (*cl).next;
        }
    }
    false
}

/// True for the upstreams whose request head the proxy module builds
/// (`http://`, `https://`); FastCGI, uwsgi, SCGI, gRPC and memcached
/// speak other protocols.
fn is_http_upstream(u: &ngx_http_upstream_t) -> bool {
    u.schema.as_bytes().starts_with(b"http")
}

/// Arms the signing filter on the upstream request being built, if any:
/// called while the proxy module evaluates variables (`proxy_pass` with
/// variables, header values), before it has chosen its output filter.
/// Returns false when there is no HTTP upstream request to arm.
///
/// # Safety
/// `r` must be a live request.
pub unsafe fn arm_upstream_filter(r: *mut ngx_http_request_t) -> bool {
    // SAFETY: r is live; r->upstream is NULL or the live upstream.
    unsafe {
        let u = (*r).upstream;
        if u.is_null() || !is_http_upstream(&*u) {
            return false;
        }
        match (*u).output.output_filter {
            None => {
                (*u).output.output_filter = Some(sign_filter);
                (*u).output.filter_ctx = r as *mut c_void;
                true
            }
            Some(f) => f as *const () == sign_filter as *const (),
        }
    }
}

/// What the peer initialization wrapper decides for a request about to
/// connect.
pub enum PeerCheck {
    /// Nothing to sign here.
    Pass,
    /// Signing is armed.
    Armed,
    /// The request cannot be signed: refuse it before connecting.
    Refuse,
}

/// Runs after an upstream's peer initialization, that is after the proxy
/// module built the request head and before any connection is made: the
/// one point every proxied request passes through. A request that must be
/// signed (an `aws_sign` location, or one whose variables asked for it)
/// gets the signing filter armed if no variable armed it yet; if the
/// proxy put its own output filter in place (a chunked body streamed
/// without buffering), or the upstream does not speak HTTP, it is refused
/// here, before anything is sent.
///
/// # Safety
/// `r` must be a live request whose upstream has been initialized.
pub unsafe fn check_before_connect(r: *mut ngx_http_request_t) -> PeerCheck {
    // SAFETY: r is live; its upstream is set when peers are initialized.
    unsafe {
        let Some(lc) = loc_conf(r).filter(|lc| lc.credentials.is_some()) else {
            return PeerCheck::Pass;
        };
        let u = (*r).upstream;
        if u.is_null() {
            return PeerCheck::Pass;
        }
        let must = lc.sign_on() || existing_ctx(r).is_some_and(|c| c.vars_used);
        if !must {
            return PeerCheck::Pass;
        }
        let log = (*(*r).connection).log;
        if !is_http_upstream(&*u) {
            let schema = policy::escape_for_log((*u).schema.as_bytes(), 32);
            log_limited(
                existing_ctx(r).map(|c| &*c),
                log,
                LogReason::Unarmable,
                NGX_LOG_ERR,
                &format!("cannot sign a \"{schema}\" upstream: only proxy_pass to http(s) is signed (answering 500)"),
            );
            return PeerCheck::Refuse;
        }
        let Some(ctx) = request_ctx(r) else {
            return PeerCheck::Refuse;
        };
        let writer = ptr::addr_of_mut!((*u).writer) as *mut c_void;
        match (*u).output.output_filter {
            Some(f) if f as *const () == sign_filter as *const () => PeerCheck::Armed,
            Some(f)
                if f as *const () == ngx_chain_writer as *const ()
                    && (*u).output.filter_ctx == writer =>
            {
                (*u).output.output_filter = Some(sign_filter);
                (*u).output.filter_ctx = r as *mut c_void;
                ctx.vars_used |= !lc.sign_on();
                PeerCheck::Armed
            }
            _ => {
                log_limited(
                    Some(ctx),
                    log,
                    LogReason::Unarmable,
                    NGX_LOG_ERR,
                    "cannot sign a chunked body that the proxy streams with its own output filter \
                     (proxy_request_buffering off, proxy_http_version 1.1): use aws_sign, \
                     aws_sign_methods or proxy_request_buffering on here (answering 500)",
                );
                PeerCheck::Refuse
            }
        }
    }
}

/// The peer initialization wrapper's view of an upstream block: which
/// function it replaced.
pub struct PeerInit {
    pub upstream: *mut ngx_http_upstream_srv_conf_t,
    pub init: ngx::ffi::ngx_http_upstream_init_peer_pt,
}

/// The upstream output filter: signs the head on its first call, then
/// hands everything to the upstream's writer. A refused request is
/// answered with its own status and nothing is written upstream.
unsafe extern "C" fn sign_filter(data: *mut c_void, input: *mut ngx_chain_t) -> ngx_int_t {
    let r = data as *mut ngx_http_request_t;
    // SAFETY: data is the request the filter was armed for; it outlives its
    // upstream, whose writer is passed on exactly as nginx would.
    unsafe {
        let u = (*r).upstream;
        let Some(ctx) = existing_ctx(r) else {
            return refuse_upstream(r, u, NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t);
        };
        if ctx.signed_upstream != u && !input.is_null() {
            if let Err(status) = sign_first_buffer(r, ctx, input) {
                return refuse_upstream(r, u, status);
            }
            ctx.signed_upstream = u;
            crate::metrics::count(if ctx.vars_used {
                Counter::SignedVariables
            } else {
                Counter::SignedHeader
            });
        }
        ngx_chain_writer(ptr::addr_of_mut!((*u).writer) as *mut c_void, input)
    }
}

/// Ends an upstream request the module refused, after the connection was
/// made and before a byte was written on it: the peer is released as one
/// that did nothing wrong (a refusal never counts against an upstream
/// server), nothing queued is sent, and the client gets `status`. Where
/// nginx would lose a status on the way back (a body streamed without
/// buffering), the upstream request fails without a retry and the client
/// gets 502.
///
/// # Safety
/// `r` live, `u` its upstream, called from the upstream output filter.
unsafe fn refuse_upstream(
    r: *mut ngx_http_request_t,
    u: *mut ngx_http_upstream_t,
    status: ngx_int_t,
) -> ngx_int_t {
    // SAFETY: see the contract.
    unsafe {
        release_peer(u);
        (*u).output.in_ = ptr::null_mut();
        if (*r).request_body_no_buffering() != 0 {
            Status::NGX_ERROR.into()
        } else {
            status
        }
    }
}

/// Gives the upstream's peer back to its balancer as one that did nothing
/// wrong (state 0, never `NGX_PEER_FAILED`), once, and leaves nothing to
/// retry: nginx will neither free it again nor try another server.
///
/// # Safety
/// `u` must be a live upstream whose peer was chosen, or NULL.
unsafe fn release_peer(u: *mut ngx_http_upstream_t) {
    if u.is_null() {
        return;
    }
    // SAFETY: see the contract; the peer fields are the upstream's own and
    // free is the balancer's, called as nginx calls it.
    unsafe {
        let pc = &mut (*u).peer;
        if let Some(free) = pc.free {
            if !pc.sockaddr.is_null() {
                free(pc, pc.data, 0);
            }
        }
        pc.sockaddr = ptr::null_mut();
        pc.name = ptr::null_mut();
        pc.tries = 0;
        pc.set_cached(0);
    }
}

/// The outcome of signing a head: the signed head and the payload hash
/// sent, or the status and the line to log.
struct Refused {
    status: ngx_int_t,
    reason: LogReason,
    text: String,
}

impl Refused {
    fn server_error(reason: LogReason, text: String) -> Refused {
        Refused {
            status: NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t,
            reason,
            text,
        }
    }
}

thread_local! {
    /// This worker's signing buffers, reused from request to request: once
    /// grown, signing a head allocates nothing.
    static WORKSPACE: RefCell<Workspace> = RefCell::new(Workspace::default());
}

/// Signs the head at the start of the chain's first buffer in place: the
/// buffer is pointed at pool memory holding the signed head and whatever
/// followed the old head. On refusal, logs one line and returns the status.
///
/// # Safety
/// `r` live, `input` a chain whose first buffer starts with the request head.
unsafe fn sign_first_buffer(
    r: *mut ngx_http_request_t,
    ctx: &mut RequestCtx,
    input: *mut ngx_chain_t,
) -> Result<(), ngx_int_t> {
    let server_error = NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
    // SAFETY: r is live.
    let (lc, log, pool) = unsafe {
        (
            loc_conf(r).ok_or(server_error)?,
            (*(*r).connection).log,
            (*r).pool,
        )
    };
    // SAFETY: the first buffer of the chain the proxy hands its writer: the
    // head it built, in memory.
    let b = unsafe { (*input).buf };
    // SAFETY: b is NULL or a live buffer whose pos..last bytes are readable.
    let bytes = unsafe {
        if b.is_null() || (*b).pos.is_null() || (*b).last < (*b).pos {
            None
        } else {
            Some(std::slice::from_raw_parts(
                (*b).pos,
                (*b).last.offset_from((*b).pos) as usize,
            ))
        }
    };
    // SAFETY: r is live; its URI strings live as long as it.
    let client = unsafe {
        Client {
            uri: (*r).uri.as_bytes(),
            target: (*r).unparsed_uri.as_bytes(),
        }
    };
    // SAFETY: r is live.
    let req = unsafe { Request::from_ngx_http_request(r) };
    let debug = |sig: &HeadSignature, ws: &Workspace, token: Option<&str>| {
        ngx_log_debug_http!(
            req,
            "aws_auth: canonical request (session token redacted):\n{}",
            redact_token(sig.canonical_request(ws), token)
        );
        ngx_log_debug_http!(req, "aws_auth: string to sign:\n{}", sig.string_to_sign(ws));
    };
    let mut place = |len: usize| -> Option<&mut [u8]> {
        // SAFETY: pool is the request's; the memory lives as long as the
        // request, and is only reached through this slice until the buffer
        // is pointed at it.
        unsafe {
            let mem = ngx_pnalloc(pool, len.max(1)) as *mut u8;
            (!mem.is_null()).then(|| std::slice::from_raw_parts_mut(mem, len))
        }
    };
    let outcome = match bytes {
        None => Err(Refused::server_error(
            LogReason::Head,
            "the upstream request head is not in memory (answering 500)".into(),
        )),
        Some(bytes) => {
            // SAFETY: r is live, and so is its parent while it runs.
            let page = unsafe { background_page(r) };
            sign_wire_head(lc, ctx, page, bytes, &client, &debug, &mut place)
        }
    };
    let (mem, auth, token) = match outcome {
        Ok(s) => s,
        Err(refused) => {
            // SAFETY: r is live; its upstream is the one being sent. The
            // peer goes first, so that nginx's own context on the line
            // (the upstream's URI, which may hold the client's decoded
            // line breaks) is not printed with it.
            unsafe { release_peer((*r).upstream) };
            log_limited(
                Some(ctx),
                log,
                refused.reason,
                refused.reason.level(),
                &refused.text,
            );
            if refused.status == NGX_HTTP_NOT_ALLOWED as ngx_int_t {
                // SAFETY: r is live.
                if !unsafe { add_allow_header(r, &lc.allow) } {
                    return Err(server_error);
                }
            }
            return Err(refused.status);
        }
    };
    let total = mem.len();
    let start = mem.as_mut_ptr();
    // SAFETY: start..start+total is request pool memory holding the signed
    // head then the rest of the old buffer; the buffer is pointed at it.
    unsafe {
        if token > 0 && !crate::wipe_with_pool(pool, start, total) {
            return Err(server_error);
        }
        (*b).start = start;
        (*b).pos = start;
        (*b).last = start.add(total);
        (*b).end = start.add(total);
        (*b).set_temporary(1);
        ctx.authorization = ngx_str_t {
            len: auth.len(),
            data: start.add(auth.start),
        };
        // where the token is, for blanking it out of an error answer that
        // echoes the canonical request (see crate::redact)
        if token > 0 {
            ctx.note_token(
                std::slice::from_raw_parts(start, auth.start),
                auth.start,
                token,
            );
        } else {
            ctx.token_len = 0;
        }
    }
    Ok(())
}

/// For a cache refresh in the background (`proxy_cache_background_update`):
/// the listing page it refreshes, which is its parent's. The refresh is a
/// clone of the request that found the page stale, started at the content
/// phase with none of its context, and must ask for the same listing page.
///
/// # Safety
/// `r` must be a live request.
unsafe fn background_page(r: *mut ngx_http_request_t) -> Option<&'static RequestCtx> {
    // SAFETY: r is live; a subrequest's parent outlives it.
    unsafe {
        if (*r).background() == 0 || r == (*r).main || (*r).parent.is_null() {
            return None;
        }
        // a clone keeps its parent's URI and location (a mirror, also in
        // the background, has a location of its own)
        let parent = (*r).parent;
        if (*r).loc_conf != (*parent).loc_conf || (*r).uri.as_bytes() != (*parent).uri.as_bytes() {
            return None;
        }
        if existing_ctx(r).is_some_and(|c| !c.listing.is_null()) {
            return None;
        }
        existing_ctx((*r).parent)
            .filter(|c| !c.listing.is_null())
            .map(|c| &*c)
    }
}

/// The decision and the signing, for the head at the start of `bytes`:
/// the credentials for the request's UTC day, the location's policy for
/// their service, the payload hash the body filter computed (when it is
/// the body going out), then the signed head written into memory from
/// `place`, followed by what came after the old head in `bytes`. The
/// canonical request and string to sign go to `debug` with the session
/// token to redact. Returns the memory, where the `Authorization` value
/// is in it, and whether it carries a session token. Records the
/// `x-amz-content-sha256` value sent in `ctx`.
#[allow(clippy::too_many_arguments)]
fn sign_wire_head<'p>(
    lc: &LocConf,
    ctx: &mut RequestCtx,
    background: Option<&RequestCtx>,
    bytes: &[u8],
    client: &Client<'_>,
    debug: &dyn Fn(&HeadSignature, &Workspace, Option<&str>),
    place: &mut dyn FnMut(usize) -> Option<&'p mut [u8]>,
) -> Result<(&'p mut [u8], std::ops::Range<usize>, usize), Refused> {
    let Some(creds) = lc.credentials.as_ref() else {
        return Err(Refused::server_error(
            LogReason::NoKey,
            "no credentials to sign the upstream request with (answering 500)".into(),
        ));
    };
    let date = ctx.amz_date;
    let amz_date = std::str::from_utf8(&date).unwrap_or("");
    let day = amz_date.get(..8).unwrap_or("");
    let state: &RequestCtx = ctx;
    let result = creds.with(day, state.now, |set| {
        WORKSPACE.with(|cell| {
            let mut ws = cell.try_borrow_mut().map_err(|_| {
                Refused::server_error(LogReason::Head, "the signing buffers are in use".into())
            })?;
            let rules = rules_of(set.scope);
            let mut policy = lc.policy(rules);
            let page = background.unwrap_or(state);
            let list = match crate::listing::request_of(page, lc).filter(|_| policy.s3.is_some()) {
                None => None,
                Some(Ok(list)) => Some(list),
                Some(Err(off)) => {
                    return Err(Refused {
                        status: ngx::ffi::NGX_HTTP_FORBIDDEN as ngx_int_t,
                        reason: LogReason::Listing,
                        text: format!(
                            "refused: a listing in a location without {off} on (answering 403)"
                        ),
                    })
                }
            };
            let own_listing = policy.s3.as_ref().is_some_and(|s3| s3.listing);
            if let (Some(s3), Some(_)) = (policy.s3.as_mut(), list) {
                // a listing page lists, whatever aws_s3_listing says
                s3.listing = true;
            }
            let refused = |refused: policy::Refused| Refused {
                status: refused.kind.status() as ngx_int_t,
                reason: LogReason::from(refused.kind),
                text: format!(
                    "refused: {refused}{} (answering {})",
                    bucket_hint(lc, refused.kind),
                    refused.kind.status()
                ),
            };
            let mut listing_head = Vec::new();
            let mut checked = policy::check_in(bytes, &policy, client, &mut ws).map_err(refused)?;
            if let Some((token, keys)) = list {
                let prefix =
                    aws_signer::listing::list_head(&checked, token, keys, &mut listing_head);
                if prefix.is_some() {
                    // the listing request, checked again as it is sent
                    ws.recycle(checked);
                    policy.query = policy::QueryPolicy::All;
                    checked = policy::check_in(&listing_head, &policy, client, &mut ws)
                        .map_err(refused)?;
                } else if background.is_some() {
                    // never an object's answer stored under a listing's key
                    ws.recycle(checked);
                    return Err(Refused {
                        status: ngx::ffi::NGX_HTTP_FORBIDDEN as ngx_int_t,
                        reason: LogReason::Listing,
                        text: "refused: a background refresh of a listing page names an object \
                               (answering 403)"
                            .into(),
                    });
                } else if !own_listing {
                    // not a listing after all: the head goes out as it is,
                    // so under the location's own rules (`/bucket/x/..`
                    // would otherwise pass as the bucket itself)
                    if let Some(s3) = policy.s3.as_mut() {
                        s3.listing = false;
                    }
                    ws.recycle(checked);
                    checked = policy::check_in(bytes, &policy, client, &mut ws).map_err(refused)?;
                }
                if background.is_none() {
                    crate::listing::sent(state, prefix);
                }
            }
            let outcome = sign_checked(
                lc, state, amz_date, &set, rules, &checked, &mut ws, debug, place,
            );
            ws.recycle(checked);
            let token = set.token.map_or(0, str::len);
            if token > 0 {
                ws.wipe();
            }
            outcome.map(|(mem, auth, sent, n)| (mem, auth, sent, n, token))
        })
    });
    let (mem, auth, sent, n, token) = result.map_err(unavailable)??;
    ctx.sent_sha = sent;
    ctx.sent_sha_len = n as u8;
    Ok((mem, auth, token))
}

/// A head signed into pool memory: the memory, where the `Authorization`
/// value is in it, the `x-amz-content-sha256` value sent and its length.
type SignedInto<'p> = (&'p mut [u8], std::ops::Range<usize>, [u8; 64], usize);

/// The payload hash, the signature and the new head of a checked head,
/// written into memory from `place` with the rest of the old buffer after
/// it; the `x-amz-content-sha256` value sent, as bytes and length.
#[allow(clippy::too_many_arguments)]
fn sign_checked<'p>(
    lc: &LocConf,
    state: &RequestCtx,
    amz_date: &str,
    set: &crate::credentials::Set<'_>,
    rules: PathRules,
    checked: &policy::Checked<'_>,
    ws: &mut Workspace,
    debug: &dyn Fn(&HeadSignature, &Workspace, Option<&str>),
    place: &mut dyn FnMut(usize) -> Option<&'p mut [u8]>,
) -> Result<SignedInto<'p>, Refused> {
    let streaming = match checked.head.body {
        Body::None => Streaming::No,
        _ => aws_signer::wire::streaming(&checked.head),
    };
    let payload_hash: &str = match (checked.head.body, streaming) {
        (_, Streaming::UnsignedTrailer)
            if rules == PathRules::S3
                && lc.payload_for(rules) == Payload::Unsigned
                && lc.content_sha256_header_for(rules) =>
        {
            STREAMING_UNSIGNED_TRAILER
        }
        (_, Streaming::UnsignedTrailer | Streaming::Other) => {
            return Err(Refused {
                status: NGX_HTTP_BAD_REQUEST as ngx_int_t,
                reason: LogReason::Body,
                text: format!(
                    "refused: an aws-chunked upload {} (answering 400)",
                    if streaming == Streaming::Other {
                        "with chunk signatures, without one x-amz-decoded-content-length, or \
                         framed without Content-Encoding: aws-chunked, cannot be signed again"
                    } else {
                        "goes on unsigned (STREAMING-UNSIGNED-PAYLOAD-TRAILER), which only \
                         S3 with aws_payload unsigned allows"
                    }
                ),
            });
        }
        (Body::None | Body::Length(0), _) => EMPTY_PAYLOAD_SHA256,
        _ if lc.payload_for(rules) == Payload::Unsigned => UNSIGNED_PAYLOAD,
        (body, _) => signed_payload(lc, state, body)?,
    };
    let how = HeadSigning {
        creds: Credentials {
            access_key: set.access_key,
            scope: set.scope,
            key: set.key,
        },
        amz_date,
        payload_hash,
        content_sha256_header: lc.content_sha256_header_for(rules),
        session_token: set.token,
        rules,
        forward: lc.forward(),
        streaming: streaming == Streaming::UnsignedTrailer,
    };
    let mut sent = [0u8; 64];
    let n = payload_hash.len().min(sent.len());
    sent[..n].copy_from_slice(&payload_hash.as_bytes()[..n]);
    let sig = sign_head_in(checked, &how, ws);
    debug(&sig, ws, set.token);
    let rest = checked.head.after();
    let no_memory = || Refused::server_error(LogReason::Head, "out of memory".into());
    let mem = place(sig.len() + rest.len()).ok_or_else(no_memory)?;
    let (head, tail) = mem.split_at_mut(sig.len());
    let auth = sig.write(checked, &how, ws, head).ok_or_else(no_memory)?;
    tail.copy_from_slice(rest);
    Ok((mem, auth, sent, n))
}

/// The refusal of a request there are no credentials for.
fn unavailable(u: Unavailable) -> Refused {
    Refused::server_error(LogReason::NoKey, format!("{u} (requests answered 500)"))
}

/// For a bucket refusal, what the location allows, so that a
/// misconfiguration says what to change.
fn bucket_hint(lc: &LocConf, kind: Refusal) -> String {
    if !matches!(kind, Refusal::Host | Refusal::Bucket) {
        return String::new();
    }
    let addressing = match lc.addressing {
        Some(aws_signer::policy::Addressing::Virtual) => "virtual",
        Some(aws_signer::policy::Addressing::Path) => "path",
        None => "virtual or path",
    };
    let buckets = lc.bucket.as_deref().unwrap_or(&[]);
    format!(
        "; aws_s3_bucket {}, aws_s3_addressing {addressing}, aws_endpoint {}: virtual-host style needs Host \"{}.{}\", path style Host \"{}\" (or an IP address) and a path starting with /{}/",
        buckets.join(" "),
        lc.endpoint(),
        buckets.first().map_or("bucket", |b| b.as_str()),
        lc.endpoint(),
        lc.endpoint(),
        buckets.first().map_or("bucket", |b| b.as_str()),
    )
}

/// The payload hash of a body read and hashed by [`request_body_filter`],
/// provided it is the body going out.
fn signed_payload<'c>(lc: &LocConf, ctx: &'c RequestCtx, body: Body) -> Result<&'c str, Refused> {
    if ctx.body_unhashable || !ctx.body_done {
        return Err(Refused::server_error(
            LogReason::Body,
            "cannot sign the request body: it was not read whole before the request was sent \
             (proxy_request_buffering off?); use aws_sign, or aws_payload unsigned (answering 500)"
                .into(),
        ));
    }
    if body != Body::Length(ctx.body_len) {
        let sent = match body {
            Body::Length(n) => format!("Content-Length {n}"),
            _ => "a chunked body".into(),
        };
        return Err(Refused::server_error(
            LogReason::Body,
            format!(
                "cannot sign the request body: {} bytes were read and hashed but the upstream request carries {sent} (answering 500)",
                ctx.body_len
            ),
        ));
    }
    if let Some(max) = lc.payload_max {
        if ctx.body_len > max {
            return Err(Refused {
                status: NGX_HTTP_REQUEST_ENTITY_TOO_LARGE as ngx_int_t,
                reason: LogReason::TooLarge,
                text: format!(
                    "request body larger than aws_payload_max_size ({max} bytes), answering 413"
                ),
            });
        }
    }
    // 64 lowercase hex digits
    std::str::from_utf8(&ctx.body_hash)
        .map_err(|_| Refused::server_error(LogReason::Body, "bad body hash".into()))
}

/// The canonical request as text for the debug log, with the session token
/// replaced in every form it can take there: a token is a credential and
/// never goes to a log.
fn redact_token(canonical: &[u8], token: Option<&str>) -> String {
    let text = String::from_utf8_lossy(canonical);
    match token {
        Some(t) => policy::redact(&text, t),
        None => text.into_owned(),
    }
}

/// Why the module writes an error-log line a client can cause; each reason
/// has its own limit of one line per second per worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogReason {
    Method,
    Bucket,
    Listing,
    Injected,
    Head,
    NoKey,
    Body,
    TooLarge,
    Unarmable,
    Presign,
}

impl LogReason {
    /// The refusals counter of this reason.
    pub fn counter(&self) -> Counter {
        match self {
            LogReason::Method => Counter::RefusedMethod,
            LogReason::Bucket => Counter::RefusedBucket,
            LogReason::Listing => Counter::RefusedListing,
            LogReason::Injected => Counter::RefusedInjected,
            LogReason::Head => Counter::RefusedHead,
            LogReason::NoKey => Counter::RefusedNoCredentials,
            LogReason::Body => Counter::RefusedBody,
            LogReason::TooLarge => Counter::RefusedBodyTooLarge,
            LogReason::Unarmable => Counter::RefusedUnsignable,
            LogReason::Presign => Counter::RefusedPresign,
        }
    }

    /// The level of its line: `info` for what clients do all the time
    /// (a method or a bucket listing refused, a body too large), `error`
    /// for a misconfiguration or an attack the operator must see.
    pub fn level(&self) -> u32 {
        match self {
            LogReason::Method | LogReason::Listing | LogReason::TooLarge => NGX_LOG_INFO,
            _ => NGX_LOG_ERR,
        }
    }
}

impl From<Refusal> for LogReason {
    fn from(r: Refusal) -> LogReason {
        match r.reason() {
            "method" => LogReason::Method,
            "bucket" => LogReason::Bucket,
            "listing" => LogReason::Listing,
            "injected" => LogReason::Injected,
            _ => LogReason::Head,
        }
    }
}

/// Logs `aws_auth: <text>` at most once per second per worker and reason:
/// a client that repeats a refused request, or an outage that refuses
/// every request, cannot flood the error log.
pub fn log_limited(
    ctx: Option<&RequestCtx>,
    log: *mut ngx_log_t,
    reason: LogReason,
    level: u32,
    text: &str,
) {
    use std::sync::atomic::{AtomicI64, Ordering};
    // every refusal is logged through here: counted before the log limit,
    // once per request (a variable evaluated twice refuses twice)
    if ctx.is_none_or(|c| !c.counted_refused.replace(true)) {
        crate::metrics::count(reason.counter());
    }
    const N: usize = 10;
    static LAST: [AtomicI64; N] = [const { AtomicI64::new(i64::MIN) }; N];
    // SAFETY: ngx_cached_time always points to a valid time slot.
    let now = unsafe { (*ngx::ffi::ngx_cached_time).sec };
    if LAST[reason as usize % N].swap(now, Ordering::Relaxed) == now {
        return;
    }
    ngx_log_error!(level as ngx::ffi::ngx_uint_t, log, "aws_auth: {text}");
}

/// A request line and `Host` built by the module for a URL it signs
/// itself (presigned URLs, `$s3_auth_token` outside the proxy), so that it
/// goes through the same decision as a proxied request.
fn synthetic_head(method: &[u8], path: &[u8], query: &[u8], host: &[u8]) -> Vec<u8> {
    let mut h = Vec::with_capacity(path.len() + query.len() + host.len() + 40);
    h.extend_from_slice(method);
    h.push(b' ');
    h.extend_from_slice(path);
    if !query.is_empty() {
        h.push(b'?');
        h.extend_from_slice(query);
    }
    h.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    h.extend_from_slice(host);
    h.extend_from_slice(b"\r\n\r\n");
    h
}

/// `$aws_presigned_url`: a GET URL for the current `$uri` (and the
/// forwarded part of the query) on `$aws_s3_host`, signed in its query
/// string, valid for `aws_presign_expires` but never past the end of the
/// last configured key's UTC day. Under the same rules as a proxied
/// request: the configured bucket only (an S3 key needs `aws_s3_bucket`),
/// GET among the signed methods, the query allowlist, no client `X-Amz-*`.
///
/// # Safety
/// `r` must be a live request.
pub unsafe fn presigned_url(r: *mut ngx_http_request_t, ctx: &RequestCtx) -> Option<String> {
    // SAFETY: r is live; its strings live as long as it.
    let (lc, log, uri, args, target) = unsafe {
        (
            loc_conf(r)?,
            (*(*r).connection).log,
            (*r).uri.as_bytes(),
            (*r).args.as_bytes(),
            (*r).unparsed_uri.as_bytes(),
        )
    };
    let creds = lc.credentials.as_ref()?;
    let amz_date = ctx.amz_date();
    let day = amz_date.get(..8)?;
    let mut expires = lc
        .presign_expires
        .unwrap_or(crate::conf::DEFAULT_PRESIGN_EXPIRES) as i64;
    if let Some(end) = creds.expires_at() {
        // never past the last key's day, or the role credentials' expiry
        expires = expires.min(end - ctx.now);
    }
    let mut path = Vec::with_capacity(uri.len() * 3 + 64);
    path.extend_from_slice(lc.s3_path_prefix.as_bytes());
    aws_signer::encode_into(uri, true, &mut path);
    let host = lc.s3_host.as_bytes();
    let head = synthetic_head(b"GET", &path, args, host);
    let client = Client { uri: &path, target };
    // SAFETY: r is live.
    let req = unsafe { Request::from_ngx_http_request(r) };
    let presigned = creds.with(day, ctx.now, |set| {
        let rules = rules_of(set.scope);
        if rules == PathRules::S3 && lc.bucket.is_none() {
            return Err((
                LogReason::Presign,
                "an S3 presigned URL needs aws_s3_bucket (the client's path would choose the bucket)"
                    .to_owned(),
            ));
        }
        if expires <= 0 {
            return Err((LogReason::NoKey, "the credentials end now".to_owned()));
        }
        let policy = lc.policy(rules);
        let checked = policy::check(&head, &policy, &client)
            .map_err(|r| (LogReason::from(r.kind), format!("refused: {r}")))?;
        let headers: [(&[u8], &[u8]); 1] = [(b"host", host)];
        let request = aws_signer::Request {
            method: b"GET",
            path: &checked.path,
            query: &checked.query,
            headers: &headers,
            payload_hash: match rules {
                PathRules::S3 => UNSIGNED_PAYLOAD.as_bytes(),
                _ => EMPTY_PAYLOAD_SHA256.as_bytes(),
            },
            rules,
        };
        let keys = Credentials {
            access_key: set.access_key,
            scope: set.scope,
            key: set.key,
        };
        let p = aws_signer::presign(&request, &keys, amz_date, expires as u64, set.token);
        ngx_log_debug_http!(
            req,
            "aws_auth: presigned URL canonical request (session token redacted):\n{}",
            redact_token(&p.canonical_request, set.token)
        );
        let scheme = lc.presign_scheme.as_deref().unwrap_or("https");
        let mut url = format!("{scheme}://{}", lc.s3_host);
        url.push_str(&String::from_utf8_lossy(&checked.path));
        url.push('?');
        url.push_str(&String::from_utf8_lossy(&p.query));
        Ok(url)
    });
    match presigned {
        Ok(Ok(url)) => Some(url),
        Ok(Err((reason, why))) => {
            let level = match reason {
                LogReason::Presign | LogReason::NoKey => NGX_LOG_ERR,
                other => other.level(),
            };
            log_limited(
                Some(ctx),
                log,
                reason,
                level,
                &format!("no presigned URL: {why}"),
            );
            None
        }
        Err(u) => {
            log_limited(
                Some(ctx),
                log,
                LogReason::NoKey,
                NGX_LOG_ERR,
                &format!("no presigned URL: {u}"),
            );
            None
        }
    }
}

/// What `$aws_content_sha256` shows: the value sent, once the request was
/// signed; before, the value the request will get.
///
/// # Safety
/// `r` must be a live request.
pub unsafe fn content_sha256_value(r: *mut ngx_http_request_t, ctx: &RequestCtx) -> &[u8] {
    if ctx.sent_sha_len > 0 {
        return &ctx.sent_sha[..usize::from(ctx.sent_sha_len)];
    }
    // SAFETY: r is live.
    let (has_body, lc) = unsafe {
        (
            (*r).headers_in.content_length_n > 0 || (*r).headers_in.chunked() != 0,
            loc_conf(r),
        )
    };
    let Some(lc) = lc else {
        return EMPTY_PAYLOAD_SHA256.as_bytes();
    };
    let rules = lc
        .credentials
        .as_ref()
        .map_or(PathRules::S3, |c| c.default_rules());
    match (has_body, lc.payload_for(rules)) {
        (false, _) => EMPTY_PAYLOAD_SHA256.as_bytes(),
        (true, Payload::Unsigned) => UNSIGNED_PAYLOAD.as_bytes(),
        (true, Payload::Signed) if ctx.body_done => &ctx.body_hash,
        (true, Payload::Signed) => EMPTY_PAYLOAD_SHA256.as_bytes(),
    }
}

/// The `Authorization` value for the client's own request line, signed for
/// `$aws_s3_host`: what `$s3_auth_token` shows outside the proxy. The same
/// rules as a proxied request apply (method, bucket, query allowlist,
/// bucket requests); a refused request gets an empty value and a log line.
///
/// # Safety
/// `r` must be a live request.
pub unsafe fn sign_client_request(r: *mut ngx_http_request_t, ctx: &RequestCtx) -> Option<String> {
    // SAFETY: r is live; its strings live as long as it.
    let (lc, log, method, target, uri) = unsafe {
        (
            loc_conf(r)?,
            (*(*r).connection).log,
            (*r).method_name.as_bytes(),
            (*r).unparsed_uri.as_bytes(),
            (*r).uri.as_bytes(),
        )
    };
    let creds = lc.credentials.as_ref()?;
    let host = lc.s3_host.as_bytes();
    let (path, query) = match target.iter().position(|&c| c == b'?') {
        Some(i) => (&target[..i], &target[i + 1..]),
        None => (target, &b""[..]),
    };
    let prefixed = [lc.s3_path_prefix.as_bytes(), path].concat();
    let head = synthetic_head(method, &prefixed, query, host);
    let client = Client { uri, target };
    let amz_date = ctx.amz_date();
    let result = creds.with(amz_date.get(..8)?, ctx.now, |set| {
        let rules = rules_of(set.scope);
        let checked = policy::check(&head, &lc.policy(rules), &client)?;
        let headers = signed_headers(host, Some(EMPTY_PAYLOAD_SHA256), amz_date, set.token);
        let req = aws_signer::Request {
            method: checked.head.method,
            path: &checked.path,
            query: &checked.query,
            headers: &headers,
            payload_hash: EMPTY_PAYLOAD_SHA256.as_bytes(),
            rules,
        };
        let keys = Credentials {
            access_key: set.access_key,
            scope: set.scope,
            key: set.key,
        };
        Ok(aws_signer::sign(&req, &keys, amz_date)
            .authorization()
            .to_owned())
    });
    match result {
        Ok(Ok(auth)) => Some(auth),
        Ok(Err(refused)) => {
            let refused: policy::Refused = refused;
            let reason = LogReason::from(refused.kind);
            log_limited(
                Some(ctx),
                log,
                reason,
                reason.level(),
                &format!("$s3_auth_token is empty: {refused}"),
            );
            None
        }
        Err(u) => {
            log_limited(
                Some(ctx),
                log,
                LogReason::NoKey,
                NGX_LOG_ERR,
                &format!("$s3_auth_token is empty: {u}"),
            );
            None
        }
    }
}
