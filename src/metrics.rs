//! The counters behind `aws_auth_status`: one shared memory zone, added by
//! the first `aws_auth_status` of a configuration, holds an atomic `u64`
//! per [`Counter`] for all workers. A reload keeps the zone, and with it
//! the counts. Counting is one relaxed atomic add; without
//! `aws_auth_status` anywhere there is no zone and nothing is counted.
//!
//! The status handler answers in the Prometheus text format, rendered by
//! the signer crate's `metrics` module.

use std::ffi::c_void;
use std::ptr;
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};

use aws_signer::metrics::{self, Counter, Expiry, COUNTERS};
use ngx::core::Status;
use ngx::ffi::{
    ngx_chain_t, ngx_conf_t, ngx_http_discard_request_body, ngx_http_output_header_filter_pt,
    ngx_http_request_t, ngx_http_top_header_filter, ngx_int_t, ngx_shm_zone_t, NGX_HTTP_GET,
    NGX_HTTP_HEAD, NGX_HTTP_INTERNAL_SERVER_ERROR, NGX_HTTP_NOT_ALLOWED,
};
use ngx::http::{HttpModuleMainConf, Request};
use ngx::ngx_string;

use crate::{MainConf, Module};

/// Bumped whenever [`Counters`] changes: the zone's name carries it, so a
/// new layout never reads an old zone.
const LAYOUT: u32 = 1;
/// Also tells the number of counters: a zone of another size is never read.
const MAGIC: u64 = 0x6177_735f_6d65_0000 | COUNTERS as u64;
/// nginx wants at least eight pages for a slab zone.
const ZONE_SIZE: usize = 8 * 4096;

/// What the zone holds.
#[repr(C)]
pub struct Counters {
    magic: u64,
    values: [AtomicU64; COUNTERS],
}

/// This worker's counters: set when the worker starts, from the
/// configuration it runs; NULL without `aws_auth_status`.
static WORKER_COUNTERS: AtomicPtr<Counters> = AtomicPtr::new(ptr::null_mut());

/// Adds one to a counter (nothing without `aws_auth_status`).
pub fn count(c: Counter) {
    let p = WORKER_COUNTERS.load(Ordering::Relaxed);
    // SAFETY: NULL or the counters of this worker's configuration's zone,
    // mapped for the worker's whole life.
    if let Some(counters) = unsafe { p.as_ref() } {
        counters.values[c as usize].fetch_add(1, Ordering::Relaxed);
    }
}

/// In a worker that starts: its configuration's counters, if any.
pub fn start_worker(main: &MainConf) {
    let p = main.counters.map_or(ptr::null_mut(), |p| p.as_ptr());
    WORKER_COUNTERS.store(p, Ordering::Relaxed);
}

/// Declares the counters' zone, once per configuration (the first
/// `aws_auth_status`).
///
/// # Safety
/// `cf` must be the conf of a directive handler and `main` this module's
/// main configuration, which lives as long as the configuration.
pub unsafe fn add_zone(cf: *mut ngx_conf_t, main: *mut MainConf) -> Result<(), String> {
    // SAFETY: see the contract.
    unsafe {
        if (*main).counters_zone {
            return Ok(());
        }
        let name = format!("aws_auth_status_v{LAYOUT}");
        crate::add_shared_zone(cf, &name, ZONE_SIZE, Some(init_zone), main as *mut c_void)?;
        (*main).counters_zone = true;
        Ok(())
    }
}

/// The zone's init: a zone kept over a reload keeps its counts.
unsafe extern "C" fn init_zone(zone: *mut ngx_shm_zone_t, _old: *mut c_void) -> ngx_int_t {
    // SAFETY: nginx calls init with the zone mapped; zone->data is the
    // MainConf set in add_zone, alive while its configuration is set up;
    // the zone's state is only ever Counters. Zeroed, every AtomicU64 is 0.
    unsafe {
        let main = (*zone).data as *mut MainConf;
        let p = crate::zone_state::<Counters>(
            zone,
            |c| c.magic == MAGIC,
            |p| ptr::addr_of_mut!((*p).magic).write(MAGIC),
        );
        (*main).counters = ptr::NonNull::new(p);
        if p.is_null() {
            return Status::NGX_ERROR.into();
        }
    }
    Status::NGX_OK.into()
}

/// The location handler of `aws_auth_status`: the counters, and the
/// seconds until each role source's credentials expire, in the Prometheus
/// text format. GET and HEAD only.
///
/// # Safety
/// Called by nginx with a live request.
pub unsafe extern "C" fn status_handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: r is live for the duration of a content handler.
    unsafe {
        let method = (*r).method as u32;
        if method != NGX_HTTP_GET && method != NGX_HTTP_HEAD {
            return NGX_HTTP_NOT_ALLOWED as ngx_int_t;
        }
        let rc = ngx_http_discard_request_body(r);
        if rc != Status::NGX_OK.0 {
            return rc;
        }
        let p = WORKER_COUNTERS.load(Ordering::Relaxed);
        let Some(counters) = p.as_ref() else {
            return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
        };
        let mut values = [0u64; COUNTERS];
        for (v, a) in values.iter_mut().zip(&counters.values) {
            *v = a.load(Ordering::Relaxed);
        }
        let now = (*ngx::ffi::ngx_cached_time).sec;
        let mut expiries = Vec::new();
        let mut key_files = Vec::new();
        if let Some(main) = Module::main_conf(&*r) {
            for (file, end) in &main.key_files {
                key_files.push(Expiry {
                    source: file,
                    seconds: Some(end - now),
                });
            }
            for &src in &main.roles {
                // SAFETY: every source lives in the cycle pool with this
                // configuration.
                let src = &*src;
                expiries.push(Expiry {
                    source: &src.description,
                    seconds: src.expiration().map(|e| e - now),
                });
            }
        }
        let text = metrics::render(&values, &expiries, &key_files);
        let req = Request::from_ngx_http_request(r);
        req.set_status(ngx::http::HTTPStatus::OK);
        req.set_content_length_n(text.len());
        // as nginx keeps an upstream's: the whole value is sent, the type
        // alone is what gzip_types and the like match, and the charset is
        // known to the charset filter
        (*r).headers_out.content_type = ngx_string!("text/plain; version=0.0.4; charset=utf-8");
        (*r).headers_out.content_type_len = "text/plain".len();
        (*r).headers_out.charset = ngx_string!("utf-8");
        let rc = req.send_header();
        if rc == Status::NGX_ERROR || rc.0 > Status::NGX_OK.0 || req.header_only() {
            return rc.0;
        }
        let Some(mut buf) = req.pool().create_buffer_from_str(&text) else {
            return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
        };
        use ngx::core::Buffer;
        // the end of the response, unless it is a subrequest's part of one
        buf.set_last_buf(r == (*r).main);
        buf.set_last_in_chain(true);
        let mut out = ngx_chain_t {
            buf: buf.as_ngx_buf_mut(),
            next: ptr::null_mut(),
        };
        req.output_filter(&mut out).0
    }
}

static mut NEXT_HEADER_FILTER: ngx_http_output_header_filter_pt = None;

/// Puts [`header_filter`] at the top of the header filters, in a
/// configuration with counters.
///
/// # Safety
/// Call from postconfiguration only (nginx is single-threaded then).
pub unsafe fn install_header_filter() {
    // SAFETY: see the contract; both statics are only written here.
    unsafe {
        NEXT_HEADER_FILTER = ngx_http_top_header_filter;
        ngx_http_top_header_filter = Some(header_filter);
    }
}

/// Counts the upstream's answer to a signed request, once per request,
/// when its response header goes out: the upstream's status (from
/// whichever server answered last), or none when nginx answers without
/// one (502, 504).
unsafe extern "C" fn header_filter(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: nginx calls header filters with a live request; its context
    // and upstream are NULL or live; NEXT_HEADER_FILTER was set at
    // postconfiguration.
    unsafe {
        if let Some(ctx) = crate::existing_ctx(r) {
            let u = (*r).upstream;
            if !ctx.counted_upstream && !u.is_null() && u == ctx.signed_upstream {
                ctx.counted_upstream = true;
                let status = (*u).headers_in.status_n;
                count(Counter::for_upstream_status(
                    u32::try_from(status).unwrap_or(0),
                ));
            }
        }
        match NEXT_HEADER_FILTER {
            Some(next) => next(r),
            None => Status::NGX_ERROR.into(),
        }
    }
}
