//! The request path: the precontent phase handler (`aws_sign` method check)
//! and the upstream output filter that signs the request head exactly as the
//! proxy module built it, just before it is sent.
//!
//! Why a filter on the upstream output: whatever sits between the client and
//! the upstream (`rewrite`, a URI part in `proxy_pass`, variables in
//! `proxy_pass`, `proxy_set_header Host`, `proxy_method`, the HEAD-to-GET
//! conversion of `proxy_cache`, subrequests, internal redirects), the head
//! in the upstream buffer is what S3 receives, so it is what gets signed.

use std::ffi::c_void;
use std::ptr;

use aws_signer::wire::{header_value, parse_head, sign_head, signed_headers, HeadSigning};
use aws_signer::{Credentials, EMPTY_PAYLOAD_SHA256, UNSIGNED_PAYLOAD};
use ngx::core::Status;
use ngx::ffi::{
    ngx_chain_t, ngx_chain_writer, ngx_http_core_run_phases, ngx_http_finalize_request,
    ngx_http_read_client_request_body, ngx_http_request_body_filter_pt, ngx_http_request_t,
    ngx_http_top_request_body_filter, ngx_int_t, ngx_list_push, ngx_palloc, ngx_pnalloc, ngx_str_t,
    ngx_table_elt_t, NGX_HTTP_INTERNAL_SERVER_ERROR, NGX_HTTP_NOT_ALLOWED,
    NGX_HTTP_REQUEST_ENTITY_TOO_LARGE, NGX_HTTP_SPECIAL_RESPONSE, NGX_LOG_ERR, NGX_LOG_INFO,
};
use ngx::{ngx_log_debug_http, ngx_log_error, ngx_string};

use crate::conf::{Addressing, Payload, Signing};
use crate::{loc_conf, ngx_bytes, request_ctx, RequestCtx};

/// Placeholder value of `$s3_auth_token` while the proxy builds the head;
/// the filter removes it. Should it ever reach S3, S3 refuses it.
pub const PENDING_AUTHORIZATION: &str = "AWS4-HMAC-SHA256 pending";

/// Precontent phase, in a location that signs with `aws_sign` or lists
/// `aws_sign_methods`: refuses a method that is not signed (405) or a body
/// over `aws_payload_max_size` (413) before any upstream connection is
/// made, and reads a body that must be hashed (or arrives chunked) before
/// the proxy module builds the upstream request. Never grants access.
///
/// # Safety
/// Called by nginx with a live request.
pub unsafe extern "C" fn precontent_handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    let declined: ngx_int_t = Status::NGX_DECLINED.into();
    // SAFETY: r is live for the duration of a phase handler.
    unsafe {
        let Some(lc) = loc_conf(r) else {
            return declined;
        };
        if lc.signing.is_none() {
            return declined;
        }
        let chunked = (*r).headers_in.chunked() != 0;
        if !(lc.sign_on() || lc.methods.is_some()) {
            // A chunked body that the proxy would stream unbuffered comes
            // with the proxy's own output filter in place of the signing
            // one: where credentials are in scope, read such a body first.
            return if chunked && r == (*r).main {
                read_body_first(r)
            } else {
                declined
            };
        }
        let log = (*(*r).connection).log;
        let method = ngx_bytes(&(*r).method_name);
        if !lc.method_allowed(method) {
            ngx_log_error!(
                NGX_LOG_INFO,
                log,
                "aws_auth: method \"{}\" is not signed here (aws_sign_methods {}), answering 405",
                String::from_utf8_lossy(method),
                lc.allow
            );
            add_allow_header(r, &lc.allow);
            return NGX_HTTP_NOT_ALLOWED as ngx_int_t;
        }
        if r != (*r).main || !(chunked || (*r).headers_in.content_length_n > 0) {
            return declined;
        }
        let hashes = lc.hashes_body;
        if let Some(max) = lc.payload_max.filter(|_| hashes) {
            if (*r).headers_in.content_length_n > 0 && (*r).headers_in.content_length_n as u64 > max
            {
                log_too_large(log, max);
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
        read_body_first(r)
    }
}

/// Reads the whole request body before the content phase, as the mirror
/// module does; the phases resume in [`body_read`].
///
/// # Safety
/// `r` must be the live main request, in a phase handler.
unsafe fn read_body_first(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: see the contract.
    unsafe {
        let Some(ctx) = request_ctx(r) else {
            return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
        };
        if ctx.read_status != 0 {
            return ctx.read_status;
        }
        ctx.read_status = Status::NGX_DONE.into();
        let rc = ngx_http_read_client_request_body(r, Some(body_read));
        if rc >= NGX_HTTP_SPECIAL_RESPONSE as ngx_int_t {
            return rc;
        }
        ngx_http_finalize_request(r, Status::NGX_DONE.into());
        Status::NGX_DONE.into()
    }
}

/// Runs when the precontent handler's body read is complete: the phases
/// go on where they stopped.
unsafe extern "C" fn body_read(r: *mut ngx_http_request_t) {
    // SAFETY: nginx calls the post handler with the live request whose body
    // was read; the context was created before the read started.
    unsafe {
        if let Some(ctx) = request_ctx(r) {
            ctx.read_status = Status::NGX_DECLINED.into();
        }
        (*r).set_preserve_body(1);
        (*r).write_event_handler = Some(ngx_http_core_run_phases);
        ngx_http_core_run_phases(r);
    }
}

fn log_too_large(log: *mut ngx::ffi::ngx_log_t, max: u64) {
    ngx_log_error!(
        NGX_LOG_INFO,
        log,
        "aws_auth: request body larger than aws_payload_max_size ({max} bytes), answering 413"
    );
}

/// Adds `Allow: <methods>` to a 405 answer.
///
/// # Safety
/// `r` must be a live request.
unsafe fn add_allow_header(r: *mut ngx_http_request_t, value: &str) {
    // SAFETY: r is live; the header list and the pool belong to it.
    unsafe {
        let h = ngx_list_push(&mut (*r).headers_out.headers) as *mut ngx_table_elt_t;
        let data = ngx_pnalloc((*r).pool, value.len()) as *mut u8;
        if h.is_null() || data.is_null() {
            return;
        }
        ptr::copy_nonoverlapping(value.as_ptr(), data, value.len());
        h.write(std::mem::zeroed());
        (*h).hash = 1;
        (*h).key = ngx_string!("Allow");
        (*h).value = ngx_str_t {
            len: value.len(),
            data,
        };
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
/// temporary file); answers 413 past `aws_payload_max_size`.
unsafe extern "C" fn request_body_filter(
    r: *mut ngx_http_request_t,
    input: *mut ngx_chain_t,
) -> ngx_int_t {
    // SAFETY: nginx calls body filters with the live request and a chain of
    // live buffers; NEXT_REQUEST_BODY_FILTER was set at postconfiguration.
    unsafe {
        if let Some(lc) = loc_conf(r).filter(|lc| lc.hashes_body) {
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
                    if let Some(max) = lc.payload_max {
                        if hasher.len() > max {
                            log_too_large((*(*r).connection).log, max);
                            return NGX_HTTP_REQUEST_ENTITY_TOO_LARGE as ngx_int_t;
                        }
                    }
                    if last {
                        if let Some(h) = ctx.hasher.take() {
                            ctx.body_len = h.len();
                            ctx.body_hash = h.finish_hex();
                            ctx.body_done = true;
                            // Signing happens now, not when the upload began.
                            ctx.set_clock((*ngx::ffi::ngx_cached_time).sec);
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

/// Arms the signing filter on the upstream request being built, if any.
/// Only possible between the proxy's `create_request` and the upstream
/// module installing its default writer, which is when the proxy evaluates
/// header values.
///
/// # Safety
/// `r` must be a live request.
pub unsafe fn arm_upstream_filter(r: *mut ngx_http_request_t) {
    // SAFETY: r is live; r->upstream is NULL or the live upstream.
    unsafe {
        let u = (*r).upstream;
        if u.is_null() || (*u).output.output_filter.is_some() {
            return;
        }
        // Only the proxy module builds HTTP heads ("http://", "https://");
        // fastcgi, uwsgi, scgi, grpc and memcached upstreams are left alone.
        if !ngx_bytes(&(*u).schema).starts_with(b"http") {
            return;
        }
        if request_ctx(r).is_none() {
            return;
        }
        (*u).output.output_filter = Some(sign_filter);
        (*u).output.filter_ctx = r as *mut c_void;
    }
}

/// The upstream output filter: signs the head on its first call, then
/// hands everything to the upstream's writer.
unsafe extern "C" fn sign_filter(data: *mut c_void, input: *mut ngx_chain_t) -> ngx_int_t {
    let r = data as *mut ngx_http_request_t;
    // SAFETY: data is the request the filter was armed for; it outlives its
    // upstream, whose writer is passed on exactly as nginx would.
    unsafe {
        let u = (*r).upstream;
        if let Some(ctx) = request_ctx(r) {
            if ctx.signed_upstream != u && !input.is_null() {
                if let Err(status) = sign_first_buffer(r, ctx, input) {
                    // A status code survives ngx_output_chain only on its
                    // short path (a single buffer); NGX_ERROR always does.
                    return if (*input).next.is_null() {
                        status
                    } else {
                        Status::NGX_ERROR.into()
                    };
                }
                ctx.signed_upstream = u;
            }
        } else {
            return Status::NGX_ERROR.into();
        }
        ngx_chain_writer(ptr::addr_of_mut!((*u).writer) as *mut c_void, input)
    }
}

/// Signs the head at the start of the chain's first buffer in place: the
/// buffer is pointed at a pool copy holding the signed head and whatever
/// followed the old head.
///
/// # Safety
/// `r` live, `input` a chain whose first buffer starts with the request head.
unsafe fn sign_first_buffer(
    r: *mut ngx_http_request_t,
    ctx: &mut RequestCtx,
    input: *mut ngx_chain_t,
) -> Result<(), ngx_int_t> {
    let server_error = NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
    // SAFETY: see the contract.
    unsafe {
        let log = (*(*r).connection).log;
        let lc = loc_conf(r).ok_or(server_error)?;
        let Some(signing) = lc.signing.as_ref() else {
            ngx_log_error!(
                NGX_LOG_ERR,
                log,
                "aws_auth: no credentials to sign the upstream request with"
            );
            return Err(server_error);
        };
        let b = (*input).buf;
        if b.is_null() || (*b).pos.is_null() || (*b).last < (*b).pos {
            ngx_log_error!(
                NGX_LOG_ERR,
                log,
                "aws_auth: the upstream request head is not in memory"
            );
            return Err(server_error);
        }
        let bytes = std::slice::from_raw_parts((*b).pos, (*b).last.offset_from((*b).pos) as usize);
        let head = match parse_head(bytes) {
            Ok(h) => h,
            Err(e) => {
                ngx_log_error!(
                    NGX_LOG_ERR,
                    log,
                    "aws_auth: cannot sign the upstream request: {e}"
                );
                return Err(server_error);
            }
        };
        if !lc.method_allowed(head.method) {
            ngx_log_error!(
                NGX_LOG_ERR,
                log,
                "aws_auth: upstream method \"{}\" is not signed (aws_sign_methods {}), answering 405",
                String::from_utf8_lossy(head.method),
                lc.allow
            );
            return Err(NGX_HTTP_NOT_ALLOWED as ngx_int_t);
        }
        let content_length = header_value(&head, b"content-length");
        let wire_body = header_value(&head, b"transfer-encoding").is_some()
            || content_length.is_some_and(|v| v != b"0");
        if let Some(bucket) = lc.bucket.as_deref() {
            if let Some(why) = wrong_bucket(&head, bucket, lc.addressing, lc.endpoint()) {
                ngx_log_error!(NGX_LOG_ERR, log, "aws_auth: {why}");
                return Err(server_error);
            }
        }
        let amz_date = ctx.amz_date();
        let day = amz_date.get(..8).unwrap_or("");
        let body = wire_body.then(|| signed_payload(ctx, content_length));
        let result = signing.with_key(day, |scope, key| {
            let rules = Signing::rules(scope);
            let payload_hash = if !wire_body {
                EMPTY_PAYLOAD_SHA256
            } else if lc.payload_for(rules) == Payload::Unsigned {
                UNSIGNED_PAYLOAD
            } else {
                let hash = match &body {
                    Some(Ok(h)) => h,
                    Some(Err(e)) => return Err(e.clone()),
                    None => return Err("no body to hash".into()),
                };
                // 64 hex digits
                std::str::from_utf8(hash).map_err(|_| "bad body hash".to_string())?
            };
            let how = HeadSigning {
                creds: Credentials {
                    access_key: &signing.access_key,
                    scope,
                    key,
                },
                amz_date,
                payload_hash,
                content_sha256_header: lc.content_sha256_header_for(rules),
                session_token: signing.session_token.as_deref(),
                rules,
                forward: lc.forward(),
            };
            sign_head(bytes, &how)
                .map(|s| (s, payload_hash))
                .map_err(|e| format!("cannot sign the upstream request: {e}"))
        });
        let Some(result) = result else {
            log_missing_key(log, ctx.now, day, signing);
            return Err(server_error);
        };
        let (signed, payload_hash) = match result {
            Ok(s) => s,
            Err(e) => {
                ngx_log_error!(NGX_LOG_ERR, log, "aws_auth: {e}");
                return Err(server_error);
            }
        };
        let sha = payload_hash.as_bytes();
        let n = sha.len().min(ctx.sent_sha.len());
        ctx.sent_sha[..n].copy_from_slice(&sha[..n]);
        ctx.sent_sha_len = n;
        ngx_log_debug_http!(
            &*ngx::http::Request::from_ngx_http_request(r),
            "aws_auth: canonical request (session token redacted):\n{}",
            redact_token(
                signed.signed.canonical_request(),
                signing.session_token.as_deref()
            )
        );
        ngx_log_debug_http!(
            &*ngx::http::Request::from_ngx_http_request(r),
            "aws_auth: string to sign:\n{}",
            signed.signed.string_to_sign()
        );
        let rest = &bytes[head.len..];
        let total = signed.head.len() + rest.len();
        let mem = ngx_palloc((*r).pool, total) as *mut u8;
        if mem.is_null() {
            return Err(server_error);
        }
        ptr::copy_nonoverlapping(signed.head.as_ptr(), mem, signed.head.len());
        ptr::copy_nonoverlapping(rest.as_ptr(), mem.add(signed.head.len()), rest.len());
        (*b).start = mem;
        (*b).pos = mem;
        (*b).last = mem.add(total);
        (*b).end = mem.add(total);
        (*b).set_temporary(1);

        let auth = signed.signed.authorization().as_bytes();
        let a = ngx_palloc((*r).pool, auth.len()) as *mut u8;
        if !a.is_null() {
            ptr::copy_nonoverlapping(auth.as_ptr(), a, auth.len());
            ctx.authorization = ngx_str_t {
                len: auth.len(),
                data: a,
            };
        }
    }
    Ok(())
}

/// The payload hash of a body read and hashed by [`request_body_filter`],
/// provided it is the body going out.
fn signed_payload(ctx: &RequestCtx, content_length: Option<&[u8]>) -> Result<[u8; 64], String> {
    if ctx.body_unhashable || !ctx.body_done {
        return Err(
            "cannot sign the request body: it was not read whole before the request was sent \
             (proxy_request_buffering off?); use aws_sign, or aws_payload unsigned"
                .into(),
        );
    }
    let sent = content_length.and_then(|v| std::str::from_utf8(v).ok()?.parse::<u64>().ok());
    if sent != Some(ctx.body_len) {
        return Err(format!(
            "cannot sign the request body: {} bytes were read and hashed but the upstream request carries {}",
            ctx.body_len,
            content_length.map_or("no Content-Length".into(), |v| String::from_utf8_lossy(v).into_owned())
        ));
    }
    Ok(ctx.body_hash)
}

/// The canonical request as text for the debug log, with the session token
/// replaced: a token is a credential and never goes to a log.
fn redact_token(canonical: &[u8], token: Option<&str>) -> String {
    let text = String::from_utf8_lossy(canonical);
    match token {
        Some(t) if !t.is_empty() => text.replace(t, "<redacted>"),
        _ => text.into_owned(),
    }
}

/// One error line per second at most per worker for requests that find no
/// key for their day: during an outage every request would log one.
fn log_missing_key(log: *mut ngx::ffi::ngx_log_t, now: i64, day: &str, signing: &Signing) {
    use std::sync::atomic::{AtomicI64, Ordering};
    static LAST: AtomicI64 = AtomicI64::new(i64::MIN);
    if LAST.swap(now, Ordering::Relaxed) == now {
        return;
    }
    let first = signing.keys.first().map(|k| k.0.date()).unwrap_or("-");
    let last = signing.keys.last().map(|k| k.0.date()).unwrap_or("-");
    ngx_log_error!(
        NGX_LOG_ERR,
        log,
        "aws_auth: no signing key for {day} (keys cover {first} to {last}): AWS accepts a key only on its own UTC day; install a key for {day} and reload (requests answered 500)"
    );
}

/// With `aws_s3_bucket` set, the request must address that bucket, the way
/// `aws_s3_addressing` says, or either way when it is not set:
/// virtual-host style (`Host: bucket.endpoint`, or the bucket name itself
/// as a CNAME) or path style (`/bucket/...`). Otherwise S3 would answer for
/// another bucket, or not at all: say so instead of sending it.
fn wrong_bucket(
    head: &aws_signer::wire::Head<'_>,
    bucket: &str,
    addressing: Option<Addressing>,
    endpoint: &str,
) -> Option<String> {
    let host = header_value(head, b"host")?;
    let name = match host.iter().rposition(|&c| c == b':') {
        Some(i) if !host.ends_with(b"]") => &host[..i],
        _ => host,
    };
    let b = bucket.as_bytes();
    let virtual_host = name.eq_ignore_ascii_case(b)
        || (name.len() > b.len()
            && name[..b.len()].eq_ignore_ascii_case(b)
            && name[b.len()] == b'.');
    let path = head.path;
    let path_style =
        path.get(1..b.len() + 1) == Some(b) && matches!(path.get(b.len() + 1), None | Some(b'/'));
    let (ok, want) = match addressing {
        Some(Addressing::Virtual) => (
            virtual_host,
            format!("virtual-host addressing (aws_s3_addressing virtual) needs Host \"{bucket}.{endpoint}\": proxy_pass http://{bucket}.{endpoint}; or proxy_set_header Host $aws_s3_host;"),
        ),
        Some(Addressing::Path) => (
            path_style,
            format!("path addressing (aws_s3_addressing path) needs a path starting with /{bucket}/: proxy_pass http://{endpoint}/{bucket}/; or a rewrite"),
        ),
        None => (
            virtual_host || path_style,
            format!("send Host \"{bucket}.{endpoint}\" or a path starting with /{bucket}/"),
        ),
    };
    if ok {
        return None;
    }
    let shown = &path[..path.len().min(64)];
    Some(format!(
        "the upstream request (Host \"{}\", path \"{}\") does not address bucket \"{bucket}\"; {want}",
        String::from_utf8_lossy(host),
        String::from_utf8_lossy(shown)
    ))
}

/// `$aws_presigned_url`: a GET URL for the current `$uri` (and query) on
/// `$aws_s3_host`, signed in its query string, valid for
/// `aws_presign_expires` but never past the end of the last configured
/// key's UTC day.
///
/// # Safety
/// `r` must be a live request.
pub unsafe fn presigned_url(r: *mut ngx_http_request_t, ctx: &RequestCtx) -> Option<String> {
    // SAFETY: r is live.
    unsafe {
        let lc = loc_conf(r)?;
        let signing = lc.signing.as_ref()?;
        let log = (*(*r).connection).log;
        let mut expires = lc
            .presign_expires
            .unwrap_or(crate::conf::DEFAULT_PRESIGN_EXPIRES) as i64;
        if let Some(end) = signing.coverage_end() {
            expires = expires.min(end - ctx.now);
        }
        if expires <= 0 {
            log_missing_key(log, ctx.now, ctx.amz_date().get(..8)?, signing);
            return None;
        }
        let mut path = Vec::with_capacity((*r).uri.len * 3 + 64);
        path.extend_from_slice(lc.s3_path_prefix.as_bytes());
        aws_signer::encode_into(ngx_bytes(&(*r).uri), true, &mut path);
        let host = lc.s3_host.as_bytes();
        let headers: [(&[u8], &[u8]); 1] = [(b"host", host)];
        let amz_date = ctx.amz_date();
        let day = amz_date.get(..8)?;
        let presigned = signing.with_key(day, |scope, key| {
            let rules = Signing::rules(scope);
            let req = aws_signer::Request {
                method: b"GET",
                path: &path,
                query: ngx_bytes(&(*r).args),
                headers: &headers,
                payload_hash: match rules {
                    aws_signer::PathRules::S3 => UNSIGNED_PAYLOAD.as_bytes(),
                    _ => EMPTY_PAYLOAD_SHA256.as_bytes(),
                },
                rules,
            };
            let creds = Credentials {
                access_key: &signing.access_key,
                scope,
                key,
            };
            aws_signer::presign(
                &req,
                &creds,
                amz_date,
                expires as u64,
                signing.session_token.as_deref(),
            )
        });
        let Some(p) = presigned else {
            log_missing_key(log, ctx.now, day, signing);
            return None;
        };
        ngx_log_debug_http!(
            &*ngx::http::Request::from_ngx_http_request(r),
            "aws_auth: presigned URL canonical request (session token redacted):\n{}",
            redact_token(&p.canonical_request, signing.session_token.as_deref())
        );
        let scheme = lc.presign_scheme.as_deref().unwrap_or("https");
        let mut url = format!("{scheme}://{}", lc.s3_host);
        url.push_str(&String::from_utf8_lossy(&path));
        url.push('?');
        url.push_str(&String::from_utf8_lossy(&p.query));
        Some(url)
    }
}

/// What `$aws_content_sha256` shows: the value sent, once the request was
/// signed; before, the value the request will get.
///
/// # Safety
/// `r` must be a live request.
pub unsafe fn content_sha256_value(r: *mut ngx_http_request_t, ctx: &RequestCtx) -> &[u8] {
    if ctx.sent_sha_len > 0 {
        return &ctx.sent_sha[..ctx.sent_sha_len];
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
        .signing
        .as_ref()
        .map_or(aws_signer::PathRules::S3, Signing::default_rules);
    match (has_body, lc.payload_for(rules)) {
        (false, _) => EMPTY_PAYLOAD_SHA256.as_bytes(),
        (true, Payload::Unsigned) => UNSIGNED_PAYLOAD.as_bytes(),
        (true, Payload::Signed) if ctx.body_done => &ctx.body_hash,
        (true, Payload::Signed) => EMPTY_PAYLOAD_SHA256.as_bytes(),
    }
}

/// The `Authorization` value for the client's own request line, signed for
/// `bucket.endpoint`: what `$s3_auth_token` shows outside the proxy.
///
/// # Safety
/// `r` must be a live request.
pub unsafe fn sign_client_request(r: *mut ngx_http_request_t, ctx: &RequestCtx) -> Option<String> {
    // SAFETY: r is live.
    unsafe {
        let lc = loc_conf(r)?;
        let signing = lc.signing.as_ref()?;
        let host = lc.s3_host.as_bytes();
        let target = ngx_bytes(&(*r).unparsed_uri);
        let (path, query) = match target.iter().position(|&c| c == b'?') {
            Some(i) => (&target[..i], &target[i + 1..]),
            None => (target, &b""[..]),
        };
        let prefixed;
        let path = if lc.s3_path_prefix.is_empty() {
            path
        } else {
            prefixed = [lc.s3_path_prefix.as_bytes(), path].concat();
            &prefixed[..]
        };
        let amz_date = ctx.amz_date();
        let headers = signed_headers(
            host,
            Some(EMPTY_PAYLOAD_SHA256),
            amz_date,
            signing.session_token.as_deref(),
        );
        signing.with_key(amz_date.get(..8)?, |scope, key| {
            let req = aws_signer::Request {
                method: ngx_bytes(&(*r).method_name),
                path,
                query,
                headers: &headers,
                payload_hash: EMPTY_PAYLOAD_SHA256.as_bytes(),
                rules: Signing::rules(scope),
            };
            let creds = Credentials {
                access_key: &signing.access_key,
                scope,
                key,
            };
            aws_signer::sign(&req, &creds, amz_date)
                .authorization()
                .to_owned()
        })
    }
}
