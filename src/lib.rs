//! `ngx_http_aws_auth_module`: signs the requests nginx proxies to S3 and
//! other AWS services with AWS Signature Version 4.
//!
//! This file is the nginx glue: the module statics, the per-request context
//! and the configuration-time hooks. Directives live in [`conf`], variables in
//! [`variables`], the phase handler, the upstream signing filter and the
//! peer initialization check in [`handler`]. The decision and the signing
//! are the pure `aws_signer` crate.

#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

use std::ffi::{c_char, c_void};
use std::ptr;

use ngx::core::{Pool, Status, NGX_CONF_ERROR};
use ngx::ffi::{
    ngx_array_push, ngx_conf_t, ngx_http_handler_pt, ngx_http_module_t,
    ngx_http_phases_NGX_HTTP_PRECONTENT_PHASE, ngx_http_request_t, ngx_http_upstream_srv_conf_t,
    ngx_int_t, ngx_module_t, ngx_pcalloc, ngx_str_t, NGX_HTTP_LOC_CONF, NGX_HTTP_MODULE,
    NGX_HTTP_SRV_CONF, NGX_LOG_EMERG, NGX_LOG_WARN,
};
use ngx::http::{
    HttpModule, HttpModuleLocationConf, HttpModuleMainConf, NgxHttpCoreModule,
    NgxHttpUpstreamModule,
};
use ngx::ngx_conf_log_error;

#[cfg(feature = "count-allocations")]
pub mod alloc_count;
pub mod conf;
pub mod credentials;
pub mod fetch;
pub mod handler;
pub mod listing;
pub mod metrics;
pub mod redact;
pub mod role;
pub mod variables;

use conf::LocConf;

pub struct Module;

impl HttpModule for Module {
    fn module() -> &'static ngx_module_t {
        // SAFETY: the module static lives for the whole program; nginx only
        // writes its index fields while loading, before any reader runs.
        unsafe { &*ptr::addr_of!(ngx_http_aws_auth_module) }
    }

    unsafe extern "C" fn preconfiguration(cf: *mut ngx_conf_t) -> ngx_int_t {
        // SAFETY: nginx passes a valid conf during http block parsing.
        unsafe { variables::add_variables(cf) }
    }

    unsafe extern "C" fn postconfiguration(cf: *mut ngx_conf_t) -> ngx_int_t {
        // SAFETY: nginx passes a valid conf after the http block is parsed.
        let cf_ref = unsafe { &mut *cf };
        let Some(cmcf) = NgxHttpCoreModule::main_conf_mut(cf_ref) else {
            return Status::NGX_ERROR.into();
        };
        let phase = ngx_http_phases_NGX_HTTP_PRECONTENT_PHASE as usize;
        // SAFETY: the phase handler arrays are initialised before postconfiguration.
        let h =
            unsafe { ngx_array_push(&mut cmcf.phases[phase].handlers) } as *mut ngx_http_handler_pt;
        if h.is_null() {
            return Status::NGX_ERROR.into();
        }
        // SAFETY: h points to a fresh slot of the handler array.
        unsafe { *h = Some(handler::precontent_handler) };
        // SAFETY: postconfiguration is where body filters are chained in.
        unsafe { handler::install_request_body_filter() };
        if Module::main_conf(cf_ref).is_some_and(|m| m.counters_zone) {
            // SAFETY: postconfiguration is where header filters are chained in.
            unsafe { metrics::install_header_filter() };
        }
        // SAFETY: postconfiguration is where filters are chained in.
        unsafe { redact::install_filters() };
        if Module::main_conf(cf_ref).is_some_and(|m| m.autoindex) {
            // SAFETY: postconfiguration is where filters are chained in.
            unsafe { listing::install_filters() };
        }
        // SAFETY: cf is the postconfiguration conf; every upstream block's
        // peer.init is final once the upstream module's main conf is initialized.
        if unsafe { wrap_peer_inits(cf) } != Status::NGX_OK.0 {
            return Status::NGX_ERROR.into();
        }
        if let Err(why) = sts_names_resolvable(cf_ref) {
            ngx_conf_log_error!(NGX_LOG_EMERG, cf, "{why}");
            return Status::NGX_ERROR.into();
        }
        // SAFETY: called during postconfiguration, before variables are indexed.
        unsafe { variables::hook_proxy_variables(cf) }
    }
}

/// A header filter `header_filter` and a body filter `body_filter` of the
/// module file it is used in: their links to the next filters, the
/// `install_filters` that puts them at the top of nginx's chains, and
/// `next_header` / `next_body` to call the next ones.
#[macro_export]
macro_rules! output_filters {
    ($what:literal) => {
        static mut NEXT_HEADER_FILTER: ngx::ffi::ngx_http_output_header_filter_pt = None;
        static mut NEXT_BODY_FILTER: ngx::ffi::ngx_http_output_body_filter_pt = None;

        #[doc = concat!("Puts ", $what, " at the top.")]
        ///
        /// # Safety
        /// Call from postconfiguration only (nginx is single-threaded then).
        pub unsafe fn install_filters() {
            // SAFETY: see the contract; the statics are only written here.
            unsafe {
                NEXT_HEADER_FILTER = ngx::ffi::ngx_http_top_header_filter;
                ngx::ffi::ngx_http_top_header_filter = Some(header_filter);
                NEXT_BODY_FILTER = ngx::ffi::ngx_http_top_body_filter;
                ngx::ffi::ngx_http_top_body_filter = Some(body_filter);
            }
        }

        /// # Safety
        /// `r` must be a live request; in a header filter.
        #[allow(dead_code)]
        unsafe fn next_header(r: *mut ngx::ffi::ngx_http_request_t) -> ngx::ffi::ngx_int_t {
            // SAFETY: set at postconfiguration, before any request.
            match unsafe { NEXT_HEADER_FILTER } {
                // SAFETY: the next filter, called as nginx would.
                Some(next) => unsafe { next(r) },
                None => ngx::core::Status::NGX_ERROR.into(),
            }
        }

        /// # Safety
        /// `r` must be a live request; in a body filter.
        #[allow(dead_code)]
        unsafe fn next_body(
            r: *mut ngx::ffi::ngx_http_request_t,
            chain: *mut ngx::ffi::ngx_chain_t,
        ) -> ngx::ffi::ngx_int_t {
            // SAFETY: set at postconfiguration, before any request.
            match unsafe { NEXT_BODY_FILTER } {
                // SAFETY: the next filter, called as nginx would.
                Some(next) => unsafe { next(r, chain) },
                None => ngx::core::Status::NGX_ERROR.into(),
            }
        }
    };
}

/// Adds a shared memory zone named `name` of `size` bytes whose `init`
/// gets `data` (in `zone->data`), tagged with this module.
///
/// # Safety
/// `cf` must be the conf of a directive handler; `data` must stay valid as
/// long as the configuration.
pub unsafe fn add_shared_zone(
    cf: *mut ngx_conf_t,
    name: &str,
    size: usize,
    init: ngx::ffi::ngx_shm_zone_init_pt,
    data: *mut c_void,
) -> Result<(), String> {
    // SAFETY: see the contract; the name is copied into the conf pool,
    // where nginx keeps it with the zone.
    unsafe {
        let mut zname = ngx_str_t {
            len: name.len(),
            data: ngx::ffi::ngx_pnalloc((*cf).pool, name.len()) as *mut u8,
        };
        if zname.data.is_null() {
            return Err("no memory".into());
        }
        ptr::copy_nonoverlapping(name.as_ptr(), zname.data, name.len());
        let tag = ptr::addr_of_mut!(ngx_http_aws_auth_module) as *mut c_void;
        // a slab zone needs eight pages, whatever the page size
        let size = size.max(8 * ngx::ffi::ngx_pagesize);
        let zone = ngx::ffi::ngx_shared_memory_add(cf, &mut zname, size, tag);
        if zone.is_null() {
            return Err(format!("cannot add the shared memory zone \"{name}\""));
        }
        (*zone).init = init;
        (*zone).data = data;
        Ok(())
    }
}

/// The state of type `T` a shared zone keeps at the start of its slab
/// pool's data: the one already there when `kept` recognizes it (a zone
/// kept over a reload), else a new one, zeroed, then set up by `fresh`
/// (which writes the fields `kept` looks at last). NULL when the pool is
/// out of memory.
///
/// # Safety
/// `zone` must be the zone nginx passes to its init, mapped; only this
/// module sets its pool's data, always to a `T` of this call's kind.
pub unsafe fn zone_state<T>(
    zone: *mut ngx::ffi::ngx_shm_zone_t,
    kept: impl Fn(&T) -> bool,
    fresh: impl FnOnce(*mut T),
) -> *mut T {
    // SAFETY: see the contract; a zone's memory starts with its slab pool,
    // whose data is NULL in a new zone.
    unsafe {
        let pool = (*zone).shm.addr as *mut ngx::ffi::ngx_slab_pool_t;
        let existing = (*pool).data as *mut T;
        if !existing.is_null() && kept(&*existing) {
            return existing;
        }
        let p = ngx::ffi::ngx_slab_alloc(pool, std::mem::size_of::<T>()) as *mut T;
        if p.is_null() {
            return p;
        }
        ptr::write_bytes(p as *mut u8, 0, std::mem::size_of::<T>());
        fresh(p);
        (*pool).data = p as *mut c_void;
        p
    }
}

/// Every STS source that must resolve its endpoint's name has a resolver
/// with servers (`resolver`), or says where to connect (`sts_address=`):
/// otherwise it could only fail, at run time.
fn sts_names_resolvable(cf: &ngx_conf_t) -> Result<(), String> {
    let Some(main) = Module::main_conf(cf) else {
        return Ok(());
    };
    for &r in &main.roles {
        // SAFETY: every source lives in the cycle pool with this configuration.
        let r = unsafe { &*r };
        let Some(sts) = r.sts() else { continue };
        let host = sts.url.host.trim_start_matches('[').trim_end_matches(']');
        if sts.address.is_some() || host.parse::<std::net::IpAddr>().is_ok() {
            continue;
        }
        // SAFETY: the core location configuration of the block that made
        // the source, merged by now; its resolver, when set, is live.
        let servers = unsafe { sts.clcf.as_ref() }
            .and_then(|c| unsafe { c.resolver.as_ref() })
            .map_or(0, |res| res.connections.nelts);
        if servers == 0 {
            return Err(format!(
                "no resolver defined to resolve {host} for the credentials from {}: add a \"resolver\" directive to the block (or sts_address=)",
                r.description
            ));
        }
    }
    Ok(())
}

// SAFETY: LocConf is the type create_loc_conf allocates for this module.
unsafe impl HttpModuleLocationConf for Module {
    type LocationConf = LocConf;
}

/// The module's `http`-level state: the peer initialization functions it
/// wrapped, per upstream block of this configuration.
#[derive(Default)]
pub struct MainConf {
    pub peer_inits: Vec<handler::PeerInit>,
    /// The `aws_credentials` sources of this configuration, in the cycle
    /// pool; each has its shared zone.
    pub roles: Vec<*mut role::RoleSource>,
    /// Per worker: the refresh loops, cancelled when the worker exits.
    pub tasks: Vec<ngx::async_::Task<()>>,
    /// `aws_auth_status` added the counters' zone.
    pub counters_zone: bool,
    /// The counters in that zone, once it is initialized.
    pub counters: Option<ptr::NonNull<metrics::Counters>>,
    /// Some block has `aws_s3_autoindex on`: the listing filters are in.
    pub autoindex: bool,
    /// Every `aws_signing_key_file` of this configuration (the path as
    /// shown in messages) and when its keys end, Unix seconds.
    pub key_files: Vec<(String, i64)>,
}

// SAFETY: MainConf is the type create_main_conf allocates for this module.
unsafe impl HttpModuleMainConf for Module {
    type MainConf = MainConf;
}

/// Puts [`peer_init`] in front of every upstream block's peer
/// initialization: it runs after the proxy module built the request head
/// and before a connection is made, for every proxied request.
///
/// # Safety
/// `cf` must be the conf nginx passes to postconfiguration.
unsafe fn wrap_peer_inits(cf: *mut ngx_conf_t) -> ngx_int_t {
    // SAFETY: cf is valid during postconfiguration.
    let cf_ref = unsafe { &mut *cf };
    let (Some(umcf), Some(main)) = (
        NgxHttpUpstreamModule::main_conf_mut(cf_ref),
        Module::main_conf_mut(cf_ref),
    ) else {
        return Status::NGX_ERROR.into();
    };
    let n = umcf.upstreams.nelts;
    if n == 0 {
        return Status::NGX_OK.into();
    }
    // SAFETY: umcf->upstreams is an array of n upstream block pointers.
    let upstreams = unsafe {
        std::slice::from_raw_parts(
            umcf.upstreams.elts as *const *mut ngx_http_upstream_srv_conf_t,
            n,
        )
    };
    for &us in upstreams {
        if us.is_null() {
            continue;
        }
        // SAFETY: us is an upstream block of this configuration.
        let init = unsafe { &mut (*us).peer.init };
        if init.is_none() || init.is_some_and(|f| f as *const () == peer_init as *const ()) {
            continue;
        }
        main.peer_inits.push(handler::PeerInit {
            upstream: us,
            init: *init,
        });
        *init = Some(peer_init);
    }
    Status::NGX_OK.into()
}

/// The wrapped peer initialization: the upstream block's own, then
/// [`handler::check_before_connect`].
unsafe extern "C" fn peer_init(
    r: *mut ngx_http_request_t,
    us: *mut ngx_http_upstream_srv_conf_t,
) -> ngx_int_t {
    // SAFETY: nginx calls peer.init with a live request and the upstream
    // block it belongs to, of the configuration the request runs under.
    let main = unsafe { Module::main_conf(&*ngx::http::Request::from_ngx_http_request(r)) };
    let Some(orig) = main
        .and_then(|m| m.peer_inits.iter().find(|p| p.upstream == us))
        .and_then(|p| p.init)
    else {
        return Status::NGX_ERROR.into();
    };
    // SAFETY: the function this one replaced, called as nginx would.
    let rc = unsafe { orig(r, us) };
    if rc != Status::NGX_OK.0 {
        return rc;
    }
    // SAFETY: r is live and its upstream's peers are initialized.
    match unsafe { handler::check_before_connect(r) } {
        handler::PeerCheck::Refuse => Status::NGX_ERROR.into(),
        handler::PeerCheck::Pass | handler::PeerCheck::Armed => rc,
    }
}

unsafe extern "C" fn create_loc_conf(cf: *mut ngx_conf_t) -> *mut c_void {
    // SAFETY: cf->pool is the configuration pool; the pool drops the value
    // (zeroing key material) when the cycle's pool is destroyed.
    let pool = unsafe { Pool::from_ngx_pool((*cf).pool) };
    // SAFETY: cf is valid. While a block is created, cmd_type is the context
    // of the directive that opens it: `location` appears in server or
    // location context, `server` in http context, `http` in the main one.
    let opened_in = unsafe { (*cf).cmd_type } as u32;
    let mut conf = LocConf::default();
    conf.is_location = opened_in & (NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF) != 0;
    pool.allocate(conf) as *mut c_void
}

unsafe extern "C" fn merge_loc_conf(
    cf: *mut ngx_conf_t,
    prev: *mut c_void,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: both were allocated by create_loc_conf and are distinct.
    let (prev, conf) = unsafe { (&*(prev as *const LocConf), &mut *(conf as *mut LocConf)) };
    match conf.merge_from(prev).and_then(|w| {
        // SAFETY: cf is a merge's.
        unsafe { assume_role(cf, conf) }.map(|()| w)
    }) {
        Ok(warnings) => {
            for w in warnings {
                ngx_conf_log_error!(NGX_LOG_WARN, cf, "{w}");
            }
            ptr::null_mut()
        }
        Err(why) => {
            ngx_conf_log_error!(NGX_LOG_EMERG, cf, "{why}");
            NGX_CONF_ERROR
        }
    }
}

/// `aws_assume_role` in a merged block with credentials: they now sign
/// its STS calls, and the assumed role's credentials sign its requests.
///
/// # Safety
/// `cf` must be the conf of a merge.
unsafe fn assume_role(cf: *mut ngx_conf_t, conf: &mut LocConf) -> Result<(), String> {
    let (Some(aws_signer::sources::Assume::Role(spec)), Some(creds)) =
        (&conf.assume, &conf.credentials)
    else {
        return Ok(());
    };
    let (base, base_description, base_identity) = creds.assume_base()?;
    if let (role::Base::Role(_), Some(d)) = (&base, spec.role.duration) {
        if d > 3600 {
            return Err(format!(
                "\"aws_assume_role\": duration={d}: a role assumed with another role's credentials (role chaining) gets 3600 s at most"
            ));
        }
    }
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let sts = spec
        .sts(conf.region.as_deref(), &env)
        .map_err(|e| format!("\"aws_assume_role\": {e}"))?;
    let description = spec.describe(&sts, &base_description);
    let identity = spec.describe(&sts, &base_identity);
    let spec = spec.clone();
    // SAFETY: cf is a merge's.
    let source = unsafe {
        conf::role_source(cf, &identity, |cf| {
            Ok(role::RoleSource::new(
                "assume-role",
                role::Kind::AssumeRole {
                    role: spec.role,
                    external_id: spec.external_id,
                    base,
                    // SAFETY: cf is a merge's.
                    sts: conf::sts_context(cf, sts)?,
                },
                description.clone(),
                identity.clone(),
            ))
        })
    }
    .map_err(|e| format!("\"aws_assume_role\": {e}"))?;
    conf.credentials = Some(credentials::Credentials::new(
        credentials::Source::Role {
            role: source,
            region: conf.region.clone().unwrap_or_default(),
            service: conf.service.clone().unwrap_or_else(|| "s3".into()),
        },
        String::new(),
        None,
    ));
    Ok(())
}

static NGX_HTTP_AWS_AUTH_MODULE_CTX: ngx_http_module_t = ngx_http_module_t {
    preconfiguration: Some(Module::preconfiguration),
    postconfiguration: Some(Module::postconfiguration),
    create_main_conf: Some(Module::create_main_conf),
    init_main_conf: None,
    create_srv_conf: None,
    merge_srv_conf: None,
    create_loc_conf: Some(create_loc_conf),
    merge_loc_conf: Some(merge_loc_conf),
};

#[cfg(feature = "export-modules")]
ngx::ngx_modules!(ngx_http_aws_auth_module);

#[used]
#[allow(non_upper_case_globals)]
#[cfg_attr(not(feature = "export-modules"), no_mangle)]
pub static mut ngx_http_aws_auth_module: ngx_module_t = ngx_module_t {
    ctx: ptr::addr_of!(NGX_HTTP_AWS_AUTH_MODULE_CTX) as _,
    // COMMANDS is a static array terminated by an empty command.
    commands: ptr::addr_of_mut!(conf::COMMANDS) as *mut _,
    type_: NGX_HTTP_MODULE as _,
    init_process: Some(init_process),
    exit_process: Some(exit_process),
    ..ngx_module_t::default()
};

/// In every worker (and a single-process nginx): starts each credentials
/// source's refresh loop on the event loop.
unsafe extern "C" fn init_process(cycle: *mut ngx::ffi::ngx_cycle_t) -> ngx_int_t {
    // SAFETY: nginx's process type, set before init_process runs.
    let process = unsafe { ngx::ffi::ngx_process } as u32;
    if process != ngx::ffi::NGX_PROCESS_WORKER && process != ngx::ffi::NGX_PROCESS_SINGLE {
        return Status::NGX_OK.0;
    }
    // SAFETY: cycle is the live cycle of this process.
    let Some(main) = Module::main_conf_mut(unsafe { &*cycle }) else {
        return Status::NGX_OK.0;
    };
    metrics::start_worker(main);
    for &r in &main.roles {
        // SAFETY: every source lives in the cycle pool as long as this
        // configuration, which outlives the worker's tasks (held in the
        // main configuration, dropped with it).
        let src: &'static role::RoleSource = unsafe { &*r };
        main.tasks.push(ngx::async_::spawn(role::refresh_loop(src)));
    }
    Status::NGX_OK.0
}

/// When a worker exits: its refresh tasks are dropped now, while nginx's
/// resolver, connections and zones still exist (the configuration pool's
/// cleanups, which would drop them later, free the resolver first).
unsafe extern "C" fn exit_process(cycle: *mut ngx::ffi::ngx_cycle_t) {
    // SAFETY: cycle is the live cycle of this process.
    if let Some(main) = Module::main_conf_mut(unsafe { &*cycle }) {
        main.tasks.clear();
    }
}

/// Per-request state, in the request pool. Every signing output of one
/// request comes from the one clock reading taken when it is created (or,
/// for a request with a body to hash, when the body is complete).
pub struct RequestCtx {
    /// Unix time of the clock reading.
    pub now: i64,
    /// `x-amz-date` value.
    pub amz_date: [u8; 16],
    /// The `Authorization` value sent upstream, once signed (pool memory).
    pub authorization: ngx_str_t,
    /// The upstream whose request head has been signed (retries resend
    /// the same, already signed, buffer); NULL before any.
    pub signed_upstream: *mut ngx::ffi::ngx_http_upstream_t,
    /// The body hash being computed while the body is read.
    pub hasher: Option<aws_signer::PayloadHasher>,
    /// Hex SHA-256 of the whole body, once `body_done`.
    pub body_hash: [u8; 64],
    /// Length of the hashed body.
    pub body_len: u64,
    /// The whole body went through the hash.
    pub body_done: bool,
    /// The body could not be hashed (it reached the filter in a file).
    pub body_unhashable: bool,
    /// Where the precontent handler's own body read stands: 0 before it,
    /// NGX_DONE while reading, then what the handler returns.
    pub read_status: ngx_int_t,
    /// A signing variable was evaluated while the upstream request was
    /// built (the variables mode): the request must be signed.
    pub vars_used: bool,
    /// Unix milliseconds until which the request may wait for the first
    /// role credentials (0: not waiting yet).
    pub wait_until_ms: i64,
    /// The `x-amz-content-sha256` value sent (valid when `sent_sha_len` > 0).
    pub sent_sha: [u8; 64],
    pub sent_sha_len: u8,
    /// A presigned URL or a `$s3_auth_token` outside the proxy was counted.
    pub counted_signed: bool,
    /// The upstream's answer to the signed request was counted.
    pub counted_upstream: bool,
    /// A refusal of this request was counted.
    pub counted_refused: std::cell::Cell<bool>,
    /// A page of an `aws_s3_autoindex` listing (pool memory), or NULL.
    pub listing: *mut listing::Listing,
    /// The length of the session token the head was signed with (0
    /// without one): it is in the signed head just before the
    /// `Authorization` line (see [`RequestCtx::token`]).
    pub token_len: u32,
    /// Blanking the token out of an error answer's body (see `redact`):
    /// request pool memory, or NULL.
    pub redacting: *mut aws_signer::redact::Redactor,
}

/// What follows the session token in a signed head, up to the
/// `Authorization` value (see `HeadSignature::emit`).
const TOKEN_AFTER: usize = "\r\nAuthorization: ".len();

impl RequestCtx {
    /// The session token the head was signed with, in the signed head
    /// (request pool memory, wiped with the pool): it ends its line just
    /// before `\r\nAuthorization: ` (see `HeadSignature::emit`). Empty
    /// without one.
    ///
    /// # Safety
    /// `token_len` and `authorization` are as the signing set them: the
    /// token's length, and the `Authorization` value in that signed head.
    pub unsafe fn token(&self) -> &[u8] {
        let len = self.token_len as usize;
        if len == 0 || self.authorization.data.is_null() {
            return &[];
        }
        // SAFETY: by the contract, the signed head (pool memory) holds the
        // token line right before the Authorization line whose value
        // `authorization` points at.
        unsafe { std::slice::from_raw_parts(self.authorization.data.sub(TOKEN_AFTER + len), len) }
    }

    /// Records a token of `len` bytes in the signed head `head`, whose
    /// `Authorization` value starts at `auth_start`, for [`Self::token`],
    /// once the head is seen to hold its line there; none (0) otherwise.
    pub fn note_token(&mut self, head: &[u8], auth_start: usize, len: usize) {
        const LINE: &[u8] = b"x-amz-security-token: ";
        self.token_len = auth_start
            .checked_sub(TOKEN_AFTER + len + LINE.len())
            .filter(|&at| len > 0 && head.get(at..at + LINE.len()) == Some(LINE))
            .and_then(|_| u32::try_from(len).ok())
            .unwrap_or(0);
    }

    pub fn amz_date(&self) -> &str {
        // The bytes come from aws_signer::amz_date, which writes ASCII only.
        std::str::from_utf8(&self.amz_date).unwrap_or("")
    }

    /// Reads the clock again (after a long body upload, before anything
    /// was signed with the old reading).
    pub fn set_clock(&mut self, now: i64) {
        let mut date = [0u8; 16];
        if aws_signer::amz_date_into(now, &mut date) {
            self.amz_date = date;
            self.now = now;
        }
    }
}

/// Returns the request's context, creating it (and reading the clock) on first use.
///
/// # Safety
/// `r` must be a live request.
pub unsafe fn request_ctx(r: *mut ngx_http_request_t) -> Option<&'static mut RequestCtx> {
    // SAFETY: r is live.
    if let Some(ctx) = unsafe { existing_ctx(r) } {
        return Some(ctx);
    }
    // SAFETY: ngx_cached_time always points to a valid time slot.
    let now = unsafe { (*ngx::ffi::ngx_cached_time).sec };
    let amz_date = amz_date_of(now)?;
    // SAFETY: r is live; the context is allocated from its pool, written
    // whole, then put in this module's slot of r->ctx.
    unsafe {
        let p = ngx_pcalloc((*r).pool, std::mem::size_of::<RequestCtx>()) as *mut RequestCtx;
        if p.is_null() {
            return None;
        }
        p.write(RequestCtx {
            now,
            amz_date,
            authorization: ngx_str_t {
                len: 0,
                data: ptr::null_mut(),
            },
            signed_upstream: ptr::null_mut(),
            hasher: None,
            body_hash: [0; 64],
            body_len: 0,
            body_done: false,
            body_unhashable: false,
            read_status: 0,
            vars_used: false,
            wait_until_ms: 0,
            sent_sha: [0; 64],
            sent_sha_len: 0,
            counted_signed: false,
            counted_upstream: false,
            counted_refused: std::cell::Cell::new(false),
            listing: ptr::null_mut(),
            token_len: 0,
            redacting: ptr::null_mut(),
        });
        ngx::http::Request::from_ngx_http_request(r)
            .set_module_ctx(p as *mut c_void, Module::module());
        Some(&mut *p)
    }
}

/// The `x-amz-date` value of a second, formatted once per second per
/// worker.
fn amz_date_of(now: i64) -> Option<[u8; 16]> {
    use std::cell::Cell;
    thread_local! {
        static LAST: Cell<(i64, [u8; 16])> = const { Cell::new((i64::MIN, [0; 16])) };
    }
    LAST.with(|last| {
        let (sec, date) = last.get();
        if sec == now {
            return Some(date);
        }
        let mut date = [0u8; 16];
        aws_signer::amz_date_into(now, &mut date).then(|| {
            last.set((now, date));
            date
        })
    })
}

/// The request's context if it has one.
///
/// # Safety
/// `r` must be a live request.
pub unsafe fn existing_ctx(r: *mut ngx_http_request_t) -> Option<&'static mut RequestCtx> {
    // SAFETY: r is live; r->ctx has one slot per HTTP module, and this
    // module's holds NULL or the RequestCtx written by request_ctx, in the
    // request pool.
    unsafe {
        let p = *(*r).ctx.add(Module::module().ctx_index) as *mut RequestCtx;
        p.as_mut()
    }
}

/// A region of pool memory to wipe when the pool goes.
struct Wipe {
    data: *mut u8,
    len: usize,
}

unsafe extern "C" fn wipe(data: *mut c_void) {
    // SAFETY: data is the Wipe registered by wipe_with_pool; its region is
    // pool memory of the same pool, still allocated while cleanups run.
    unsafe {
        let w = &*(data as *const Wipe);
        zeroize::Zeroize::zeroize(std::slice::from_raw_parts_mut(w.data, w.len));
    }
}

/// Has `len` bytes at `data`, pool memory holding a credential (a signed
/// head with its session token, a presigned URL), wiped when `pool` is
/// destroyed. False when out of memory.
///
/// # Safety
/// `pool` must be a live pool and `data..data+len` memory of it.
pub unsafe fn wipe_with_pool(pool: *mut ngx::ffi::ngx_pool_t, data: *mut u8, len: usize) -> bool {
    // SAFETY: see the contract; the cleanup's data is pool memory sized for
    // a Wipe and written whole before the handler is set.
    unsafe {
        let cln = ngx::ffi::ngx_pool_cleanup_add(pool, std::mem::size_of::<Wipe>());
        if cln.is_null() {
            return false;
        }
        ((*cln).data as *mut Wipe).write(Wipe { data, len });
        (*cln).handler = Some(wipe);
    }
    true
}

/// Today's UTC date, `YYYYMMDD`, from nginx's clock.
pub fn today_utc() -> String {
    // SAFETY: ngx_cached_time always points to a valid time slot.
    let now = unsafe { (*ngx::ffi::ngx_cached_time).sec };
    aws_signer::amz_date(now)
        .map(|d| d[..8].to_owned())
        .unwrap_or_default()
}

/// The location configuration of a request.
///
/// # Safety
/// `r` must be a live request.
pub unsafe fn loc_conf(r: *mut ngx_http_request_t) -> Option<&'static LocConf> {
    // SAFETY: r is live and its loc_conf array holds this module's LocConf.
    unsafe { Module::location_conf(&*r) }
}
