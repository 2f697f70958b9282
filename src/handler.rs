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
use aws_signer::{Credentials, EMPTY_PAYLOAD_SHA256};
use ngx::core::Status;
use ngx::ffi::{
    ngx_chain_t, ngx_chain_writer, ngx_http_request_t, ngx_int_t, ngx_palloc, ngx_str_t,
    NGX_HTTP_BAD_REQUEST, NGX_HTTP_GET, NGX_HTTP_HEAD, NGX_HTTP_INTERNAL_SERVER_ERROR,
    NGX_HTTP_NOT_ALLOWED, NGX_LOG_ERR, NGX_LOG_INFO,
};
use ngx::{ngx_log_debug_http, ngx_log_error};

use crate::conf::{Addressing, Signing};
use crate::{loc_conf, ngx_bytes, request_ctx, RequestCtx};

/// Placeholder value of `$s3_auth_token` while the proxy builds the head;
/// the filter removes it. Should it ever reach S3, S3 refuses it.
pub const PENDING_AUTHORIZATION: &str = "AWS4-HMAC-SHA256 pending";

const ALLOWED_METHODS: [&[u8]; 2] = [b"GET", b"HEAD"];

fn method_allowed(m: &[u8]) -> bool {
    ALLOWED_METHODS.contains(&m)
}

/// Precontent phase: in an `aws_sign` location, refuse what cannot be
/// signed before any upstream connection is made. Never grants access.
///
/// # Safety
/// Called by nginx with a live request.
pub unsafe extern "C" fn precontent_handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: r is live for the duration of a phase handler.
    unsafe {
        let Some(lc) = loc_conf(r) else {
            return Status::NGX_DECLINED.into();
        };
        if !lc.sign_on() {
            return Status::NGX_DECLINED.into();
        }
        let log = (*(*r).connection).log;
        if (*r).method & (NGX_HTTP_GET | NGX_HTTP_HEAD) as usize == 0 {
            ngx_log_error!(
                NGX_LOG_INFO,
                log,
                "aws_sign: method \"{}\" is not signed (GET and HEAD only), answering 405",
                String::from_utf8_lossy(ngx_bytes(&(*r).method_name))
            );
            return NGX_HTTP_NOT_ALLOWED as ngx_int_t;
        }
        if (*r).headers_in.content_length_n > 0 || (*r).headers_in.chunked() != 0 {
            ngx_log_error!(
                NGX_LOG_INFO,
                log,
                "aws_sign: a {} request with a body cannot be signed, answering 400",
                String::from_utf8_lossy(ngx_bytes(&(*r).method_name))
            );
            return NGX_HTTP_BAD_REQUEST as ngx_int_t;
        }
    }
    Status::NGX_DECLINED.into()
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
        if !method_allowed(head.method) {
            ngx_log_error!(
                NGX_LOG_ERR,
                log,
                "aws_auth: upstream method \"{}\" is not signed (GET and HEAD only), answering 405",
                String::from_utf8_lossy(head.method)
            );
            return Err(NGX_HTTP_NOT_ALLOWED as ngx_int_t);
        }
        let has_body = header_value(&head, b"transfer-encoding").is_some()
            || header_value(&head, b"content-length").is_some_and(|v| v != b"0");
        if has_body {
            ngx_log_error!(
                NGX_LOG_ERR,
                log,
                "aws_auth: the upstream {} request carries a body, which is not signed; refusing it",
                String::from_utf8_lossy(head.method)
            );
            return Err(NGX_HTTP_BAD_REQUEST as ngx_int_t);
        }
        if let Some(bucket) = lc.bucket.as_deref() {
            if let Some(why) = wrong_bucket(&head, bucket, lc.addressing, lc.endpoint()) {
                ngx_log_error!(NGX_LOG_ERR, log, "aws_auth: {why}");
                return Err(server_error);
            }
        }
        let amz_date = ctx.amz_date();
        let day = amz_date.get(..8).unwrap_or("");
        let result = signing.with_key(day, |scope, key| {
            let how = HeadSigning {
                creds: Credentials {
                    access_key: &signing.access_key,
                    scope,
                    key,
                },
                amz_date,
                payload_hash: EMPTY_PAYLOAD_SHA256,
                session_token: signing.session_token.as_deref(),
                rules: Signing::rules(scope),
                forward: lc.forward(),
            };
            sign_head(bytes, &how)
        });
        let Some(result) = result else {
            log_missing_key(log, ctx.now, day, signing);
            return Err(server_error);
        };
        let signed = match result {
            Ok(s) => s,
            Err(e) => {
                ngx_log_error!(
                    NGX_LOG_ERR,
                    log,
                    "aws_auth: cannot sign the upstream request: {e}"
                );
                return Err(server_error);
            }
        };
        ngx_log_debug_http!(
            &*ngx::http::Request::from_ngx_http_request(r),
            "aws_auth: canonical request (session token redacted):\n{}",
            redact_token(
                &signed.signed.canonical_request,
                signing.session_token.as_deref()
            )
        );
        ngx_log_debug_http!(
            &*ngx::http::Request::from_ngx_http_request(r),
            "aws_auth: string to sign:\n{}",
            signed.signed.string_to_sign
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
        let path = match (&lc.bucket, lc.addressing()) {
            (Some(b), Addressing::Path) => {
                prefixed = [b"/", b.as_bytes(), path].concat();
                &prefixed[..]
            }
            _ => path,
        };
        let amz_date = ctx.amz_date();
        let headers = signed_headers(
            host,
            EMPTY_PAYLOAD_SHA256,
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
