//! `aws_s3_autoindex`: a GET or HEAD of a "directory" (a URI ending in
//! `/`) is answered with a page listing the objects and common prefixes
//! under it.
//!
//! The request goes to S3 as every request does (location, `proxy_pass`,
//! the signing filter); the signing filter turns its head into the
//! ListObjectsV2 request for the same key prefix (`aws_signer::listing::
//! list_head`) and signs that. The answer's XML is read as it streams in
//! by this module's body filter and written out as HTML or JSON. While S3
//! says there is more, each further page is a subrequest of the same URI
//! carrying the continuation token, placed after the pages before it; the
//! last one ends the response. An answer other than 200 on the first page
//! passes through as it is (S3's error); on a later page it ends the
//! response short (the connection is closed, so no client mistakes a part
//! for the whole).

use std::ptr;

use aws_signer::listing::{self, Entry, Format, ListReader};
use ngx::core::{Pool, Status};
use ngx::ffi::{
    ngx_buf_t, ngx_chain_get_free_buf, ngx_chain_t, ngx_chain_update_chains, ngx_http_request_t,
    ngx_http_send_special, ngx_http_subrequest, ngx_int_t, ngx_palloc, ngx_pnalloc, ngx_read_file,
    ngx_str_t, ngx_uint_t, NGX_HTTP_HEAD, NGX_HTTP_LAST, NGX_HTTP_NOT_FOUND, NGX_LOG_ERR,
};
use ngx::ngx_log_error;

use crate::conf::LocConf;
use crate::{existing_ctx, request_ctx, RequestCtx};

/// Bytes per output buffer.
const OUT_BUF: usize = 16 * 1024;

/// One page's state (one request: the client's, or a subrequest for a
/// further page), in the request pool.
pub struct Listing {
    /// The request is not a listing after all (the upstream request names
    /// an object): nothing is changed.
    declined: bool,
    /// `continuation-token` of this page's request.
    token: Option<Vec<u8>>,
    /// The prefix sent (when this worker sent the request, not a cache).
    sent_prefix: Option<Vec<u8>>,
    /// The answer is 200 and is being turned into the page.
    render: bool,
    /// A further page's answer is not a listing: the response ends short.
    failed: bool,
    reader: ListReader,
    /// The client's request holds the state of the whole listing.
    shared: Option<Shared>,
    /// The client's request was redirected to this directory's index
    /// object: if S3 has none (404), the directory is listed instead.
    fallback: Option<ngx_str_t>,
    /// The index object's 404 is being dropped; the listing follows it.
    swallow: bool,
    /// `aws_s3_append_slash`: the state of the client's request.
    slash: Slash,
    /// A probe: is there anything under this prefix? (One key asked for,
    /// nothing written.)
    probe: bool,
    /// The probe found an entry.
    found: bool,
}

/// `aws_s3_append_slash`, on the client's request.
#[derive(Default)]
enum Slash {
    #[default]
    Off,
    /// Waiting for S3's answer for the object.
    Armed,
    /// S3 answered 404: its header is held and its body kept while the
    /// probe asks whether `uri/` holds anything.
    Held { body: Vec<u8> },
    /// Decided: the response goes out.
    Done,
}

/// The state of a whole listing, held by the client's request.
struct Shared {
    format: Format,
    /// The most entries listed.
    max: usize,
    /// Entries written so far.
    written: usize,
    /// Entries left out because `max` were written.
    cut: bool,
    /// Pages asked for after the first.
    pages: usize,
    /// The start of the page is written.
    head_written: bool,
    /// The whole listing is written.
    finished: bool,
    /// Output buffers, shared by every page.
    free: *mut ngx_chain_t,
    busy: *mut ngx_chain_t,
    /// The next page to ask for once the client has taken what was sent:
    /// its URI and continuation token.
    pending: Option<(ngx_str_t, Vec<u8>)>,
    /// The response header is held, and the page's start kept here, until
    /// the first page shows an entry: a directory with nothing under it
    /// does not exist, and is answered 404.
    held: Option<Vec<u8>>,
    /// The answer held an entry (a key or a common prefix, listed or not).
    seen: bool,
    /// The held header went out as one without a body (a 304): nothing
    /// more is written.
    bodiless: bool,
}

impl Listing {
    fn new(token: Option<Vec<u8>>, shared: Option<Shared>) -> Listing {
        Listing {
            declined: false,
            token,
            sent_prefix: None,
            render: false,
            failed: false,
            reader: ListReader::default(),
            shared,
            fallback: None,
            swallow: false,
            slash: Slash::Off,
            probe: false,
            found: false,
        }
    }
}

fn new_shared(format: Format, max: usize) -> Shared {
    Shared {
        format,
        max,
        written: 0,
        cut: false,
        pages: 0,
        head_written: false,
        finished: false,
        free: ptr::null_mut(),
        busy: ptr::null_mut(),
        pending: None,
        held: None,
        seen: false,
        bodiless: false,
    }
}

/// `r`, the client's request for directory `dir`, was just redirected to
/// its index object: should S3 answer 404 for it, the directory is listed
/// instead (in `format`, `max` entries at most). False when out of memory.
///
/// # Safety
/// `r` must be a live main request.
pub unsafe fn fallback(
    r: *mut ngx_http_request_t,
    dir: ngx_str_t,
    format: Format,
    max: usize,
) -> bool {
    let mut l = Listing::new(None, Some(new_shared(format, max)));
    l.fallback = Some(dir);
    // SAFETY: r is live.
    unsafe { attach(r, l) }
}

/// `aws_s3_append_slash`: should S3 answer 404 for `r`'s object, `r` (the
/// client's request for a URI without a trailing slash) asks whether the
/// URI with a slash is a directory, and answers 301 to it if so. False
/// when out of memory.
///
/// # Safety
/// `r` must be a live main request.
pub unsafe fn arm_append_slash(r: *mut ngx_http_request_t) -> bool {
    let mut l = Listing::new(None, Some(new_shared(Format::Html, 0)));
    l.slash = Slash::Armed;
    // SAFETY: r is live.
    unsafe { attach(r, l) }
}

/// Makes `r` (the client's request for a "directory") a listing, in
/// `format`, of `max` entries at most, starting at the client's
/// `continuation-token` argument when it has one. False when out of
/// memory.
///
/// # Safety
/// `r` must be a live main request.
pub unsafe fn start(r: *mut ngx_http_request_t, format: Format, max: usize) -> bool {
    // SAFETY: r is live; its args live as long as it.
    let token = unsafe { listing::query_value((*r).args.as_bytes(), b"continuation-token") };
    // SAFETY: r is live.
    unsafe { attach(r, Listing::new(token, Some(new_shared(format, max)))) }
}

/// Whether `r` is a page of a listing (its context says so).
///
/// # Safety
/// `r` must be a live request.
pub unsafe fn is_page(r: *mut ngx_http_request_t) -> bool {
    // SAFETY: r is live.
    unsafe { existing_ctx(r) }.is_some_and(|c| !c.listing.is_null())
}

/// # Safety
/// `r` must be a live request.
unsafe fn attach(r: *mut ngx_http_request_t, l: Listing) -> bool {
    // SAFETY: r is live; the listing is dropped with its pool.
    unsafe {
        let Some(ctx) = request_ctx(r) else {
            return false;
        };
        let p = Pool::from_ngx_pool((*r).pool).allocate(l);
        if p.is_null() {
            return false;
        }
        ctx.listing = p;
        true
    }
}

/// The page state of a request, if it is one.
fn page_of(ctx: &RequestCtx) -> Option<&'static mut Listing> {
    // SAFETY: listing is NULL or the Listing attach put in the request's
    // pool, which outlives the request's use of it.
    unsafe { ctx.listing.as_mut() }
}

/// A listing request to sign: its continuation token and how many keys it
/// asks for.
pub type PageRequest<'c> = (Option<&'c [u8]>, usize);

/// What the signing filter needs to turn a directory head into a listing
/// request: the continuation token and how many keys to ask for. `None`
/// when the request is not a listing page still to send. A page is a
/// subrequest (but the first page of a listing): it lists only where the
/// location `lc` it landed in says so, else `Err` names the directive that
/// is off there.
pub fn request_of<'c>(
    ctx: &'c RequestCtx,
    lc: &LocConf,
) -> Option<Result<PageRequest<'c>, &'static str>> {
    let l = page_of(ctx)?;
    if l.declined || l.fallback.is_some() || !matches!(l.slash, Slash::Off) {
        return None;
    }
    let (on, directive, keys) = if l.probe {
        (lc.append_slash, "aws_s3_append_slash", 1)
    } else {
        (lc.autoindex, "aws_s3_autoindex", listing::PAGE_KEYS)
    };
    if on != Some(true) {
        return Some(Err(directive));
    }
    Some(Ok((l.token.as_deref(), keys)))
}

/// The signing filter sent the listing request for `prefix`, or (None)
/// found that the upstream request names an object.
pub fn sent(ctx: &RequestCtx, prefix: Option<Vec<u8>>) {
    if let Some(l) = page_of(ctx) {
        match prefix {
            Some(p) => l.sent_prefix = Some(p),
            None => l.declined = true,
        }
    }
}

/// The listing-wide state, held by the main request's page.
///
/// # Safety
/// `r` must be a live request.
unsafe fn shared_of(r: *mut ngx_http_request_t) -> *mut Shared {
    // SAFETY: r and its main request are live.
    unsafe { existing_ctx((*r).main) }
        .and_then(|c| page_of(c))
        .and_then(|l| l.shared.as_mut())
        .map_or(ptr::null_mut(), |s| s as *mut Shared)
}

crate::output_filters!(
    "the listing's header and body filters, in a configuration with \
     `aws_s3_autoindex on`"
);

unsafe extern "C" fn header_filter(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: nginx calls header filters with a live request.
    let Some(l) = unsafe { existing_ctx(r) }.and_then(|c| page_of(c)) else {
        // SAFETY: r is live.
        return unsafe { next_header(r) };
    };
    // SAFETY: r is live; its upstream is NULL or live.
    unsafe {
        if l.declined {
            return next_header(r);
        }
        let status = (*r).headers_out.status;
        let proxied = !(*r).upstream.is_null();
        if matches!(l.slash, Slash::Armed) {
            if status != 404 || !proxied {
                l.slash = Slash::Done;
                return next_header(r);
            }
            // hold S3's 404 while the probe asks about uri/
            l.slash = Slash::Held { body: Vec::new() };
            let mut dir = (*r).uri.as_bytes().to_vec();
            dir.push(b'/');
            let Some(uri) = pool_str((*r).pool, &[&dir]) else {
                return Status::NGX_ERROR.into();
            };
            if let Err(why) = next_page(r, uri, None, true) {
                log(r, &why);
                return Status::NGX_ERROR.into();
            }
            hold_main(r, true);
            return Status::NGX_OK.into();
        }
        if matches!(l.slash, Slash::Done) {
            return next_header(r);
        }
        if l.probe {
            // S3's answer to the probe: anything but a listing is "nothing"
            l.render = status == 200 && proxied && (l.sent_prefix.is_some() || (*r).cached() != 0);
            return next_header(r);
        }
        if l.fallback.is_some() {
            if status == 404 && proxied {
                // no index object: the listing instead of S3's 404
                (*r).headers_out.status = 200;
                (*r).headers_out.status_line = ngx_str_t {
                    len: 0,
                    data: ptr::null_mut(),
                };
                set_page_headers(r, l.shared.as_ref().map_or(Format::Html, |s| s.format));
                l.swallow = (*r).header_only() == 0;
            } else {
                l.declined = true;
            }
            return next_header(r);
        }
        // an answer to the listing request (sent, or kept by a cache), not
        // whatever else a location may have answered
        let listed = l.sent_prefix.is_some() || (*r).cached() != 0;
        let ok = status == 200 && proxied && listed;
        match &mut l.shared {
            // a further page: its header goes nowhere
            None => {
                l.render = ok;
                l.failed = !ok;
            }
            Some(shared) if ok => {
                set_page_headers(r, shared.format);
                l.render = (*r).header_only() == 0;
                let head = (*r).method & NGX_HTTP_HEAD as ngx_uint_t != 0;
                if l.render && !head && l.token.is_none() {
                    // held until the page shows whether the directory exists
                    shared.held = Some(Vec::new());
                    return Status::NGX_OK.into();
                }
            }
            // S3's error passes through
            Some(_) => {}
        }
        next_header(r)
    }
}

/// The listing page's own headers instead of the XML answer's.
///
/// # Safety
/// `r` must be a live request whose header is not sent yet.
unsafe fn set_page_headers(r: *mut ngx_http_request_t, format: Format) {
    let (full, len): (&'static [u8], usize) = match format {
        Format::Html => (b"text/html; charset=utf-8", 9),
        Format::Json => (b"application/json", 16),
    };
    // SAFETY: see the contract; the strings are static.
    unsafe {
        let h = &mut (*r).headers_out;
        h.content_type = ngx_str_t {
            len: full.len(),
            data: full.as_ptr() as *mut u8,
        };
        h.content_type_len = len;
        h.content_type_lowcase = ptr::null_mut();
        h.content_type_hash = 0;
        h.charset = match format {
            Format::Html => ngx_str_t {
                len: 5,
                data: b"utf-8".as_ptr() as *mut u8,
            },
            Format::Json => ngx_str_t {
                len: 0,
                data: ptr::null_mut(),
            },
        };
        h.content_length_n = -1;
        for slot in [
            &mut h.content_length,
            &mut h.etag,
            &mut h.last_modified,
            &mut h.accept_ranges,
            &mut h.content_encoding,
            &mut h.content_range,
        ] {
            if !slot.is_null() {
                (**slot).hash = 0;
                *slot = ptr::null_mut();
            }
        }
        h.last_modified_time = -1;
        (*r).set_allow_ranges(0);
    }
}

unsafe extern "C" fn body_filter(r: *mut ngx_http_request_t, input: *mut ngx_chain_t) -> ngx_int_t {
    // SAFETY: nginx calls body filters with a live request.
    let Some(l) = unsafe { existing_ctx(r) }.and_then(|c| page_of(c)) else {
        // SAFETY: r is live.
        return unsafe { next_body(r, input) };
    };
    if let Slash::Held { body } = &mut l.slash {
        // S3's 404 for the object, kept to be sent should the probe find
        // nothing (a few hundred bytes; at most 64 KiB kept)
        // SAFETY: the chain nginx passed; its buffers are read then
        // marked as consumed.
        // SAFETY: the chain nginx passed.
        let (_, kept) = unsafe {
            read_chain(input, &mut |data: &[u8]| {
                let room = (64 * 1024usize).saturating_sub(body.len());
                body.extend_from_slice(&data[..data.len().min(room)]);
                Ok(())
            })
        };
        return match kept {
            Ok(()) => Status::NGX_OK.into(),
            Err(why) => {
                log(r, &why);
                Status::NGX_ERROR.into()
            }
        };
    }
    if l.probe {
        // SAFETY: r is live, in its body filter.
        return unsafe { probe(r, l, input) };
    }
    if l.shared.as_ref().is_some_and(|s| s.bodiless) {
        // the held header went out without a body (a 304 from a
        // conditional request, say): what S3 still sends is dropped
        // SAFETY: the chain nginx passed.
        unsafe { consume(input) };
        return Status::NGX_OK.into();
    }
    if l.failed {
        // SAFETY: the chain nginx passed.
        unsafe { consume(input) };
        log(
            r,
            "a further page of the listing was not answered 200: the response ends short",
        );
        return Status::NGX_ERROR.into();
    }
    if l.shared.as_ref().is_some_and(|s| s.finished) {
        // SAFETY: r is live.
        return unsafe { next_body(r, input) };
    }
    if l.swallow {
        // SAFETY: r is live, in its body filter.
        return unsafe { swallow(r, l, input) };
    }
    if let Some(shared) = l.shared.as_mut().filter(|s| s.pending.is_some()) {
        // between two pages, while the client takes what was sent
        // SAFETY: r is live, in its body filter.
        let rc = unsafe { next_body(r, input) };
        // SAFETY: r is live.
        if rc != Status::NGX_ERROR.0 && unsafe { drained(r) } {
            if let Some((uri, token)) = shared.pending.take() {
                // SAFETY: r is the live main request.
                if let Err(why) = unsafe { next_page(r, uri, Some(token), false) } {
                    log(r, &why);
                    return Status::NGX_ERROR.into();
                }
            }
        }
        return rc;
    }
    if !l.render {
        // SAFETY: r is live.
        return unsafe { next_body(r, input) };
    }
    // SAFETY: r is live, in its body filter.
    match unsafe { render(r, l, input) } {
        Ok(rc) => rc,
        Err(why) => {
            log(r, &why);
            Status::NGX_ERROR.into()
        }
    }
}

fn log(r: *mut ngx_http_request_t, why: &str) {
    // SAFETY: r is live; its connection's log too.
    let log = unsafe { (*(*r).connection).log };
    ngx_log_error!(NGX_LOG_ERR, log, "aws_auth: aws_s3_autoindex: {why}");
}

/// Marks every buffer of `input` as consumed.
///
/// # Safety
/// `input` must be NULL or a live chain.
unsafe fn consume(mut input: *mut ngx_chain_t) {
    // SAFETY: see the contract.
    unsafe {
        while !input.is_null() {
            let b = (*input).buf;
            if !b.is_null() {
                (*b).pos = (*b).last;
                (*b).file_pos = (*b).file_last;
            }
            input = (*input).next;
        }
    }
}

/// Writes entry `e` of a page that asked for prefix `sent` (None: the
/// answer came from a cache, and the answer's own prefix is taken).
fn write_entry(
    shared: &mut Shared,
    sent: Option<&[u8]>,
    e: &Entry<'_>,
    out: &mut Vec<u8>,
    error: &mut Option<String>,
) {
    shared.seen = true;
    let echo = e.prefix;
    if let (Some(s), Some(p)) = (sent, echo) {
        if s != p {
            *error = Some("the answer is not the listing of the prefix asked for".into());
            return;
        }
    }
    let prefix = sent.or(echo).unwrap_or(b"");
    if let Some(name) = listing::entry_name(prefix, e) {
        if shared.written >= shared.max {
            shared.cut = true;
            return;
        }
        listing::write_entry(shared.format, shared.written == 0, name, e, out);
        shared.written += 1;
    }
}

/// Turns the answer's bytes in `input` into the page.
///
/// # Safety
/// `r` live, in its body filter; `l` its page state.
unsafe fn render(
    r: *mut ngx_http_request_t,
    l: &mut Listing,
    input: *mut ngx_chain_t,
) -> Result<ngx_int_t, String> {
    let Listing {
        token,
        sent_prefix,
        reader,
        shared,
        ..
    } = l;
    let main_page = shared.is_some();
    let shared: &mut Shared = match shared {
        Some(s) => s,
        // SAFETY: r is live; the main request's page state is another
        // request's, alive while any of its subrequests is.
        None => unsafe { shared_of(r).as_mut() }.ok_or("the listing has no main request")?,
    };
    let mut out = Vec::new();
    if !shared.head_written {
        shared.head_written = true;
        // SAFETY: r is live; its URI lives as long as it.
        let uri = unsafe { (*r).uri.as_bytes() };
        listing::write_head(shared.format, uri, &mut out);
    }
    let mut error = None;
    // SAFETY: the chain nginx passed.
    let (marks, read) = unsafe {
        read_chain(input, &mut |data: &[u8]| {
            let mut emit = |e: Entry<'_>| {
                write_entry(shared, sent_prefix.as_deref(), &e, &mut out, &mut error);
            };
            reader.feed(data, &mut emit).map_err(|e| e.to_string())
        })
    };
    read?;
    let Marks { end, flush } = marks;
    if let Some(e) = error.take() {
        return Err(e);
    }
    let mut last = false;
    if end {
        let mut emit = |e: Entry<'_>| {
            write_entry(shared, sent_prefix.as_deref(), &e, &mut out, &mut error);
        };
        reader.finish(&mut emit).map_err(|e| e.to_string())?;
        if let Some(e) = error.take() {
            return Err(e);
        }
        if let (Some(sent), Some(echo)) = (token.as_ref(), reader.token.as_ref()) {
            if sent != echo {
                return Err(
                    "the answer is not the listing of the continuation token asked for".into(),
                );
            }
        }
        let next = reader.next_token.as_ref().filter(|t| !t.is_empty());
        if next.is_some() && next == token.as_ref() {
            return Err("the answer gives back the continuation token it was asked with".into());
        }
        // A full page holds PAGE_KEYS entries: an S3 that needs more pages
        // than that makes does not get them (each page lives until the
        // response ends).
        let most_pages = shared.max.div_ceil(listing::PAGE_KEYS) + 1;
        let follow = reader.truncated && shared.written < shared.max && shared.pages < most_pages;
        if let Some(next) = next.filter(|_| follow).cloned() {
            shared.pages += 1;
            // SAFETY: r is live, in its body filter.
            if let Some(rc) = unsafe { release(r, shared, &mut out, false) }? {
                return Ok(rc);
            }
            // SAFETY: r is live, in its body filter.
            let rc = unsafe { send(r, shared, out, flush, false, !main_page) }?;
            if rc == Status::NGX_ERROR.0 {
                return Ok(rc);
            }
            // SAFETY: r's main request is live.
            unsafe { hold_main(r, true) };
            // SAFETY: r is live; its main request too.
            unsafe {
                if drained(r) {
                    next_page(r, (*r).uri, Some(next), false)?;
                } else {
                    // the client is slow: the next page is asked for when
                    // it has taken this one (the main request's writer)
                    shared.pending = Some(((*r).uri, next));
                }
            }
            return Ok(rc);
        }
        let more = reader.truncated || shared.cut;
        listing::write_tail(shared.format, more.then_some(shared.written), &mut out);
        shared.finished = true;
        last = true;
        // nothing under a prefix: no such directory (the top of the
        // listing, an empty prefix, is always there)
        let prefix = sent_prefix.as_deref().or(reader.prefix.as_deref());
        let missing = !shared.seen && prefix.is_some_and(|p| !p.is_empty());
        // SAFETY: r is live, in its body filter.
        if let Some(rc) = unsafe { release(r, shared, &mut out, missing) }? {
            return Ok(rc);
        }
    } else if shared.held.is_some() {
        if shared.seen {
            // SAFETY: r is live, in its body filter.
            if let Some(rc) = unsafe { release(r, shared, &mut out, false) }? {
                return Ok(rc);
            }
        } else {
            // still nothing: kept with the header
            if let Some(held) = shared.held.as_mut() {
                held.extend_from_slice(&out);
            }
            return Ok(Status::NGX_OK.into());
        }
    }
    // SAFETY: r is live, in its body filter.
    let rc = unsafe { send(r, shared, out, flush, last && main_page, end && !main_page) }?;
    if last {
        // SAFETY: r's main request is live.
        unsafe { hold_main(r, false) };
    }
    if last && !main_page && rc != Status::NGX_ERROR.0 {
        // the end of the whole response, which the main request held
        // back, after this page
        // SAFETY: r's main request is live.
        return Ok(unsafe { ngx_http_send_special((*r).main, NGX_HTTP_LAST as ngx_uint_t) });
    }
    Ok(rc)
}

/// Sends the held response header, 404 when the directory is `missing`,
/// and puts the held start of the page in front of `out`. `Some(rc)`
/// when the header could not go out (or there is to be no body).
///
/// # Safety
/// `r` live, in its body filter: the main request of a listing.
unsafe fn release(
    r: *mut ngx_http_request_t,
    shared: &mut Shared,
    out: &mut Vec<u8>,
    missing: bool,
) -> Result<Option<ngx_int_t>, String> {
    let Some(mut held) = shared.held.take() else {
        return Ok(None);
    };
    // SAFETY: see the contract; the header has not been sent.
    unsafe {
        if missing {
            (*r).headers_out.status = NGX_HTTP_NOT_FOUND as ngx_uint_t;
            (*r).headers_out.status_line = ngx_str_t {
                len: 0,
                data: ptr::null_mut(),
            };
        }
        let rc = next_header(r);
        if rc == Status::NGX_ERROR.0 || rc > Status::NGX_OK.0 || (*r).header_only() != 0 {
            // the upstream, which took the header as sent, goes on reading
            // the body: none of it may follow this header
            shared.bodiless = true;
            shared.finished = true;
            return Ok(Some(if rc == Status::NGX_ERROR.0 {
                rc
            } else {
                Status::NGX_OK.into()
            }));
        }
    }
    held.extend_from_slice(out);
    *out = held;
    Ok(None)
}

/// The bit of `r->buffered` that keeps the main request from finishing
/// while pages remain to be asked for: between two pages its postponed
/// list can be empty, and nginx would end it there. (It is the image
/// filter's bit, which never applies to a listing page.)
const LISTING_BUFFERED: u32 = 0x08;

/// Keeps the main request of `r` open (`hold`) or lets it end.
///
/// # Safety
/// `r` must be a live request.
unsafe fn hold_main(r: *mut ngx_http_request_t, hold: bool) {
    // SAFETY: see the contract.
    unsafe {
        let main = (*r).main;
        let b = (*main).buffered();
        (*main).set_buffered(if hold {
            b | LISTING_BUFFERED
        } else {
            b & !LISTING_BUFFERED
        });
    }
}

/// The client has taken everything sent so far (nothing waits in nginx's
/// output): a page more may be produced. Keeps what one slow client makes
/// nginx hold to about one page.
///
/// # Safety
/// `r` must be a live request.
unsafe fn drained(r: *mut ngx_http_request_t) -> bool {
    // SAFETY: see the contract.
    unsafe { (*(*r).connection).buffered() == 0 && (*(*r).main).out.is_null() }
}

/// What a chain's buffers say besides their bytes.
#[derive(Default)]
struct Marks {
    /// The end of the request's output.
    end: bool,
    /// A flush.
    flush: bool,
}

/// Calls `f` with the bytes of every buffer of `input` (from memory, or
/// read from its file), in order, and marks every buffer consumed, even
/// after an error; `f` is not called after its first error, returned.
///
/// # Safety
/// `input` must be NULL or a live chain.
unsafe fn read_chain(
    input: *mut ngx_chain_t,
    f: &mut dyn FnMut(&[u8]) -> Result<(), String>,
) -> (Marks, Result<(), String>) {
    let mut marks = Marks::default();
    let mut result = Ok(());
    let mut cl = input;
    // SAFETY: see the contract; memory buffers hold pos..last, file
    // buffers file_pos..file_last of their open file.
    unsafe {
        while !cl.is_null() {
            let b = (*cl).buf;
            cl = (*cl).next;
            if b.is_null() {
                continue;
            }
            marks.end |= (*b).last_buf() != 0 || (*b).last_in_chain() != 0;
            marks.flush |= (*b).flush() != 0;
            if result.is_ok() {
                result = read_buf(b, f);
            }
            (*b).pos = (*b).last;
            (*b).file_pos = (*b).file_last;
        }
    }
    (marks, result)
}

/// Calls `f` with the bytes of buffer `b`, from memory or read from its
/// file.
///
/// # Safety
/// `b` must be a live buffer.
unsafe fn read_buf(
    b: *mut ngx_buf_t,
    f: &mut dyn FnMut(&[u8]) -> Result<(), String>,
) -> Result<(), String> {
    // SAFETY: see the contract; memory buffers hold pos..last, file
    // buffers file_pos..file_last of their open file.
    unsafe {
        let in_memory = (*b).temporary() != 0 || (*b).memory() != 0 || (*b).mmap() != 0;
        if in_memory {
            if !(*b).pos.is_null() && (*b).last > (*b).pos {
                let n = (*b).last.offset_from((*b).pos) as usize;
                f(std::slice::from_raw_parts((*b).pos, n))?;
            }
        } else if (*b).in_file() != 0 && !(*b).file.is_null() {
            let mut chunk = [0u8; 8192];
            let mut at = (*b).file_pos;
            while at < (*b).file_last {
                let want = ((*b).file_last - at).min(chunk.len() as i64) as usize;
                let n = ngx_read_file((*b).file, chunk.as_mut_ptr(), want, at);
                if n <= 0 {
                    return Err("cannot read the cached listing".into());
                }
                f(&chunk[..n as usize])?;
                at += n as i64;
            }
        }
    }
    Ok(())
}

/// Sends `out` (copied into the listing's buffers): `last` ends the
/// response, `end` a subrequest's part of it.
///
/// # Safety
/// `r` live, in its body filter.
unsafe fn send(
    r: *mut ngx_http_request_t,
    shared: &mut Shared,
    out: Vec<u8>,
    flush: bool,
    last: bool,
    end: bool,
) -> Result<ngx_int_t, String> {
    let tag = ptr::addr_of!(crate::ngx_http_aws_auth_module) as ngx::ffi::ngx_buf_tag_t;
    let mut head: *mut ngx_chain_t = ptr::null_mut();
    let mut tail: *mut *mut ngx_chain_t = &mut head;
    let mut rest = out.as_slice();
    // SAFETY: r is live; buffers and links come from its pool (recycled
    // through the listing's free list), each written whole.
    unsafe {
        let pool = (*r).pool;
        loop {
            let cl = ngx_chain_get_free_buf(pool, &mut shared.free);
            if cl.is_null() {
                return Err("out of memory".into());
            }
            let b = (*cl).buf;
            if (*b).start.is_null() {
                let mem = ngx_palloc(pool, OUT_BUF) as *mut u8;
                if mem.is_null() {
                    return Err("out of memory".into());
                }
                (*b).start = mem;
                (*b).end = mem.add(OUT_BUF);
            }
            (*b).pos = (*b).start;
            (*b).last = (*b).start;
            (*b).tag = tag;
            (*b).set_temporary(1);
            (*b).set_recycled(1);
            (*b).set_flush(0);
            (*b).set_last_buf(0);
            (*b).set_last_in_chain(0);
            let room = (*b).end.offset_from((*b).start) as usize;
            let n = rest.len().min(room);
            ptr::copy_nonoverlapping(rest.as_ptr(), (*b).start, n);
            (*b).last = (*b).start.add(n);
            rest = &rest[n..];
            (*cl).next = ptr::null_mut();
            *tail = cl;
            tail = &mut (*cl).next;
            if rest.is_empty() {
                (*b).set_flush(u32::from(flush && !last));
                (*b).set_last_buf(u32::from(last));
                (*b).set_last_in_chain(u32::from(last || end));
                // an empty buffer goes out only as a special one
                (*b).set_temporary(u32::from(n > 0));
                (*b).set_sync(u32::from(n == 0 && end && !last));
                if !last && !end && !flush && n == 0 {
                    // nothing to say: no empty buffer goes out
                    *tail = ptr::null_mut();
                    (*cl).next = shared.free;
                    shared.free = cl;
                    if head == cl {
                        head = ptr::null_mut();
                    }
                }
                break;
            }
        }
        let mut sent = head;
        let rc = next_body(r, head);
        ngx_chain_update_chains(pool, &mut shared.free, &mut shared.busy, &mut sent, tag);
        Ok(rc)
    }
}

/// Asks for a page of the listing of `uri`: a subrequest, after the
/// pages before it in the main request's output, carrying `token` (none
/// for the first page).
///
/// # Safety
/// `r` must be a live request.
unsafe fn next_page(
    r: *mut ngx_http_request_t,
    mut uri: ngx_str_t,
    token: Option<Vec<u8>>,
    probe: bool,
) -> Result<(), String> {
    let mut args = Vec::new();
    if let Some(t) = &token {
        args.extend_from_slice(b"continuation-token=");
        aws_signer::encode_into(t, false, &mut args);
    }
    // SAFETY: r and its main request are live; the strings are copied
    // into the pool, where the subrequest keeps them.
    unsafe {
        let main = (*r).main;
        let pool = (*main).pool;
        let mut args_str = pool_str(pool, &[&args]).ok_or("out of memory")?;
        args_str.len = args.len();
        let mut sr: *mut ngx_http_request_t = ptr::null_mut();
        let rc = ngx_http_subrequest(main, &mut uri, &mut args_str, &mut sr, ptr::null_mut(), 0);
        if rc != Status::NGX_OK.0 || sr.is_null() {
            return Err("cannot make the subrequest for the next page".into());
        }
        // Its own $request_uri, so that a cache keeps each page apart, and
        // apart from the directory's index object (whose $request_uri is
        // the directory's, after the redirect) and from the probe (one
        // entry): the URI encoded, with what the page asks for.
        let mut target = Vec::with_capacity(uri.len * 3 + args.len() + 32);
        aws_signer::encode_into(uri.as_bytes(), true, &mut target);
        target.extend_from_slice(b"?list-type=2");
        if probe {
            target.extend_from_slice(b"&max-keys=1");
        }
        if !args.is_empty() {
            target.push(b'&');
            target.extend_from_slice(&args);
        }
        (*sr).unparsed_uri = pool_str(pool, &[&target]).ok_or("out of memory")?;
        // An error of the page is the listing's to report: error_page
        // would redirect it internally, and with its context gone, its
        // page would go out as part of the listing.
        (*sr).set_error_page(1);
        let mut page = Listing::new(token, None);
        page.probe = probe;
        if !attach(sr, page) {
            return Err("out of memory".into());
        }
    }
    Ok(())
}

/// Drops the index object's 404 body; at its end, asks for the first page
/// of the directory's listing.
///
/// # Safety
/// `r` live, in its body filter; `l` its page state.
unsafe fn swallow(
    r: *mut ngx_http_request_t,
    l: &mut Listing,
    input: *mut ngx_chain_t,
) -> ngx_int_t {
    // SAFETY: the chain nginx passed.
    let (Marks { end, .. }, _) = unsafe { read_chain(input, &mut |_| Ok(())) };
    if !end {
        return Status::NGX_OK.into();
    }
    l.swallow = false;
    let Some(dir) = l.fallback else {
        return Status::NGX_ERROR.into();
    };
    // SAFETY: r is live.
    if let Err(why) = unsafe { next_page(r, dir, None, false) } {
        log(r, &why);
        return Status::NGX_ERROR.into();
    }
    // SAFETY: r is live.
    unsafe { hold_main(r, true) };
    Status::NGX_OK.into()
}

/// The concatenation of `parts`, in `pool`.
///
/// # Safety
/// `pool` must be a live pool.
unsafe fn pool_str(pool: *mut ngx::ffi::ngx_pool_t, parts: &[&[u8]]) -> Option<ngx_str_t> {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    // SAFETY: see the contract; the memory is written whole.
    unsafe {
        let data = ngx_pnalloc(pool, len.max(1)) as *mut u8;
        if data.is_null() {
            return None;
        }
        let mut at = data;
        for p in parts {
            ptr::copy_nonoverlapping(p.as_ptr(), at, p.len());
            at = at.add(p.len());
        }
        Some(ngx_str_t { len, data })
    }
}

/// The probe's answer: anything under the prefix makes the client's
/// request a 301 to the URI with a slash; at its end, the held response
/// goes out.
///
/// # Safety
/// `r` live (the probe subrequest), in its body filter; `l` its state.
unsafe fn probe(r: *mut ngx_http_request_t, l: &mut Listing, input: *mut ngx_chain_t) -> ngx_int_t {
    let (reader, found, render) = (&mut l.reader, &mut l.found, l.render);
    // SAFETY: the chain nginx passed.
    let (Marks { end, .. }, read) = unsafe {
        read_chain(input, &mut |data: &[u8]| {
            if !render {
                return Ok(());
            }
            let mut emit = |_: Entry<'_>| *found = true;
            reader.feed(data, &mut emit).map_err(|e| e.to_string())
        })
    };
    if read.is_err() {
        // not a listing: nothing found
        l.render = false;
    }
    if !end {
        return Status::NGX_OK.into();
    }
    if l.render {
        let found = &mut l.found;
        let mut emit = |_: Entry<'_>| *found = true;
        if l.reader.finish(&mut emit).is_err() {
            l.found = false;
        }
    }
    let found = l.render && l.found;
    // SAFETY: r's main request is live; it holds the client's response.
    unsafe { release_held((*r).main, found) }
}

/// Sends the client's held response: a 301 to the URI with a slash when
/// `directory`, else S3's 404 as it came.
///
/// # Safety
/// `main` must be the live main request, whose header is held.
unsafe fn release_held(main: *mut ngx_http_request_t, directory: bool) -> ngx_int_t {
    // SAFETY: see the contract.
    unsafe {
        let Some(l) = existing_ctx(main).and_then(|c| page_of(c)) else {
            return Status::NGX_ERROR.into();
        };
        let Slash::Held { body } = std::mem::replace(&mut l.slash, Slash::Done) else {
            return Status::NGX_ERROR.into();
        };
        hold_main(main, false);
        let h = &mut (*main).headers_out;
        let mut body = body;
        if directory {
            let args = (*main).args.as_bytes();
            let sep: &[u8] = if args.is_empty() { b"" } else { b"?" };
            // the decoded URI encoded again: nothing in a key (`?`, `%`, a
            // line break) is read as anything but itself
            let mut path = Vec::with_capacity((*main).uri.len * 3 + 1);
            aws_signer::encode_into((*main).uri.as_bytes(), true, &mut path);
            let Some(location) = pool_str((*main).pool, &[&path, b"/", sep, args]) else {
                return Status::NGX_ERROR.into();
            };
            let loc = ngx::ffi::ngx_list_push(&mut h.headers) as *mut ngx::ffi::ngx_table_elt_t;
            if loc.is_null() {
                return Status::NGX_ERROR.into();
            }
            // written whole (the fields differ between nginx versions)
            loc.write(std::mem::zeroed());
            (*loc).hash = 1;
            (*loc).key = ngx_str_t {
                len: 8,
                data: b"Location".as_ptr() as *mut u8,
            };
            (*loc).lowcase_key = b"location".as_ptr() as *mut u8;
            (*loc).value = location;
            h.location = loc;
            h.status = 301;
            h.status_line = ngx_str_t {
                len: 0,
                data: ptr::null_mut(),
            };
            h.content_type = ngx_str_t {
                len: 0,
                data: ptr::null_mut(),
            };
            h.content_type_len = 0;
            body.clear();
        }
        h.content_length_n = body.len() as i64;
        if !h.content_length.is_null() {
            (*h.content_length).hash = 0;
            h.content_length = ptr::null_mut();
        }
        let rc = next_header(main);
        if rc == Status::NGX_ERROR.0 || rc > Status::NGX_OK.0 || (*main).header_only() != 0 {
            return rc;
        }
        // the body, then the end, from the main request (after the probe)
        let Some(data) = pool_str((*main).pool, &[&body]) else {
            return Status::NGX_ERROR.into();
        };
        let b =
            ngx::ffi::ngx_pcalloc((*main).pool, std::mem::size_of::<ngx_buf_t>()) as *mut ngx_buf_t;
        if b.is_null() {
            return Status::NGX_ERROR.into();
        }
        if !body.is_empty() {
            (*b).start = data.data;
            (*b).pos = data.data;
            (*b).last = data.data.add(data.len);
            (*b).end = (*b).last;
            (*b).set_memory(1);
        }
        (*b).set_last_buf(1);
        (*b).set_last_in_chain(1);
        let mut out = ngx_chain_t {
            buf: b,
            next: ptr::null_mut(),
        };
        ngx::ffi::ngx_http_output_filter(main, &mut out)
    }
}
