//! Directives and their typed, validated configuration.
//!
//! Every directive is allowed in `http`, `server` and `location`; a value set
//! in an inner block replaces the inherited one. Every value is checked when
//! it is read, and the combination is checked when blocks are merged, so
//! `nginx -t` reports any mistake as an `[emerg]` line naming the directive.

use std::ffi::{c_char, c_void};
use std::ptr;

use aws_signer::config::{
    parse_access_key, parse_bucket, parse_endpoint, parse_key_file, parse_scope, parse_signing_key,
    ScopedKey,
};
use aws_signer::policy::{Addressing, MethodSet, Policy, QueryPolicy, S3Policy};
use aws_signer::{PathRules, Scope, SigningKey};
use ngx::core::{NGX_CONF_ERROR, NGX_CONF_OK};
use ngx::ffi::{
    ngx_command_t, ngx_conf_t, ngx_str_t, ngx_uint_t, NGX_CONF_1MORE, NGX_CONF_NOARGS,
    NGX_CONF_TAKE1, NGX_HTTP_LOC_CONF, NGX_HTTP_LOC_CONF_OFFSET, NGX_HTTP_MAIN_CONF,
    NGX_HTTP_SRV_CONF, NGX_LOG_EMERG, NGX_LOG_WARN,
};
use ngx::http::{HttpModuleLocationConf, HttpModuleMainConf};
use ngx::{ngx_conf_log_error, ngx_string};
use zeroize::Zeroizing;

use crate::credentials::{Credentials, Source};
use crate::role::{Assume, Kind, RoleSource, Sts, StsSpec};
use aws_signer::sources::{Parsed, SourceSpec};

/// Canonical URI rules for a key's service.
pub fn rules_of(scope: &Scope) -> PathRules {
    PathRules::for_service(scope.service())
}

/// Which client query parameters are forwarded (`aws_forward_query_params`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ForwardQuery {
    All,
    None,
    /// These names, in their strict encoding.
    Names(Vec<Vec<u8>>),
}

/// What goes into the canonical request for a request body (`aws_payload`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Payload {
    /// The SHA-256 of the whole body: nginx reads it before signing.
    Signed,
    /// `UNSIGNED-PAYLOAD`: the body streams (S3 accepts it).
    Unsigned,
}

/// Default `aws_presign_expires`: one hour.
pub const DEFAULT_PRESIGN_EXPIRES: u64 = 3600;

/// Per-location configuration as written; `None` means "not set here".
#[derive(Default)]
pub struct LocConf {
    pub access_key: Option<String>,
    pub scope: Option<Scope>,
    pub key: Option<SigningKey>,
    pub key_file: Option<Vec<ScopedKey>>,
    pub secret: Option<Zeroizing<Vec<u8>>>,
    /// `aws_credentials`: the role source (in the main configuration).
    pub role: Option<&'static RoleSource>,
    /// `aws_assume_role`: a role assumed with the block's credentials.
    pub assume: Option<Assume>,
    pub region: Option<String>,
    pub service: Option<String>,
    pub session_token: Option<Zeroizing<String>>,
    /// `aws_s3_bucket`: the buckets a signed request may address.
    pub bucket: Option<Vec<String>>,
    pub endpoint: Option<String>,
    /// Without `aws_endpoint`: the endpoint for the keys' region and the
    /// other names of it, computed at merge (see
    /// [`aws_signer::config::default_s3_endpoints`]).
    endpoint_default: String,
    endpoint_also: Vec<String>,
    pub sign: Option<bool>,
    /// `aws_s3_addressing`; `None` accepts either style.
    pub addressing: Option<Addressing>,
    /// `aws_forward_amz_headers`: lowercase client `x-amz-*` names kept
    /// and signed (empty: `none`).
    pub forward: Option<Vec<String>>,
    /// `aws_sign_methods`.
    pub methods: Option<MethodSet>,
    /// `aws_forward_query_params`; by default none for S3, all for other
    /// services.
    pub forward_query: Option<ForwardQuery>,
    /// `aws_s3_listing`.
    pub listing: Option<bool>,
    /// `aws_payload`.
    pub payload: Option<Payload>,
    /// `aws_payload_max_size`, bytes (signed payloads).
    pub payload_max: Option<u64>,
    /// `aws_content_sha256_header`.
    pub content_sha256_header: Option<bool>,
    /// `aws_presign_expires`, seconds.
    pub presign_expires: Option<u64>,
    /// `aws_presign_scheme`.
    pub presign_scheme: Option<String>,
    /// `aws_s3_index`: the index object's name; empty for `off`.
    pub index: Option<String>,
    /// `aws_s3_autoindex`.
    pub autoindex: Option<bool>,
    /// `aws_s3_autoindex_format`.
    pub autoindex_format: Option<aws_signer::listing::Format>,
    /// `aws_s3_autoindex_max_entries`.
    pub autoindex_max: Option<usize>,
    /// `aws_s3_append_slash`.
    pub append_slash: Option<bool>,
    /// The `Allow` value of a 405 (the signed methods), computed at merge.
    pub allow: String,
    /// A signed payload is possible here, so request bodies are hashed as
    /// they are read; computed at merge.
    pub hashes_body: bool,
    /// `$aws_s3_host`, computed at merge: `bucket.endpoint` (the first
    /// bucket) for virtual-host addressing, the endpoint for path style.
    pub s3_host: String,
    /// What goes before the object key in the path, computed at merge:
    /// `/bucket` for path addressing with one bucket, else nothing (with
    /// several, the client's path names one of them).
    pub s3_path_prefix: String,
    /// Where `aws_sign` was written, for messages given at merge time.
    sign_at: Option<String>,
    /// `aws_access_key` or `aws_signing_key` is written in this very
    /// `location` block: as in the C module's examples, such a location
    /// signs unless it says `aws_sign off`.
    declared_in_location: bool,
    /// This is a `location` (or `if`/`limit_except`) block's configuration:
    /// the blocks that serve requests, where a missing credential is an error.
    pub is_location: bool,
    /// The merged, checked credentials; `None` when incomplete.
    pub credentials: Option<Credentials>,
}

impl LocConf {
    /// True when the upstream request of this location must be signed.
    pub fn sign_on(&self) -> bool {
        self.sign == Some(true)
    }

    /// The endpoint: `aws_endpoint`, else the one for the keys' region
    /// (`s3.amazonaws.com` for us-east-1 or no region).
    pub fn endpoint(&self) -> &str {
        match &self.endpoint {
            Some(e) => e,
            None if !self.endpoint_default.is_empty() => &self.endpoint_default,
            None => DEFAULT_ENDPOINT,
        }
    }

    /// The region the keys sign for: `aws_region` for role credentials and
    /// secret mode, else the scope of the static key or of the key file's
    /// first day.
    fn keys_region(&self) -> Option<&str> {
        if self.role.is_some() || self.secret.is_some() {
            return self.region.as_deref();
        }
        match (&self.key_file, &self.scope) {
            (Some(file), _) => file.first().map(|(scope, _)| scope.region()),
            (None, Some(scope)) => Some(scope.region()),
            (None, None) => self.region.as_deref(),
        }
    }

    /// Other names of the default endpoint, which the bucket check takes
    /// as it; none with `aws_endpoint`.
    pub fn endpoint_also(&self) -> &[String] {
        if self.endpoint.is_some() {
            &[]
        } else {
            &self.endpoint_also
        }
    }

    /// The addressing style in effect: as set, else virtual-host (the C
    /// module's) when a bucket is known.
    pub fn addressing(&self) -> Addressing {
        self.addressing.unwrap_or(Addressing::Virtual)
    }

    /// The client `x-amz-*` headers to keep and sign.
    pub fn forward(&self) -> &[String] {
        self.forward.as_deref().unwrap_or(&[])
    }

    /// The methods signed (default GET and HEAD).
    pub fn methods(&self) -> MethodSet {
        self.methods.unwrap_or(MethodSet::READ)
    }

    /// True when a method name (as on the wire) is among the signed methods.
    pub fn method_allowed(&self, name: &[u8]) -> bool {
        self.methods().allows(name)
    }

    /// What a request signed with a key under `rules` may be.
    pub fn policy(&self, rules: PathRules) -> Policy<'_> {
        let s3 = matches!(rules, PathRules::S3);
        let query = match &self.forward_query {
            Some(ForwardQuery::All) => QueryPolicy::All,
            Some(ForwardQuery::None) => QueryPolicy::None,
            Some(ForwardQuery::Names(names)) => QueryPolicy::Only(names),
            None if s3 => QueryPolicy::None,
            None => QueryPolicy::All,
        };
        Policy {
            methods: self.methods(),
            rules,
            query,
            s3: s3.then(|| S3Policy {
                buckets: self.bucket.as_deref().unwrap_or(&[]),
                addressing: self.addressing,
                endpoint: self.endpoint(),
                also: self.endpoint_also(),
                listing: self.listing == Some(true),
            }),
            forward_amz: self.forward(),
        }
    }

    /// The payload mode for a key's service: as set, else unsigned for S3
    /// (streaming uploads) and signed for every other service.
    pub fn payload_for(&self, rules: PathRules) -> Payload {
        self.payload.unwrap_or(match rules {
            PathRules::S3 => Payload::Unsigned,
            PathRules::Generic { .. } => Payload::Signed,
        })
    }

    /// Whether `x-amz-content-sha256` is sent: always for S3, else as set
    /// (default off).
    pub fn content_sha256_header_for(&self, rules: PathRules) -> bool {
        matches!(rules, PathRules::S3) || self.content_sha256_header == Some(true)
    }

    /// True when the request body must be hashed as it is read: a signed
    /// payload is possible here.
    fn body_needs_hash(&self) -> bool {
        let Some(creds) = self.credentials.as_ref() else {
            return false;
        };
        match self.payload {
            Some(p) => p == Payload::Signed,
            // the default depends on the service: any non-S3 key signs bodies
            None => creds.any_non_s3(),
        }
    }
}

pub use aws_signer::config::DEFAULT_ENDPOINT;

const ANY_LEVEL: u32 = NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF;

type SetFn = unsafe extern "C" fn(*mut ngx_conf_t, *mut ngx_command_t, *mut c_void) -> *mut c_char;

const fn command(name: ngx_str_t, args: u32, set: SetFn) -> ngx_command_t {
    ngx_command_t {
        name,
        type_: (ANY_LEVEL | args) as ngx_uint_t,
        set: Some(set),
        conf: NGX_HTTP_LOC_CONF_OFFSET,
        offset: 0,
        post: ptr::null_mut(),
    }
}

pub static mut COMMANDS: [ngx_command_t; 31] = [
    command(
        ngx_string!("aws_access_key"),
        NGX_CONF_TAKE1,
        set_access_key,
    ),
    command(ngx_string!("aws_key_scope"), NGX_CONF_TAKE1, set_key_scope),
    command(
        ngx_string!("aws_signing_key"),
        NGX_CONF_TAKE1,
        set_signing_key,
    ),
    command(
        ngx_string!("aws_signing_key_file"),
        NGX_CONF_TAKE1,
        set_signing_key_file,
    ),
    command(
        ngx_string!("aws_secret_key_file"),
        NGX_CONF_TAKE1,
        set_secret_key_file,
    ),
    command(
        ngx_string!("aws_credentials"),
        NGX_CONF_1MORE,
        set_credentials,
    ),
    command(
        ngx_string!("aws_assume_role"),
        NGX_CONF_1MORE,
        set_assume_role,
    ),
    command(ngx_string!("aws_region"), NGX_CONF_TAKE1, set_region),
    command(ngx_string!("aws_service"), NGX_CONF_TAKE1, set_service),
    command(
        ngx_string!("aws_session_token"),
        NGX_CONF_TAKE1,
        set_session_token,
    ),
    command(
        ngx_string!("aws_session_token_file"),
        NGX_CONF_TAKE1,
        set_session_token_file,
    ),
    command(ngx_string!("aws_s3_bucket"), NGX_CONF_1MORE, set_s3_bucket),
    command(
        ngx_string!("aws_s3_listing"),
        NGX_CONF_TAKE1,
        set_s3_listing,
    ),
    command(
        ngx_string!("aws_forward_query_params"),
        NGX_CONF_1MORE,
        set_forward_query_params,
    ),
    command(ngx_string!("aws_endpoint"), NGX_CONF_TAKE1, set_endpoint),
    command(
        ngx_string!("aws_s3_addressing"),
        NGX_CONF_TAKE1,
        set_s3_addressing,
    ),
    command(
        ngx_string!("aws_forward_amz_headers"),
        NGX_CONF_1MORE,
        set_forward_amz_headers,
    ),
    command(
        ngx_string!("aws_sign_methods"),
        NGX_CONF_1MORE,
        set_sign_methods,
    ),
    command(ngx_string!("aws_payload"), NGX_CONF_TAKE1, set_payload),
    command(
        ngx_string!("aws_payload_max_size"),
        NGX_CONF_TAKE1,
        set_payload_max,
    ),
    command(
        ngx_string!("aws_content_sha256_header"),
        NGX_CONF_TAKE1,
        set_content_sha256_header,
    ),
    command(
        ngx_string!("aws_presign_expires"),
        NGX_CONF_TAKE1,
        set_presign_expires,
    ),
    command(
        ngx_string!("aws_presign_scheme"),
        NGX_CONF_TAKE1,
        set_presign_scheme,
    ),
    command(
        ngx_string!("aws_sign"),
        NGX_CONF_NOARGS | NGX_CONF_TAKE1,
        set_sign,
    ),
    command(ngx_string!("aws_s3_index"), NGX_CONF_TAKE1, set_index),
    command(
        ngx_string!("aws_s3_autoindex"),
        NGX_CONF_TAKE1,
        set_autoindex,
    ),
    command(
        ngx_string!("aws_s3_autoindex_format"),
        NGX_CONF_TAKE1,
        set_autoindex_format,
    ),
    command(
        ngx_string!("aws_s3_autoindex_max_entries"),
        NGX_CONF_TAKE1,
        set_autoindex_max,
    ),
    command(
        ngx_string!("aws_s3_append_slash"),
        NGX_CONF_TAKE1,
        set_append_slash,
    ),
    ngx_command_t {
        name: ngx_string!("aws_auth_status"),
        type_: (NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF | NGX_CONF_NOARGS) as ngx_uint_t,
        set: Some(set_status),
        conf: NGX_HTTP_LOC_CONF_OFFSET,
        offset: 0,
        post: ptr::null_mut(),
    },
    ngx_command_t::empty(),
];

/// The arguments of the directive being read: name first.
///
/// # Safety
/// `cf` must be the conf pointer nginx passed to a directive handler.
unsafe fn args<'a>(cf: *mut ngx_conf_t) -> &'a [ngx_str_t] {
    // SAFETY: during a directive handler cf->args is a valid array of
    // ngx_str_t holding the directive name and its arguments.
    unsafe {
        let a = (*cf).args;
        std::slice::from_raw_parts((*a).elts as *const ngx_str_t, (*a).nelts)
    }
}

/// Runs a directive handler body: parses the arguments (after the name)
/// with `parse`, refuses duplicates, stores the value; errors become
/// `[emerg]` lines.
///
/// # Safety
/// The pointers are the ones nginx passes to a directive handler for a
/// command whose conf is this module's `LocConf`.
unsafe fn set_value<T>(
    cf: *mut ngx_conf_t,
    conf: *mut c_void,
    field: fn(&mut LocConf) -> &mut Option<T>,
    parse: impl FnOnce(&[ngx_str_t]) -> Result<T, String>,
) -> *mut c_char {
    // SAFETY: conf was allocated by create_loc_conf as a LocConf.
    let lc = unsafe { &mut *(conf as *mut LocConf) };
    // SAFETY: see the function contract.
    let a = unsafe { args(cf) };
    let name = String::from_utf8_lossy(a[0].as_bytes()).into_owned();
    // SAFETY: cf is valid; cmd_type tells the block being read.
    let in_location = unsafe { (*cf).cmd_type } & NGX_HTTP_LOC_CONF as ngx_uint_t != 0;
    if in_location && (name == "aws_access_key" || name == "aws_signing_key") {
        lc.declared_in_location = true;
    }
    if let Some(why) = key_source_conflict(lc, &name) {
        ngx_conf_log_error!(NGX_LOG_EMERG, cf, "\"{name}\": {why}");
        return NGX_CONF_ERROR;
    }
    let slot = field(lc);
    if slot.is_some() {
        ngx_conf_log_error!(NGX_LOG_EMERG, cf, "\"{name}\" directive is duplicate");
        return NGX_CONF_ERROR;
    }
    match parse(&a[1..]) {
        Ok(v) => {
            *slot = Some(v);
            NGX_CONF_OK
        }
        Err(why) => {
            ngx_conf_log_error!(NGX_LOG_EMERG, cf, "\"{name}\": {why}");
            NGX_CONF_ERROR
        }
    }
}

macro_rules! setter {
    ($fn:ident, $field:ident, $parse:expr) => {
        unsafe extern "C" fn $fn(
            cf: *mut ngx_conf_t,
            _cmd: *mut ngx_command_t,
            conf: *mut c_void,
        ) -> *mut c_char {
            // SAFETY: nginx calls this with the pointers of a directive handler.
            unsafe { set_value(cf, conf, |c| &mut c.$field, $parse) }
        }
    };
}

/// A directive's one argument, parsed by `parse`.
fn one<T>(parse: fn(&[u8]) -> Result<T, String>) -> impl FnOnce(&[ngx_str_t]) -> Result<T, String> {
    move |a| parse(a[0].as_bytes())
}

/// All of a directive's arguments, parsed together by `parse`.
fn all<T>(
    parse: fn(&[&[u8]]) -> Result<T, String>,
) -> impl FnOnce(&[ngx_str_t]) -> Result<T, String> {
    move |a| parse(&a.iter().map(ngx_str_t::as_bytes).collect::<Vec<_>>())
}

setter!(set_access_key, access_key, one(parse_access_key));
setter!(set_key_scope, scope, one(parse_scope));
setter!(set_signing_key, key, one(parse_signing_key));
setter!(set_s3_bucket, bucket, all(parse_buckets));
setter!(set_s3_listing, listing, one(parse_on_off));
setter!(
    set_forward_query_params,
    forward_query,
    all(parse_forward_query)
);
setter!(set_session_token, session_token, one(parse_session_token));

/// One or more bucket names, each once.
fn parse_buckets(values: &[&[u8]]) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::with_capacity(values.len());
    for v in values {
        let b = parse_bucket(v)?;
        if out.contains(&b) {
            return Err(format!("bucket \"{b}\" is listed twice"));
        }
        out.push(b);
    }
    Ok(out)
}

/// `all`, `none`, or query parameter names (never `X-Amz-*`).
fn parse_forward_query(values: &[&[u8]]) -> Result<ForwardQuery, String> {
    match values {
        [v] if v.eq_ignore_ascii_case(b"all") => return Ok(ForwardQuery::All),
        [v] if v.eq_ignore_ascii_case(b"none") => return Ok(ForwardQuery::None),
        _ => {}
    }
    let mut out: Vec<Vec<u8>> = Vec::with_capacity(values.len());
    for v in values {
        let shown = String::from_utf8_lossy(v);
        if v.eq_ignore_ascii_case(b"all") || v.eq_ignore_ascii_case(b"none") {
            return Err(format!(
                "\"{shown}\" cannot be combined with parameter names"
            ));
        }
        if v.is_empty()
            || v.iter()
                .any(|&b| b <= b' ' || b >= 0x7f || b == b'&' || b == b'=')
        {
            return Err(format!("\"{shown}\" is not a query parameter name"));
        }
        let strict = QueryPolicy::strict_name(v);
        if aws_signer::policy::is_amz_param(&strict) {
            return Err(format!(
                "\"{shown}\": X-Amz-* parameters carry query signatures and are never forwarded"
            ));
        }
        if out.contains(&strict) {
            return Err(format!("\"{shown}\" is listed twice"));
        }
        out.push(strict);
    }
    Ok(ForwardQuery::Names(out))
}
setter!(set_region, region, one(parse_region));
setter!(set_service, service, one(parse_service));

fn parse_region(v: &[u8]) -> Result<String, String> {
    let ok = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-';
    if v.is_empty() || !v.iter().all(ok) {
        return Err("a region is made of a-z, 0-9 and '-', e.g. us-east-1".into());
    }
    Ok(String::from_utf8_lossy(v).into_owned())
}

fn parse_service(v: &[u8]) -> Result<String, String> {
    let ok = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'.');
    if v.is_empty() || !v.iter().all(ok) {
        return Err("a service is made of a-z, 0-9, '-' and '.', e.g. s3".into());
    }
    Ok(String::from_utf8_lossy(v).into_owned())
}

unsafe extern "C" fn set_secret_key_file(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: a directive handler's pointers.
    unsafe {
        set_from_file(
            cf,
            conf,
            |c| &mut c.secret,
            |_, shown, text| {
                let secret = text.trim();
                if secret.is_empty() || secret.contains(char::is_whitespace) {
                    return Err(format!(
                        "{shown}: expected the secret access key on one line"
                    ));
                }
                Ok(Zeroizing::new(secret.as_bytes().to_vec()))
            },
        )
    }
}

fn parse_session_token(v: &[u8]) -> Result<Zeroizing<String>, String> {
    // Never echo the value: it is a credential.
    if v.is_empty() || !v.iter().all(|b| b.is_ascii_graphic()) {
        return Err("a session token is non-empty printable ASCII without spaces".into());
    }
    Ok(Zeroizing::new(String::from_utf8_lossy(v).into_owned()))
}

/// `aws_credentials imds|ecs|eks-pod-identity [name=value ...]`: a role's
/// credentials fetched from the machine. The standard AWS variables are
/// read here, while the master process still has its environment.
unsafe extern "C" fn set_credentials(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: conf was allocated by create_loc_conf as a LocConf; cf is a
    // directive handler's.
    let (lc, a) = unsafe { (&mut *(conf as *mut LocConf), args(cf)) };
    let fail = |why: String| {
        ngx_conf_log_error!(NGX_LOG_EMERG, cf, "\"aws_credentials\": {why}");
        NGX_CONF_ERROR
    };
    if lc.role.is_some() {
        ngx_conf_log_error!(
            NGX_LOG_EMERG,
            cf,
            "\"aws_credentials\" directive is duplicate"
        );
        return NGX_CONF_ERROR;
    }
    if let Some(why) = key_source_conflict(lc, "aws_credentials") {
        return fail(why);
    }
    let values: Vec<&[u8]> = a[1..].iter().map(ngx_str_t::as_bytes).collect();
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let parsed = match aws_signer::sources::parse_source(&values, &env) {
        Ok(parsed) => parsed,
        Err(why) => return fail(why),
    };
    let Parsed {
        name,
        spec,
        description,
    } = parsed;
    // SAFETY: cf is a directive handler's.
    let made = unsafe {
        role_source(cf, &description.clone(), move |cf| {
            let kind = match spec {
                SourceSpec::Imds(imds) => Kind::Imds(imds),
                SourceSpec::Container(c) => Kind::Container(c),
                SourceSpec::WebIdentity {
                    role,
                    token_file,
                    sts,
                } => Kind::WebIdentity {
                    role,
                    token_file,
                    sts: sts_context(cf, sts)?,
                },
            };
            let identity = description.clone();
            Ok(RoleSource::new(name, kind, description, identity))
        })
    };
    match made {
        Ok(role) => {
            lc.role = Some(role);
            NGX_CONF_OK
        }
        Err(why) => fail(why),
    }
}

/// `aws_assume_role ARN [name=value ...] | off`: the block signs with a
/// role assumed through STS with its credentials (built at merge, once the
/// credentials are known).
unsafe extern "C" fn set_assume_role(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: conf was allocated by create_loc_conf as a LocConf; cf is a
    // directive handler's.
    let (lc, a) = unsafe { (&mut *(conf as *mut LocConf), args(cf)) };
    if lc.assume.is_some() {
        ngx_conf_log_error!(
            NGX_LOG_EMERG,
            cf,
            "\"aws_assume_role\" directive is duplicate"
        );
        return NGX_CONF_ERROR;
    }
    let values: Vec<&[u8]> = a[1..].iter().map(ngx_str_t::as_bytes).collect();
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    match aws_signer::sources::parse_assume(&values, &env) {
        Ok(assume) => {
            lc.assume = Some(assume);
            NGX_CONF_OK
        }
        Err(why) => {
            ngx_conf_log_error!(NGX_LOG_EMERG, cf, "\"aws_assume_role\": {why}");
            NGX_CONF_ERROR
        }
    }
}

/// The configuration's source with this description, or a new one made by
/// `make`, with its shared zone.
///
/// # Safety
/// `cf` must be the conf of a directive handler or of a merge.
pub unsafe fn role_source(
    cf: *mut ngx_conf_t,
    identity: &str,
    make: impl FnOnce(*mut ngx_conf_t) -> Result<RoleSource, String>,
) -> Result<&'static RoleSource, String> {
    // SAFETY: cf is valid while the configuration is read.
    let main = crate::Module::main_conf_mut(unsafe { &*cf }).ok_or("no http main configuration")?;
    if let Some(r) = main.roles.iter().copied().find(|r| {
        // SAFETY: every pointer in main.roles is a RoleSource in the cycle pool.
        unsafe { (**r).identity == identity }
    }) {
        // SAFETY: as above; it lives as long as the configuration.
        return Ok(unsafe { &*r });
    }
    let source = make(cf)?;
    // SAFETY: cf->pool is the cycle's pool; the source lives (and is
    // dropped) with the configuration.
    let pool = unsafe { ngx::core::Pool::from_ngx_pool((*cf).pool) };
    let r = pool.allocate(source);
    if r.is_null() {
        return Err("no memory".into());
    }
    // SAFETY: r lives as long as the configuration.
    unsafe { RoleSource::add_zone(r, cf) }?;
    main.roles.push(r);
    // SAFETY: the source lives in the cycle pool as long as this
    // configuration, which outlives every block and request that uses it.
    Ok(unsafe { &*r })
}

/// The TLS client context of an STS source (trusting the system's CA
/// bundle, or `ca=`), and the core location configuration whose resolver
/// finds its name.
///
/// # Safety
/// `cf` must be the conf of a directive handler or of a merge.
pub unsafe fn sts_context(cf: *mut ngx_conf_t, spec: StsSpec) -> Result<Sts, String> {
    use ngx::ffi::{ngx_ssl_t, NGX_SSL_TLSv1_2, NGX_SSL_TLSv1_3};
    // SAFETY: cf's pool and log are valid; the context is cleaned up with
    // the pool; the CA file name is NUL-terminated for OpenSSL.
    unsafe {
        let pool = (*cf).pool;
        let ssl = ngx::ffi::ngx_pcalloc(pool, std::mem::size_of::<ngx_ssl_t>()) as *mut ngx_ssl_t;
        if ssl.is_null() {
            return Err("no memory".into());
        }
        (*ssl).log = (*cf).log;
        let protocols = (NGX_SSL_TLSv1_2 | NGX_SSL_TLSv1_3) as ngx_uint_t;
        if ngx::ffi::ngx_ssl_create(ssl, protocols, ptr::null_mut()) != ngx::core::Status::NGX_OK.0
        {
            return Err("cannot create a TLS context".into());
        }
        let cln = ngx::ffi::ngx_pool_cleanup_add(pool, 0);
        if cln.is_null() {
            return Err("no memory".into());
        }
        (*cln).handler = Some(ngx::ffi::ngx_ssl_cleanup_ctx);
        (*cln).data = ssl as *mut c_void;
        let mut ca = ngx_str_t::empty();
        match &spec.ca {
            Some(path) => {
                let full = if path.starts_with('/') {
                    path.clone()
                } else {
                    let prefix = (*(*cf).cycle).conf_prefix.as_bytes();
                    format!("{}{path}", String::from_utf8_lossy(prefix))
                };
                let data = ngx::ffi::ngx_pnalloc(pool, full.len() + 1) as *mut u8;
                if data.is_null() {
                    return Err("no memory".into());
                }
                ptr::copy_nonoverlapping(full.as_ptr(), data, full.len());
                *data.add(full.len()) = 0;
                ca = ngx_str_t {
                    len: full.len(),
                    data,
                };
            }
            None => {
                if ngx::ffi::SSL_CTX_set_default_verify_paths((*ssl).ctx as *mut _) != 1 {
                    return Err("cannot load the system's CA certificates".into());
                }
            }
        }
        // sets the verification callback and depth, and loads ca= if given
        if ngx::ffi::ngx_ssl_trusted_certificate(cf, ssl, &mut ca, 5) != ngx::core::Status::NGX_OK.0
        {
            return Err(format!(
                "cannot load the CA certificates \"{}\"",
                spec.ca.as_deref().unwrap_or("")
            ));
        }
        let clcf = ngx::http::NgxHttpCoreModule::location_conf_mut(&*cf)
            .map_or(ptr::null_mut(), |c| c as *mut _);
        Ok(Sts {
            url: spec.url,
            region: spec.region,
            address: spec.address,
            ssl,
            clcf,
        })
    }
}

/// The ways to give credentials exclude each other within one block:
/// `aws_key_scope` + `aws_signing_key`, `aws_signing_key_file`,
/// `aws_secret_key_file`, `aws_credentials` (which also brings its own
/// access key and token). Returns why `directive` conflicts, if it does.
fn key_source_conflict(lc: &LocConf, directive: &str) -> Option<String> {
    let set = [
        ("aws_signing_key", lc.key.is_some() || lc.scope.is_some()),
        ("aws_signing_key_file", lc.key_file.is_some()),
        ("aws_secret_key_file", lc.secret.is_some()),
        ("aws_credentials", lc.role.is_some()),
    ];
    let mine = match directive {
        "aws_signing_key" | "aws_key_scope" => "aws_signing_key",
        "aws_signing_key_file" | "aws_secret_key_file" => directive,
        "aws_credentials" => {
            if let Some(d) = [
                ("aws_access_key", lc.access_key.is_some()),
                ("aws_session_token", lc.session_token.is_some()),
            ]
            .iter()
            .find(|(_, on)| *on)
            {
                return Some(format!(
                    "this block already has \"{}\": aws_credentials brings its own access key and session token",
                    d.0
                ));
            }
            "aws_credentials"
        }
        "aws_access_key" | "aws_session_token" | "aws_session_token_file" if lc.role.is_some() => {
            return Some(
                "this block has \"aws_credentials\", which brings its own access key and session token"
                    .into(),
            )
        }
        _ => return None,
    };
    let (other, _) = set.iter().find(|(name, on)| *on && *name != mine)?;
    Some(format!(
        "this block already has \"{other}\": one key source per block (aws_signing_key with aws_key_scope, aws_signing_key_file, aws_secret_key_file or aws_credentials)"
    ))
}

/// Reads a secret-bearing file named in the configuration: relative names
/// are taken from nginx's configuration prefix; the file must not be
/// readable by others.
///
/// # Safety
/// `cf` must be the conf of a directive handler.
unsafe fn read_secret_file(
    cf: *mut ngx_conf_t,
    name: &[u8],
) -> Result<(String, Zeroizing<String>), String> {
    let name = String::from_utf8_lossy(name).into_owned();
    let path = if name.starts_with('/') {
        std::path::PathBuf::from(&name)
    } else {
        // SAFETY: cf->cycle is valid while the configuration is read.
        let prefix = unsafe { (*(*cf).cycle).conf_prefix.as_bytes() };
        std::path::Path::new(&*String::from_utf8_lossy(prefix)).join(&name)
    };
    let shown = path.display().to_string();
    let meta = std::fs::metadata(&path).map_err(|e| format!("cannot read \"{shown}\": {e}"))?;
    use std::os::unix::fs::PermissionsExt;
    if meta.permissions().mode() & 0o004 != 0 {
        return Err(format!(
            "\"{shown}\" is readable by every user: it holds credentials (chmod o-r)"
        ));
    }
    let text = Zeroizing::new(
        std::fs::read_to_string(&path).map_err(|e| format!("cannot read \"{shown}\": {e}"))?,
    );
    Ok((shown, text))
}

/// Runs a file directive: one argument, no duplicate, `load` turns the
/// file's text into the value.
///
/// # Safety
/// The pointers of a directive handler whose conf is a `LocConf`.
unsafe fn set_from_file<T>(
    cf: *mut ngx_conf_t,
    conf: *mut c_void,
    field: fn(&mut LocConf) -> &mut Option<T>,
    load: fn(*mut ngx_conf_t, &str, &str) -> Result<T, String>,
) -> *mut c_char {
    // SAFETY: see the contract.
    let (lc, a) = unsafe { (&mut *(conf as *mut LocConf), args(cf)) };
    let name = String::from_utf8_lossy(a[0].as_bytes()).into_owned();
    if let Some(why) = key_source_conflict(lc, &name) {
        ngx_conf_log_error!(NGX_LOG_EMERG, cf, "\"{name}\": {why}");
        return NGX_CONF_ERROR;
    }
    if field(lc).is_some() {
        ngx_conf_log_error!(NGX_LOG_EMERG, cf, "\"{name}\" directive is duplicate");
        return NGX_CONF_ERROR;
    }
    // SAFETY: cf is valid.
    let loaded = unsafe { read_secret_file(cf, a[1].as_bytes()) }
        .and_then(|(shown, text): (String, Zeroizing<String>)| load(cf, &shown, text.as_str()));
    match loaded {
        Ok(v) => {
            *field(lc) = Some(v);
            NGX_CONF_OK
        }
        Err(why) => {
            ngx_conf_log_error!(NGX_LOG_EMERG, cf, "\"{name}\": {why}");
            NGX_CONF_ERROR
        }
    }
}

unsafe extern "C" fn set_signing_key_file(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: a directive handler's pointers.
    unsafe { set_from_file(cf, conf, |c| &mut c.key_file, load_key_file) }
}

fn load_key_file(cf: *mut ngx_conf_t, shown: &str, text: &str) -> Result<Vec<ScopedKey>, String> {
    let keys = parse_key_file(text).map_err(|e| match e.line {
        0 => format!("{shown}: {}", e.message),
        n => format!("{shown}:{n}: {}", e.message),
    })?;
    warn_coverage(cf, shown, &keys);
    // for aws_auth_status: when this file's keys end
    // SAFETY: cf is the conf of the directive handler reading the file.
    if let Some(main) = crate::Module::main_conf_mut(unsafe { &*cf }) {
        if let Some(end) = aws_signer::config::keys_end(&keys) {
            if !main.key_files.iter().any(|(f, _)| f == shown) {
                main.key_files.push((shown.to_owned(), end));
            }
        }
    }
    Ok(keys)
}

/// Warns at load time when a key set does not cover today (UTC) or covers
/// fewer than two more days: the next reload should bring new keys.
fn warn_coverage(cf: *mut ngx_conf_t, what: &str, keys: &[ScopedKey]) {
    let today = crate::today_utc();
    let left = aws_signer::config::days_left(keys, &today).unwrap_or(-1);
    if !keys.iter().any(|(s, _)| s.date() == today) {
        ngx_conf_log_error!(
            NGX_LOG_WARN,
            cf,
            "{what}: no signing key for today ({today}): requests will fail until a key for {today} is installed"
        );
    } else if left < 2 {
        ngx_conf_log_error!(
            NGX_LOG_WARN,
            cf,
            "{what}: signing keys end {} day(s) after today ({today}): install keys for the coming days",
            left
        );
    }
}

unsafe extern "C" fn set_session_token_file(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: a directive handler's pointers.
    unsafe {
        set_from_file(
            cf,
            conf,
            |c| &mut c.session_token,
            |_, shown, text| {
                parse_session_token(text.trim().as_bytes()).map_err(|e| format!("{shown}: {e}"))
            },
        )
    }
}
setter!(set_endpoint, endpoint, one(parse_endpoint));
setter!(set_s3_addressing, addressing, one(parse_addressing));
setter!(set_payload, payload, one(parse_payload));
setter!(set_payload_max, payload_max, one(parse_size));
setter!(
    set_content_sha256_header,
    content_sha256_header,
    one(parse_on_off)
);
setter!(set_presign_expires, presign_expires, one(parse_expires));
setter!(set_presign_scheme, presign_scheme, one(parse_scheme));
setter!(set_index, index, one(aws_signer::config::parse_index_name));
setter!(
    set_autoindex_format,
    autoindex_format,
    one(aws_signer::config::parse_autoindex_format)
);
setter!(
    set_autoindex_max,
    autoindex_max,
    one(aws_signer::config::parse_autoindex_max)
);

/// `aws_s3_autoindex on | off`; `on` puts the listing filters in.
unsafe extern "C" fn set_autoindex(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: nginx calls this with the pointers of a directive handler.
    unsafe { set_listing_flag(cf, conf, |c| &mut c.autoindex) }
}

/// `aws_s3_append_slash on | off`; `on` puts the listing filters in.
unsafe extern "C" fn set_append_slash(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: nginx calls this with the pointers of a directive handler.
    unsafe { set_listing_flag(cf, conf, |c| &mut c.append_slash) }
}

/// An `on | off` directive whose `on` needs the listing filters.
///
/// # Safety
/// The pointers of a directive handler.
unsafe fn set_listing_flag(
    cf: *mut ngx_conf_t,
    conf: *mut c_void,
    field: fn(&mut LocConf) -> &mut Option<bool>,
) -> *mut c_char {
    // SAFETY: see the contract.
    let rv = unsafe { set_value(cf, conf, field, one(parse_on_off)) };
    // SAFETY: conf was allocated by create_loc_conf as a LocConf.
    if rv == NGX_CONF_OK && *field(unsafe { &mut *(conf as *mut LocConf) }) == Some(true) {
        // SAFETY: cf is a directive handler's; the main conf exists.
        match unsafe { crate::Module::main_conf_mut(&*cf) } {
            Some(main) => main.autoindex = true,
            None => return NGX_CONF_ERROR,
        }
    }
    rv
}

/// Keywords, like nginx's own, are matched without regard to case.
fn keyword<'a, T: Copy>(v: &[u8], table: &'a [(&'a str, T)]) -> Option<T> {
    table
        .iter()
        .find(|(k, _)| k.as_bytes().eq_ignore_ascii_case(v))
        .map(|(_, t)| *t)
}

fn parse_payload(v: &[u8]) -> Result<Payload, String> {
    match keyword(v, &[("signed", Payload::Signed), ("unsigned", Payload::Unsigned)]) {
        Some(p) => Ok(p),
        None => Err(format!(
            "invalid value \"{}\", it must be \"signed\" (SHA-256 of the body) or \"unsigned\" (UNSIGNED-PAYLOAD)",
            String::from_utf8_lossy(v)
        )),
    }
}

fn parse_on_off(v: &[u8]) -> Result<bool, String> {
    match keyword(v, &[("on", true), ("off", false)]) {
        Some(b) => Ok(b),
        None => Err(format!(
            "invalid value \"{}\", it must be \"on\" or \"off\"",
            String::from_utf8_lossy(v)
        )),
    }
}

/// A number with an optional one-letter unit from `units`.
fn parse_scaled(v: &[u8], units: &[(u8, u64)], example: &str) -> Result<u64, String> {
    let text = String::from_utf8_lossy(v).to_ascii_lowercase();
    let (num, mult) = match units
        .iter()
        .find(|(u, _)| text.as_bytes().last() == Some(u))
    {
        Some((_, m)) => (&text[..text.len() - 1], *m),
        None => (&text[..], 1),
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("invalid value \"{text}\", e.g. {example}"))
}

/// An nginx size: bytes, or a number with `k`, `m` or `g`.
fn parse_size(v: &[u8]) -> Result<u64, String> {
    parse_scaled(
        v,
        &[(b'k', 1 << 10), (b'm', 1 << 20), (b'g', 1 << 30)],
        "64m",
    )
}

/// An nginx time: seconds, or a number with `s`, `m`, `h` or `d`; at most
/// the 7 days AWS accepts for a presigned URL.
fn parse_expires(v: &[u8]) -> Result<u64, String> {
    let secs = parse_scaled(
        v,
        &[(b's', 1), (b'm', 60), (b'h', 3600), (b'd', 86400)],
        "15m or 1h",
    )?;
    if secs > aws_signer::MAX_PRESIGN_EXPIRES {
        return Err(format!(
            "\"{}\" is longer than the 7 days AWS accepts for a presigned URL",
            String::from_utf8_lossy(v)
        ));
    }
    Ok(secs)
}

fn parse_scheme(v: &[u8]) -> Result<String, String> {
    match keyword(v, &[("http", "http"), ("https", "https")]) {
        Some(s) => Ok(s.to_owned()),
        None => Err(format!(
            "invalid value \"{}\", it must be \"http\" or \"https\"",
            String::from_utf8_lossy(v)
        )),
    }
}

setter!(set_sign_methods, methods, all(parse_methods));
setter!(set_forward_amz_headers, forward, all(parse_forward));

/// Method names.
fn parse_methods(values: &[&[u8]]) -> Result<MethodSet, String> {
    MethodSet::parse(values)
}

fn parse_addressing(v: &[u8]) -> Result<Addressing, String> {
    match keyword(v, &[("virtual", Addressing::Virtual), ("path", Addressing::Path)]) {
        Some(a) => Ok(a),
        None => Err(format!(
            "invalid value \"{}\", it must be \"virtual\" (Host: bucket.endpoint) or \"path\" (Host: endpoint, path /bucket/key)",
            String::from_utf8_lossy(v)
        )),
    }
}

/// `none`, or a list of `x-amz-*` header names other than the ones the
/// module sets itself.
fn parse_forward(values: &[&[u8]]) -> Result<Vec<String>, String> {
    if let [v] = values {
        if v.eq_ignore_ascii_case(b"none") {
            return Ok(Vec::new());
        }
    }
    let mut out: Vec<String> = Vec::with_capacity(values.len());
    for v in values {
        let shown = String::from_utf8_lossy(v);
        let token = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.');
        if v.eq_ignore_ascii_case(b"none") {
            return Err("\"none\" cannot be combined with header names".into());
        }
        // `x-amz-meta-*`: every header with that prefix
        let name = v.strip_suffix(b"*").unwrap_or(v);
        if name.len() < v.len() && name.len() <= "x-amz-".len() {
            return Err(format!(
                "\"{shown}\": a pattern needs more than \"x-amz-\" before its '*' (x-amz-meta-*)"
            ));
        }
        if !name.iter().all(|b| token(b) && *b != b'*') || !aws_signer::wire::is_owned_header(name)
        {
            return Err(format!(
                "\"{shown}\" is not an x-amz-* header name (other headers are forwarded as usual)"
            ));
        }
        if !aws_signer::wire::is_forwardable(name) {
            return Err(format!(
                "\"{shown}\" is set by the module itself and cannot be forwarded"
            ));
        }
        let lower = shown.to_ascii_lowercase();
        if out.contains(&lower) {
            return Err(format!("\"{shown}\" is listed twice"));
        }
        out.push(lower);
    }
    Ok(out)
}

/// `aws_auth_status`: this location answers with the counters (see
/// `metrics`), whose shared zone the first such location adds.
unsafe extern "C" fn set_status(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    _conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: cf is the conf of a directive handler in a location (or
    // server) block; the core module's location configuration of that
    // block and this module's main configuration exist.
    unsafe {
        let Some(clcf) = ngx::http::NgxHttpCoreModule::location_conf_mut(&*cf) else {
            return NGX_CONF_ERROR;
        };
        clcf.handler = Some(crate::metrics::status_handler);
        let Some(main) = crate::Module::main_conf_mut(&*cf) else {
            return NGX_CONF_ERROR;
        };
        if let Err(why) = crate::metrics::add_zone(cf, main) {
            ngx_conf_log_error!(NGX_LOG_EMERG, cf, "\"aws_auth_status\": {why}");
            return NGX_CONF_ERROR;
        }
    }
    NGX_CONF_OK
}

unsafe extern "C" fn set_sign(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: conf was allocated by create_loc_conf as a LocConf.
    let lc = unsafe { &mut *(conf as *mut LocConf) };
    // SAFETY: called as a directive handler.
    let a = unsafe { args(cf) };
    if lc.sign.is_some() {
        ngx_conf_log_error!(NGX_LOG_EMERG, cf, "\"aws_sign\" directive is duplicate");
        return NGX_CONF_ERROR;
    }
    let on = match a.get(1).map(ngx_str_t::as_bytes).map(parse_on_off) {
        None => true,
        Some(Ok(on)) => on,
        Some(Err(why)) => {
            ngx_conf_log_error!(NGX_LOG_EMERG, cf, "\"aws_sign\": {why}");
            return NGX_CONF_ERROR;
        }
    };
    lc.sign = Some(on);
    // SAFETY: cf->conf_file is valid while a directive is read.
    lc.sign_at = unsafe {
        let file = (*cf).conf_file;
        (!file.is_null()).then(|| {
            format!(
                "{}:{}",
                String::from_utf8_lossy((*file).file.name.as_bytes()),
                (*file).line
            )
        })
    };
    NGX_CONF_OK
}

fn inherit<T: Clone>(child: &mut Option<T>, parent: &Option<T>) {
    if child.is_none() {
        child.clone_from(parent);
    }
}

impl LocConf {
    /// Merges the parent's values into this block and checks the result;
    /// returns warnings to log.
    pub fn merge_from(&mut self, prev: &LocConf) -> Result<Vec<String>, String> {
        // A key source set here replaces an inherited one of another kind
        // (the parent's merged block holds one kind at most).
        let own_single = self.key.is_some() || self.scope.is_some();
        let own_other = self.key_file.is_some() || self.secret.is_some() || self.role.is_some();
        inherit(&mut self.region, &prev.region);
        inherit(&mut self.service, &prev.service);
        inherit(&mut self.assume, &prev.assume);
        inherit(&mut self.access_key, &prev.access_key);
        inherit(&mut self.session_token, &prev.session_token);
        if !own_other {
            // a block that sets only aws_signing_key keeps the scope above
            inherit(&mut self.scope, &prev.scope);
            inherit(&mut self.key, &prev.key);
        }
        if !own_single && !own_other {
            inherit(&mut self.key_file, &prev.key_file);
            inherit(&mut self.secret, &prev.secret);
            if self.role.is_none() {
                self.role = prev.role;
            }
        }
        if self.secret.is_some() && self.region.is_none() {
            return Err("\"aws_secret_key_file\" needs \"aws_region\"".into());
        }
        if self.role.is_some() && self.region.is_none() {
            return Err("\"aws_credentials\" needs \"aws_region\"".into());
        }
        inherit(&mut self.bucket, &prev.bucket);
        inherit(&mut self.endpoint, &prev.endpoint);
        inherit(&mut self.addressing, &prev.addressing);
        inherit(&mut self.forward, &prev.forward);
        inherit(&mut self.forward_query, &prev.forward_query);
        inherit(&mut self.listing, &prev.listing);
        inherit(&mut self.methods, &prev.methods);
        inherit(&mut self.payload, &prev.payload);
        inherit(&mut self.payload_max, &prev.payload_max);
        inherit(&mut self.content_sha256_header, &prev.content_sha256_header);
        inherit(&mut self.presign_expires, &prev.presign_expires);
        inherit(&mut self.presign_scheme, &prev.presign_scheme);
        inherit(&mut self.index, &prev.index);
        inherit(&mut self.autoindex, &prev.autoindex);
        inherit(&mut self.autoindex_format, &prev.autoindex_format);
        inherit(&mut self.autoindex_max, &prev.autoindex_max);
        inherit(&mut self.append_slash, &prev.append_slash);
        if self.endpoint.is_none() {
            (self.endpoint_default, self.endpoint_also) =
                aws_signer::config::default_s3_endpoints(self.keys_region().unwrap_or(""));
        }
        (self.s3_host, self.s3_path_prefix) = match (self.bucket.as_deref(), self.addressing()) {
            (Some([b, ..]), Addressing::Virtual) => {
                (format!("{b}.{}", self.endpoint()), String::new())
            }
            (Some([b]), Addressing::Path) => (self.endpoint().to_owned(), format!("/{b}")),
            _ => (self.endpoint().to_owned(), String::new()),
        };
        if self.addressing == Some(Addressing::Virtual) && self.bucket.is_some() {
            let host = self
                .endpoint()
                .rsplit_once(':')
                .map_or(self.endpoint(), |(h, _)| h);
            if host.starts_with('[') || host.parse::<std::net::Ipv4Addr>().is_ok() {
                return Err(format!(
                    "\"aws_s3_addressing virtual\" needs a DNS name in \"aws_endpoint\", not the address \"{}\"; use \"aws_s3_addressing path\"",
                    self.endpoint()
                ));
            }
        }
        inherit(&mut self.sign, &prev.sign);
        if self.sign.is_none() && self.declared_in_location {
            self.sign = Some(true);
        }
        inherit(&mut self.sign_at, &prev.sign_at);

        let service = self.service.clone().unwrap_or_else(|| "s3".into());
        let region = self.region.clone().unwrap_or_default();
        let source = match (
            &self.role,
            &self.secret,
            &self.key_file,
            &self.scope,
            &self.key,
        ) {
            (Some(role), ..) => Some(Source::Role {
                role,
                region,
                service,
            }),
            (None, Some(secret), ..) => Some(Source::Secret {
                secret: secret.clone(),
                region,
                service,
            }),
            (None, None, Some(file), ..) => Some(Source::Keys {
                keys: file.clone(),
                file: true,
            }),
            (None, None, None, Some(scope), Some(key)) => Some(Source::Keys {
                keys: vec![(scope.clone(), key.clone())],
                file: false,
            }),
            _ => None,
        };
        self.credentials = match source {
            // a role brings its own access key and session token
            Some(src @ Source::Role { .. }) => Some(Credentials::new(src, String::new(), None)),
            Some(src) => self
                .access_key
                .as_ref()
                .map(|ak| Credentials::new(src, ak.clone(), self.session_token.clone())),
            None => None,
        };
        if self.key_file.is_none() && (self.key.is_some() != self.scope.is_some()) {
            return Err(if self.key.is_some() {
                "\"aws_signing_key\" is set but \"aws_key_scope\" is missing".into()
            } else {
                "\"aws_key_scope\" is set but \"aws_signing_key\" is missing".into()
            });
        }
        if self.sign_on() && self.credentials.is_none() && self.is_location {
            let missing: Vec<&str> = [
                ("aws_access_key", self.access_key.is_none()),
                (
                    "aws_key_scope",
                    self.scope.is_none() && self.key_file.is_none(),
                ),
                (
                    "aws_signing_key (or aws_signing_key_file)",
                    self.key.is_none() && self.key_file.is_none(),
                ),
            ]
            .iter()
            .filter(|(_, m)| *m)
            .map(|(n, _)| *n)
            .collect();
            let at = self
                .sign_at
                .as_deref()
                .map(|w| format!(" (aws_sign in {w})"))
                .unwrap_or_default();
            return Err(format!(
                "\"aws_sign\" needs {} (or \"aws_credentials\") in the same or an enclosing block{at}",
                missing.join(", ")
            ));
        }
        self.allow = self.methods().allow_header();
        self.hashes_body = self.body_needs_hash();
        let mut warnings = Vec::new();
        let s3 = self
            .credentials
            .as_ref()
            .is_some_and(|s| s.default_rules() == PathRules::S3);
        for (name, on) in [
            ("aws_s3_autoindex", self.autoindex),
            ("aws_s3_append_slash", self.append_slash),
        ] {
            if on == Some(true) && self.credentials.is_some() && !s3 {
                return Err(format!(
                    "\"{name} on\" lists S3 buckets, but the credentials here are for the service \"{}\"",
                    self.service.as_deref().unwrap_or("s3")
                ));
            }
        }
        if self.is_location && self.sign_on() && s3 && self.bucket.is_none() {
            warnings.push(
                "\"aws_sign\" without \"aws_s3_bucket\": requests are signed for whatever bucket the upstream request names; set \"aws_s3_bucket\"".to_owned(),
            );
        }
        if self.is_location && self.sign_on() && self.role.is_none() && self.secret.is_none() {
            // static keys sign for their scope's region and service, whatever
            // aws_region and aws_service say
            let scope = match (&self.key_file, &self.scope) {
                (Some(file), _) => file.first().map(|(scope, _)| scope),
                (None, scope) => scope.as_ref(),
            };
            if let Some(scope) = scope {
                for (name, set, keys) in [
                    ("aws_region", self.region.as_deref(), scope.region()),
                    ("aws_service", self.service.as_deref(), scope.service()),
                ] {
                    if set.is_some_and(|v| v != keys) {
                        warnings.push(format!(
                            "\"{name} {}\" is not the {} of the signing key's scope, \"{keys}\": requests are signed for \"{keys}\"",
                            set.unwrap_or(""),
                            if name == "aws_region" { "region" } else { "service" }
                        ));
                    }
                }
            }
        }
        Ok(warnings)
    }
}
