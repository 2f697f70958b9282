//! The module's variables, and the hook that lets `aws_sign` find the
//! upstream request while the proxy module builds it.
//!
//! | variable | value |
//! |---|---|
//! | `$s3_auth_token` | the `Authorization` value sent upstream |
//! | `$aws_date` | the `x-amz-date` value (`YYYYMMDDTHHMMSSZ`) |
//! | `$aws_content_sha256` | the `x-amz-content-sha256` value |
//!
//! | `$aws_security_token` | the session token, if any |
//! | `$aws_key_days_left` | days of key coverage left after today |
//! | `$aws_s3_host` | `bucket.endpoint` (virtual-host addressing) or the endpoint (path) |
//! | `$aws_s3_uri` | `$uri` in S3's strict encoding, `/bucket` first for path addressing |
//! | `$aws_presigned_url` | a presigned GET URL for `$uri` on `$aws_s3_host` |
//!
//! The first three are empty in a location without a complete credential set.
//! Evaluated while the proxy module builds the upstream request (that is,
//! from `proxy_set_header`), any of them arms the signing filter, which
//! signs the request exactly as it is sent.

use std::ptr;

use ngx::core::Status;
use ngx::ffi::{
    ngx_conf_t, ngx_hash_key_t, ngx_http_add_variable, ngx_http_get_variable_pt,
    ngx_http_request_t, ngx_http_variable_t, ngx_int_t, ngx_palloc, ngx_str_t, ngx_uint_t,
    ngx_variable_value_t, NGX_HTTP_VAR_NOCACHEABLE,
};
use ngx::http::{HttpModuleMainConf, NgxHttpCoreModule};
use ngx::ngx_string;

use crate::{handler, loc_conf, request_ctx};
use aws_signer::metrics::Counter;

type GetFn =
    unsafe extern "C" fn(*mut ngx_http_request_t, *mut ngx_variable_value_t, usize) -> ngx_int_t;

struct VarDef {
    name: ngx_str_t,
    get: GetFn,
    data: usize,
}

const DATE: usize = 0;
const CONTENT_SHA256: usize = 1;
const SECURITY_TOKEN: usize = 2;
const KEY_DAYS_LEFT: usize = 3;
const CREDENTIALS_SOURCE: usize = 4;
const CREDENTIALS_EXPIRES_IN: usize = 5;
const S3_HOST: usize = 0;
const S3_URI: usize = 1;

const VARS: [VarDef; 10] = [
    VarDef {
        name: ngx_string!("s3_auth_token"),
        get: auth_token_variable,
        data: 0,
    },
    VarDef {
        name: ngx_string!("aws_date"),
        get: date_or_hash_variable,
        data: DATE,
    },
    VarDef {
        name: ngx_string!("aws_content_sha256"),
        get: date_or_hash_variable,
        data: CONTENT_SHA256,
    },
    VarDef {
        name: ngx_string!("aws_security_token"),
        get: key_info_variable,
        data: SECURITY_TOKEN,
    },
    VarDef {
        name: ngx_string!("aws_key_days_left"),
        get: key_info_variable,
        data: KEY_DAYS_LEFT,
    },
    VarDef {
        name: ngx_string!("aws_credentials_source"),
        get: key_info_variable,
        data: CREDENTIALS_SOURCE,
    },
    VarDef {
        name: ngx_string!("aws_credentials_expires_in"),
        get: key_info_variable,
        data: CREDENTIALS_EXPIRES_IN,
    },
    VarDef {
        name: ngx_string!("aws_s3_host"),
        get: s3_address_variable,
        data: S3_HOST,
    },
    VarDef {
        name: ngx_string!("aws_s3_uri"),
        get: s3_address_variable,
        data: S3_URI,
    },
    VarDef {
        name: ngx_string!("aws_presigned_url"),
        get: presigned_url_variable,
        data: 0,
    },
];

/// Registers the variables.
///
/// # Safety
/// `cf` must be the conf nginx passes to preconfiguration.
pub unsafe fn add_variables(cf: *mut ngx_conf_t) -> ngx_int_t {
    #[cfg(feature = "count-allocations")]
    let counting = [VarDef {
        name: ngx_string!("aws_heap_allocations"),
        get: heap_allocations_variable,
        data: 0,
    }];
    #[cfg(not(feature = "count-allocations"))]
    let counting: [VarDef; 0] = [];
    for def in VARS.iter().chain(counting.iter()) {
        let mut name = def.name;
        // SAFETY: cf is valid; nginx copies the name into its own storage.
        let v =
            unsafe { ngx_http_add_variable(cf, &mut name, NGX_HTTP_VAR_NOCACHEABLE as ngx_uint_t) };
        if v.is_null() {
            return Status::NGX_ERROR.into();
        }
        // SAFETY: v is the variable nginx just created for us.
        unsafe {
            (*v).get_handler = Some(def.get);
            (*v).data = def.data;
        }
    }
    Status::NGX_OK.into()
}

/// `$aws_heap_allocations` (tests only): the worker's Rust heap
/// allocations so far, written without allocating.
#[cfg(feature = "count-allocations")]
unsafe extern "C" fn heap_allocations_variable(
    r: *mut ngx_http_request_t,
    v: *mut ngx_variable_value_t,
    _data: usize,
) -> ngx_int_t {
    let mut n = crate::alloc_count::allocations();
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // SAFETY: nginx calls get handlers with a live request and a value slot.
    unsafe { set_pool_copy(r, v, &digits[at..]) }
}

/// Sets `v` to the bytes `data[..len]`, which must outlive the request.
///
/// # Safety
/// `v` must be the value slot nginx passed to a get handler.
unsafe fn set_value(v: *mut ngx_variable_value_t, data: *const u8, len: usize) {
    // SAFETY: see the contract.
    unsafe {
        set_flags(v, len as u32);
        (*v).data = data as *mut u8;
    }
}

/// `len` (28 bits) and `valid` set, `no_cacheable`, `not_found` and
/// `escape` cleared. The bindings' bitfield setters go bit by bit (28
/// rounds for `len`): on little-endian targets, where the C compiler
/// allocates the bitfields from the lowest bit of their 32-bit unit up, the
/// unit is written in one store.
///
/// # Safety
/// `v` must be the value slot nginx passed to a get handler.
#[cfg(target_endian = "little")]
unsafe fn set_flags(v: *mut ngx_variable_value_t, len: u32) {
    const _: () = assert!(std::mem::offset_of!(ngx_variable_value_t, _bitfield_1) == 0);
    // SAFETY: the bitfield unit is the slot's first 4 bytes (checked above),
    // aligned for u32 as the struct is; len:28, valid:1, no_cacheable:1,
    // not_found:1, escape:1 from bit 0 up, as nginx's C declares them.
    unsafe { (v as *mut u32).write((len & 0x0fff_ffff) | 1 << 28) }
}

/// The bindings' setters, where bitfields are laid out from the top bit.
///
/// # Safety
/// `v` must be the value slot nginx passed to a get handler.
#[cfg(not(target_endian = "little"))]
unsafe fn set_flags(v: *mut ngx_variable_value_t, len: u32) {
    // SAFETY: see the contract.
    unsafe {
        (*v).set_len(len);
        (*v).set_valid(1);
        (*v).set_no_cacheable(0);
        (*v).set_not_found(0);
        (*v).set_escape(0);
    }
}

unsafe fn set_empty(v: *mut ngx_variable_value_t) {
    // SAFETY: forwarded contract; an empty value needs no data.
    unsafe { set_value(v, b"".as_ptr(), 0) }
}

/// Copies `s` into the request pool and sets `v` to it.
///
/// # Safety
/// `r` a live request, `v` the slot of a get handler.
unsafe fn set_pool_copy(
    r: *mut ngx_http_request_t,
    v: *mut ngx_variable_value_t,
    s: &[u8],
) -> ngx_int_t {
    // SAFETY: r is live; the copy lives as long as the request.
    unsafe {
        let p = ngx_palloc((*r).pool, s.len().max(1)) as *mut u8;
        if p.is_null() {
            return Status::NGX_ERROR.into();
        }
        ptr::copy_nonoverlapping(s.as_ptr(), p, s.len());
        set_value(v, p, s.len());
    }
    Status::NGX_OK.into()
}

/// Common start of the three handlers: empty value without signing config;
/// otherwise the request context, with the signing filter armed when the
/// proxy module is building the upstream request.
unsafe fn prepare(
    r: *mut ngx_http_request_t,
    v: *mut ngx_variable_value_t,
) -> Option<&'static mut crate::RequestCtx> {
    // SAFETY: r is the live request of a get handler.
    let lc = unsafe { loc_conf(r) }?;
    if lc.credentials.is_none() {
        // SAFETY: v is the handler's slot.
        unsafe { set_empty(v) };
        return None;
    }
    // Armed first: should the context not be had, the armed filter
    // refuses the request instead of letting it go out unsigned.
    // SAFETY: r is live.
    let armed = unsafe { handler::arm_upstream_filter(r) };
    // SAFETY: r is live.
    let ctx = unsafe { request_ctx(r) }?;
    ctx.vars_used |= armed;
    Some(ctx)
}

unsafe extern "C" fn auth_token_variable(
    r: *mut ngx_http_request_t,
    v: *mut ngx_variable_value_t,
    _data: usize,
) -> ngx_int_t {
    // SAFETY: nginx calls get handlers with a live request and a value slot.
    unsafe {
        let Some(ctx) = prepare(r, v) else {
            return if (*v).valid() == 1 {
                Status::NGX_OK.into()
            } else {
                Status::NGX_ERROR.into()
            };
        };
        if ctx.authorization.len > 0 {
            set_value(v, ctx.authorization.data, ctx.authorization.len);
            return Status::NGX_OK.into();
        }
        if !(*r).upstream.is_null() {
            // The filter replaces this with the real value once the head is built.
            let pending = handler::PENDING_AUTHORIZATION.as_bytes();
            set_value(v, pending.as_ptr(), pending.len());
            return Status::NGX_OK.into();
        }
        // Outside the proxy: the signature the client's own request line would get.
        match handler::sign_client_request(r, ctx) {
            Some(auth) => {
                if !ctx.counted_signed {
                    ctx.counted_signed = true;
                    crate::metrics::count(Counter::SignedVariables);
                }
                set_pool_copy(r, v, auth.as_bytes())
            }
            None => {
                set_empty(v);
                Status::NGX_OK.into()
            }
        }
    }
}

/// `$aws_date` (`data` = [`DATE`]) and `$aws_content_sha256` (`data` = [`CONTENT_SHA256`]).
unsafe extern "C" fn date_or_hash_variable(
    r: *mut ngx_http_request_t,
    v: *mut ngx_variable_value_t,
    data: usize,
) -> ngx_int_t {
    // SAFETY: nginx calls get handlers with a live request and a value slot.
    unsafe {
        match prepare(r, v) {
            Some(ctx) => {
                let value: &[u8] = if data == DATE {
                    &ctx.amz_date
                } else {
                    handler::content_sha256_value(r, ctx)
                };
                set_value(v, value.as_ptr(), value.len());
                Status::NGX_OK.into()
            }
            None if (*v).valid() == 1 => Status::NGX_OK.into(),
            None => Status::NGX_ERROR.into(),
        }
    }
}

/// `$aws_security_token` (the session token of the credentials in use,
/// empty without one), `$aws_key_days_left` (whole UTC days of key
/// coverage after today, negative once the last key is past),
/// `$aws_credentials_source` (where the credentials come from) and
/// `$aws_credentials_expires_in` (seconds until the keys or the role
/// credentials run out). Empty without credentials; none arms the signing
/// filter.
unsafe extern "C" fn key_info_variable(
    r: *mut ngx_http_request_t,
    v: *mut ngx_variable_value_t,
    data: usize,
) -> ngx_int_t {
    // SAFETY: nginx calls get handlers with a live request and a value slot.
    unsafe {
        let Some(creds) = loc_conf(r).and_then(|lc| lc.credentials.as_ref()) else {
            set_empty(v);
            return Status::NGX_OK.into();
        };
        // SAFETY: ngx_cached_time always points to a valid time slot.
        let now = (*ngx::ffi::ngx_cached_time).sec;
        let text: Option<zeroize::Zeroizing<String>> = match data {
            SECURITY_TOKEN => creds
                .with(&crate::today_utc(), now, |set| {
                    zeroize::Zeroizing::new(set.token.unwrap_or("").to_owned())
                })
                .ok(),
            KEY_DAYS_LEFT => creds
                .days_left(&crate::today_utc())
                .map(|d| zeroize::Zeroizing::new(d.to_string())),
            CREDENTIALS_SOURCE => Some(zeroize::Zeroizing::new(creds.source_name().to_owned())),
            _ => creds
                .expires_at()
                .map(|at| zeroize::Zeroizing::new((at - now).max(0).to_string())),
        };
        match text {
            Some(t) => {
                let rc = set_pool_copy(r, v, t.as_bytes());
                if data == SECURITY_TOKEN
                    && !t.is_empty()
                    && rc == Status::NGX_OK.0
                    && !crate::wipe_with_pool((*r).pool, (*v).data, t.len())
                {
                    return Status::NGX_ERROR.into();
                }
                rc
            }
            None => {
                set_empty(v);
                Status::NGX_OK.into()
            }
        }
    }
}

/// `$aws_presigned_url`: see [`handler::presigned_url`]. Empty without
/// signing configuration or without a key for now (with an error line).
unsafe extern "C" fn presigned_url_variable(
    r: *mut ngx_http_request_t,
    v: *mut ngx_variable_value_t,
    _data: usize,
) -> ngx_int_t {
    // SAFETY: nginx calls get handlers with a live request and a value slot.
    unsafe {
        if loc_conf(r).and_then(|lc| lc.credentials.as_ref()).is_none() {
            set_empty(v);
            return Status::NGX_OK.into();
        }
        let Some(ctx) = request_ctx(r) else {
            return Status::NGX_ERROR.into();
        };
        match handler::presigned_url(r, ctx) {
            Some(url) => {
                if !ctx.counted_signed {
                    ctx.counted_signed = true;
                    crate::metrics::count(Counter::SignedPresigned);
                }
                let url = zeroize::Zeroizing::new(url);
                let rc = set_pool_copy(r, v, url.as_bytes());
                let token = loc_conf(r)
                    .and_then(|lc| lc.credentials.as_ref())
                    .is_some_and(|c| c.has_token());
                // the URL carries the session token: wiped with the request
                if rc == Status::NGX_OK.0
                    && token
                    && !crate::wipe_with_pool((*r).pool, (*v).data, url.len())
                {
                    return Status::NGX_ERROR.into();
                }
                rc
            }
            None => {
                set_empty(v);
                Status::NGX_OK.into()
            }
        }
    }
}

/// `$aws_s3_host` and `$aws_s3_uri`: where the bucket's objects are, by
/// `aws_s3_bucket`, `aws_endpoint` and `aws_s3_addressing`. `$aws_s3_uri`
/// is `$uri` (decoded, after any rewrite) in S3's strict encoding, led by
/// `/bucket` under path addressing, so that
/// `proxy_pass https://$aws_s3_host$aws_s3_uri$is_args$args;` sends every
/// key as S3 names it. Neither arms the signing filter.
unsafe extern "C" fn s3_address_variable(
    r: *mut ngx_http_request_t,
    v: *mut ngx_variable_value_t,
    data: usize,
) -> ngx_int_t {
    // SAFETY: nginx calls get handlers with a live request and a value slot;
    // the configuration outlives the request.
    unsafe {
        let Some(lc) = loc_conf(r) else {
            set_empty(v);
            return Status::NGX_OK.into();
        };
        if data == S3_HOST {
            set_value(v, lc.s3_host.as_ptr(), lc.s3_host.len());
            return Status::NGX_OK.into();
        }
        let prefix = lc.s3_path_prefix.as_bytes();
        let uri = (*r).uri.as_bytes();
        let extra = prefix.len();
        let len = extra + aws_signer::encoded_len(uri, true);
        let p = ngx_palloc((*r).pool, len.max(1)) as *mut u8;
        if p.is_null() {
            return Status::NGX_ERROR.into();
        }
        // SAFETY: p points to len writable bytes of the request pool.
        let out = std::slice::from_raw_parts_mut(p, len);
        out[..extra].copy_from_slice(prefix);
        match aws_signer::encode_to_slice(uri, true, &mut out[extra..]) {
            Some(n) => set_value(v, p, extra + n),
            None => return Status::NGX_ERROR.into(),
        }
        Status::NGX_OK.into()
    }
}

/// The proxy module's own variables behind its default `Host`,
/// `Content-Length` and `Transfer-Encoding` headers: one of them is
/// evaluated while every upstream request is built, which is when
/// `aws_sign` arms the signing filter.
const PROXY_HOOKS: [&[u8]; 3] = [
    b"proxy_host",
    b"proxy_internal_body_length",
    b"proxy_internal_chunked",
];

#[derive(Clone, Copy)]
struct Wrapped {
    get: ngx_http_get_variable_pt,
    data: usize,
}

/// Wraps the proxy module's variables listed in [`PROXY_HOOKS`].
///
/// # Safety
/// `cf` must be the conf nginx passes to postconfiguration, before the
/// variables are indexed (`variables_keys` still exists then).
pub unsafe fn hook_proxy_variables(cf: *mut ngx_conf_t) -> ngx_int_t {
    // SAFETY: cf is valid.
    let Some(cmcf) = NgxHttpCoreModule::main_conf_mut(unsafe { &*cf }) else {
        return Status::NGX_ERROR.into();
    };
    if cmcf.variables_keys.is_null() {
        return Status::NGX_OK.into();
    }
    // SAFETY: variables_keys->keys is an array of ngx_hash_key_t whose values
    // are the ngx_http_variable_t of every variable added so far.
    unsafe {
        let keys = &(*cmcf.variables_keys).keys;
        let elts = std::slice::from_raw_parts(keys.elts as *const ngx_hash_key_t, keys.nelts);
        for k in elts {
            let name = std::slice::from_raw_parts(k.key.data, k.key.len);
            if !PROXY_HOOKS.contains(&name) {
                continue;
            }
            let var = k.value as *mut ngx_http_variable_t;
            if var.is_null() || (*var).get_handler.is_none() {
                continue;
            }
            let w = ngx_palloc((*cf).pool, std::mem::size_of::<Wrapped>()) as *mut Wrapped;
            if w.is_null() {
                return Status::NGX_ERROR.into();
            }
            w.write(Wrapped {
                get: (*var).get_handler,
                data: (*var).data,
            });
            (*var).get_handler = Some(wrapped_proxy_variable);
            (*var).data = w as usize;
        }
    }
    Status::NGX_OK.into()
}

unsafe extern "C" fn wrapped_proxy_variable(
    r: *mut ngx_http_request_t,
    v: *mut ngx_variable_value_t,
    data: usize,
) -> ngx_int_t {
    // SAFETY: data is the Wrapped stored by hook_proxy_variables, in the
    // configuration pool, alive as long as this configuration.
    let w = unsafe { *(data as *const Wrapped) };
    let rc = match w.get {
        // SAFETY: the proxy module's own handler, called as nginx would.
        Some(get) => unsafe { get(r, v, w.data) },
        None => Status::NGX_ERROR.into(),
    };
    // SAFETY: r is the live request of a get handler.
    unsafe {
        if let Some(lc) = loc_conf(r) {
            if lc.sign_on() && lc.credentials.is_some() {
                handler::arm_upstream_filter(r);
            }
        }
    }
    rc
}
