//! Role credentials fetched at run time: from the machine
//! (`aws_credentials`: EC2 instance metadata, the ECS and EKS Pod Identity
//! container endpoint) and from STS (`aws_credentials web-identity`,
//! `aws_assume_role` over another source or a secret).
//!
//! Each source has a shared memory zone, named after its description, so
//! a reload finds the same zone (and its credentials) again. The zone holds
//! the current credentials, their expiration, when to refresh, the last
//! error, and a lease: every worker runs a small loop that refreshes the
//! credentials when they are due, but only the one holding the lease
//! fetches, so the whole nginx asks the service once per refresh. Each
//! worker keeps its own copy of the credentials, taken again when the
//! zone's generation changes: a request reads one atomic counter, not a
//! lock.

use std::cell::{Cell, Ref, RefCell};
use std::ffi::c_void;
use std::ptr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use aws_signer::creds::{self, RoleCredentials};
pub use aws_signer::sources::{Assume, Container, Imds, RoleRequest, StsSpec};

use crate::fetch::FetchError;
use aws_signer::metrics::Counter;
use ngx::core::Status;
use ngx::ffi::{ngx_conf_t, ngx_int_t, ngx_shm_zone_t, NGX_LOG_ERR, NGX_LOG_INFO};
use ngx::ngx_log_error;
use ngx::sync::RwLock;
use zeroize::{Zeroize, Zeroizing};

/// Bumped whenever [`Shared`] changes layout: the zone name carries it, so
/// a new layout never reads an old zone.
const LAYOUT: u32 = 1;
const MAGIC: u64 = 0x6177_735f_6175_7468; // "aws_auth"
/// Size of each source's zone (nginx wants at least eight pages).
const ZONE_SIZE: usize = 64 * 1024;
/// How long a fetch may hold the lease before another worker may try
/// (longer than any fetch: an STS call waits up to 5 s for its base, then
/// up to 10 s).
const LEASE_MS: i64 = 30_000;
/// How often an idle worker looks at the zone.
const CHECK_MS: i64 = 1_000;

/// What a source speaks.
pub enum Kind {
    /// EC2 instance metadata: IMDSv2, IMDSv1 only when allowed.
    Imds(Imds),
    /// The container endpoint: ECS task roles, EKS Pod Identity.
    Container(Container),
    /// STS `AssumeRoleWithWebIdentity` (EKS IRSA): unsigned, the token
    /// from a file read again at every refresh.
    WebIdentity {
        role: RoleRequest,
        token_file: String,
        sts: Sts,
    },
    /// STS `AssumeRole`, signed with base credentials.
    AssumeRole {
        role: RoleRequest,
        external_id: Option<String>,
        base: Base,
        sts: Sts,
    },
}

/// An STS endpoint: URL, signing region, an address to use instead of
/// resolving the name, the TLS client context, nginx's resolver.
pub struct Sts {
    pub url: creds::Url,
    pub region: String,
    pub address: Option<std::net::SocketAddr>,
    pub ssl: *mut ngx::ffi::ngx_ssl_t,
    /// The core location configuration whose `resolver` finds the name.
    pub clcf: *mut ngx::ffi::ngx_http_core_loc_conf_t,
}

/// What signs an `AssumeRole` call.
pub enum Base {
    /// An access key and secret (`aws_secret_key_file`), with a session
    /// token when there is one.
    Keys {
        access_key: String,
        secret: Zeroizing<Vec<u8>>,
        token: Option<Zeroizing<String>>,
    },
    /// Another source's credentials (instance, container, web identity).
    Role(&'static RoleSource),
}

/// A fixed-size field of the shared state.
struct Field<const N: usize> {
    len: usize,
    bytes: [u8; N],
}

impl<const N: usize> Field<N> {
    /// Stores `v` (false when too long); the bytes of a longer old value
    /// are wiped.
    fn set(&mut self, v: &[u8]) -> bool {
        if v.len() > N {
            return false;
        }
        self.bytes[..v.len()].copy_from_slice(v);
        self.bytes[v.len()..].zeroize();
        self.len = v.len();
        true
    }

    fn get(&self) -> &[u8] {
        &self.bytes[..self.len.min(N)]
    }
}

/// What the zone holds, behind its lock.
struct State {
    /// Unix seconds; 0 before the first credentials.
    expiration: i64,
    /// Unix milliseconds of the last successful fetch.
    fetched_ms: i64,
    /// Unix milliseconds of the next refresh attempt.
    next_ms: i64,
    /// Failed fetches in a row.
    failures: u32,
    /// Unix milliseconds of the last failure.
    error_ms: i64,
    access_key: Field<128>,
    secret: Field<256>,
    token: Field<8192>,
    error: Field<512>,
}

/// A source's shared memory: the generation (bumped after each stored
/// set), the lease, and the state.
#[repr(C)]
pub struct Shared {
    magic: u64,
    generation: AtomicU64,
    /// Unix milliseconds until which a fetch is in flight.
    lease_until_ms: AtomicI64,
    state: RwLock<State>,
}

/// A worker's copy of the current credentials (wiped when replaced).
pub struct Fetched {
    pub generation: u64,
    pub access_key: String,
    pub secret: Zeroizing<String>,
    pub token: Zeroizing<String>,
    pub expiration: i64,
}

/// Why a source has no credentials to sign with.
pub struct NotReady {
    pub expired_at: Option<i64>,
    pub error: String,
}

/// A configured source of role credentials.
pub struct RoleSource {
    /// `imds`, `ecs`, `eks-pod-identity`, `web-identity` or `assume-role`.
    pub name: &'static str,
    pub kind: Kind,
    /// What the source is, for logs and the zone's name: never a secret.
    pub description: String,
    /// What makes the source another one: its description, and for a
    /// base of keys a digest of the secret and token. Sources are shared
    /// by it, and the zone is named after it.
    pub identity: String,
    shared: Cell<*mut Shared>,
    local: RefCell<Option<Fetched>>,
}

pub fn now_ms() -> i64 {
    // SAFETY: ngx_cached_time always points to a valid time slot.
    unsafe { (*ngx::ffi::ngx_cached_time).sec * 1000 + (*ngx::ffi::ngx_cached_time).msec as i64 }
}

impl RoleSource {
    pub fn new(
        name: &'static str,
        kind: Kind,
        description: String,
        identity: String,
    ) -> RoleSource {
        RoleSource {
            name,
            kind,
            description,
            identity,
            shared: Cell::new(ptr::null_mut()),
            local: RefCell::new(None),
        }
    }

    /// The zone's state, once the zone is initialized.
    fn shared(&self) -> Option<&Shared> {
        let p = self.shared.get();
        // SAFETY: set by init_zone to the Shared in this source's zone,
        // which is mapped for as long as the configuration lives.
        (!p.is_null()).then(|| unsafe { &*p })
    }

    /// Declares this source's zone; called while the configuration is read.
    ///
    /// # Safety
    /// `cf` must be the conf of a directive handler; `this` must live as
    /// long as the configuration (the zone points back at it).
    pub unsafe fn add_zone(this: *mut RoleSource, cf: *mut ngx_conf_t) -> Result<(), String> {
        // SAFETY: see the contract.
        unsafe {
            let name = format!(
                "aws_auth_{}_{}_v{LAYOUT}",
                (*this).name,
                creds::source_id(&(*this).identity)
            );
            crate::add_shared_zone(cf, &name, ZONE_SIZE, Some(init_zone), this as *mut c_void)
        }
    }

    /// The credentials to sign with now, copied from the zone when it
    /// holds newer ones; an error when there are none or they expired.
    pub fn current(&self, now: i64) -> Result<Ref<'_, Fetched>, NotReady> {
        let Some(shared) = self.shared() else {
            return Err(NotReady {
                expired_at: None,
                error: "no shared zone".into(),
            });
        };
        let generation = shared.generation.load(Ordering::Acquire);
        let stale = match self.local.try_borrow() {
            Ok(l) => l.as_ref().is_none_or(|f| f.generation != generation),
            Err(_) => true,
        };
        if stale && generation != 0 {
            if let Ok(mut local) = self.local.try_borrow_mut() {
                let s = shared.state.read();
                *local = Some(Fetched {
                    generation: shared.generation.load(Ordering::Acquire),
                    access_key: String::from_utf8_lossy(s.access_key.get()).into_owned(),
                    secret: Zeroizing::new(String::from_utf8_lossy(s.secret.get()).into_owned()),
                    token: Zeroizing::new(String::from_utf8_lossy(s.token.get()).into_owned()),
                    expiration: s.expiration,
                });
            }
        }
        let local = self.local.try_borrow().map_err(|_| NotReady {
            expired_at: None,
            error: "busy".into(),
        })?;
        let expired_at = local.as_ref().map(|f| f.expiration).filter(|e| *e <= now);
        Ref::filter_map(local, |l| l.as_ref().filter(|f| f.expiration > now)).map_err(|_| {
            NotReady {
                expired_at,
                error: self.last_error(),
            }
        })
    }

    /// True while no fetch has finished yet: the first one is in flight
    /// (or about to start), and a request may wait a little for it.
    pub fn first_fetch_pending(&self) -> bool {
        self.shared().is_some_and(|s| {
            s.generation.load(Ordering::Acquire) == 0 && s.state.read().failures == 0
        })
    }

    /// The expiration of the credentials held, Unix seconds.
    pub fn expiration(&self) -> Option<i64> {
        let s = self.shared()?;
        let e = s.state.read().expiration;
        (e != 0).then_some(e)
    }

    /// The last fetch error, or a word on what is going on.
    pub fn last_error(&self) -> String {
        match self.shared() {
            Some(s) => {
                let st = s.state.read();
                if st.error.len > 0 {
                    String::from_utf8_lossy(st.error.get()).into_owned()
                } else if st.expiration == 0 {
                    "no credentials fetched yet".into()
                } else {
                    "not refreshed in time".into()
                }
            }
            None => "no shared zone".into(),
        }
    }
}

/// The zone's init: a new zone gets a fresh state; a zone kept over a
/// reload keeps its state (its credentials go on serving at once).
unsafe extern "C" fn init_zone(zone: *mut ngx_shm_zone_t, _old: *mut c_void) -> ngx_int_t {
    // SAFETY: nginx calls init with the zone, mapped; zone->data is the
    // RoleSource set in add_zone; the zone's state is only ever Shared.
    unsafe {
        let src = (*zone).data as *mut RoleSource;
        let p = crate::zone_state::<Shared>(
            zone,
            |s| s.magic == MAGIC,
            |p| {
                ptr::addr_of_mut!((*p).generation).write(AtomicU64::new(0));
                ptr::addr_of_mut!((*p).lease_until_ms).write(AtomicI64::new(0));
                ptr::addr_of_mut!((*p).state).write(RwLock::new(State {
                    expiration: 0,
                    fetched_ms: 0,
                    next_ms: 0,
                    failures: 0,
                    error_ms: 0,
                    access_key: Field {
                        len: 0,
                        bytes: [0; 128],
                    },
                    secret: Field {
                        len: 0,
                        bytes: [0; 256],
                    },
                    token: Field {
                        len: 0,
                        bytes: [0; 8192],
                    },
                    error: Field {
                        len: 0,
                        bytes: [0; 512],
                    },
                }));
                ptr::addr_of_mut!((*p).magic).write(MAGIC);
            },
        );
        if p.is_null() {
            return Status::NGX_ERROR.into();
        }
        (*src).shared.set(p);
    }
    Status::NGX_OK.into()
}

/// A small random number (xorshift of the pid and the time): jitter only.
fn random() -> u64 {
    thread_local! {
        static STATE: Cell<u64> = const { Cell::new(0) };
    }
    STATE.with(|s| {
        let mut x = s.get();
        if x == 0 {
            x = (std::process::id() as u64) << 32 ^ now_ms() as u64 | 1;
        }
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        x
    })
}

fn exiting() -> bool {
    // SAFETY: nginx's process flags, read on the worker's only thread.
    unsafe { ngx::ffi::ngx_exiting != 0 || ngx::ffi::ngx_terminate != 0 || ngx::ffi::ngx_quit != 0 }
}

/// The refresh loop every worker runs for every source: fetch when due,
/// if this worker takes the lease; store the result; sleep a little.
pub async fn refresh_loop(src: &'static RoleSource) {
    let log = ngx::log::ngx_cycle_log().as_ptr();
    loop {
        if exiting() {
            return;
        }
        let Some(shared) = src.shared() else {
            return;
        };
        let now = now_ms();
        let due = shared.state.read().next_ms <= now;
        if due && take_lease(shared, now) {
            let _fetching = Fetching::start(shared, log);
            let result = crate::fetch::fetch(src, now / 1000).await;
            store(src, shared, result, log);
        }
        let wait = (shared.state.read().next_ms - now_ms()).clamp(50, CHECK_MS);
        ngx::async_::sleep(Duration::from_millis(wait as u64)).await;
    }
}

/// Held while this worker fetches. A timer nginx does not cancel keeps a
/// worker told to exit (a reload) running until the fetch ends, so the
/// refresh is finished rather than dropped; and the lease is given back
/// however the fetch ends, also when the task is dropped (the worker
/// stops at once).
struct Fetching<'a> {
    shared: &'a Shared,
    timer: Box<ngx::ffi::ngx_event_t>,
}

/// The guard timer's handler: the fetch outlived the lease; the worker
/// may exit now (the fetch's own deadlines end it anyway).
unsafe extern "C" fn guard_expired(_ev: *mut ngx::ffi::ngx_event_t) {}

impl<'a> Fetching<'a> {
    fn start(shared: &'a Shared, log: *mut ngx::ffi::ngx_log_t) -> Fetching<'a> {
        // SAFETY: an all-zero event is a valid, idle event (nginx
        // allocates them zeroed too); cancelable stays 0.
        let mut timer: Box<ngx::ffi::ngx_event_t> = Box::new(unsafe { std::mem::zeroed() });
        timer.handler = Some(guard_expired);
        timer.log = log;
        // SAFETY: the event is boxed (it does not move) and removed from
        // the timer tree in drop, before it is freed.
        unsafe { ngx::ffi::ngx_add_timer(&mut *timer, LEASE_MS as ngx::ffi::ngx_msec_t) };
        Fetching { shared, timer }
    }
}

impl Drop for Fetching<'_> {
    fn drop(&mut self) {
        if self.timer.timer_set() != 0 {
            // SAFETY: the event is in the timer tree (timer_set).
            unsafe { ngx::ffi::ngx_del_timer(&mut *self.timer) };
        }
        self.shared.lease_until_ms.store(0, Ordering::Release);
    }
}

fn take_lease(shared: &Shared, now: i64) -> bool {
    let held = shared.lease_until_ms.load(Ordering::Acquire);
    held <= now
        && shared
            .lease_until_ms
            .compare_exchange(held, now + LEASE_MS, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
}

/// Stores a fetch's outcome: new credentials (and when to refresh them),
/// or the error and when to try again; logs one line either way.
fn store(
    src: &RoleSource,
    shared: &Shared,
    result: Result<RoleCredentials, FetchError>,
    log: *mut ngx::ffi::ngx_log_t,
) {
    let now = now_ms();
    match result {
        Ok(c) => {
            let expiration_ms = c.expiration * 1000;
            let next = creds::refresh_at(now, expiration_ms, random());
            let fits = {
                let mut s = shared.state.write();
                let fits = c.access_key_id.len() <= 128
                    && c.secret_access_key.len() <= 256
                    && c.token.len() <= 8192;
                if fits {
                    s.access_key.set(c.access_key_id.as_bytes());
                    s.secret.set(c.secret_access_key.as_bytes());
                    s.token.set(c.token.as_bytes());
                    s.expiration = c.expiration;
                    s.fetched_ms = now;
                    s.next_ms = next;
                    s.failures = 0;
                    s.error.set(b"");
                    shared.generation.fetch_add(1, Ordering::AcqRel);
                } else {
                    s.next_ms = now + creds::retry_after_ms(s.failures, random());
                    s.failures += 1;
                    s.error
                        .set(b"the credentials are larger than the zone holds");
                }
                fits
            };
            crate::metrics::count(if fits {
                Counter::RefreshOk
            } else {
                Counter::RefreshFailed
            });
            if fits {
                ngx_log_error!(
                    NGX_LOG_INFO,
                    log,
                    "aws_auth: credentials from {} refreshed: access key {}, expire {} (in {} s), next refresh in {} s",
                    src.description,
                    c.access_key_id,
                    creds::format_utc(c.expiration),
                    c.expiration - now / 1000,
                    (next - now) / 1000
                );
            } else {
                ngx_log_error!(
                    NGX_LOG_ERR,
                    log,
                    "aws_auth: credentials from {} not stored: larger than the zone holds",
                    src.description
                );
            }
        }
        Err(FetchError {
            message: e,
            slow_down,
        }) => {
            crate::metrics::count(Counter::RefreshFailed);
            let (retry, expiration) = {
                let mut s = shared.state.write();
                // asked to slow down (throttled): wait as after two more failures
                let steps = if slow_down {
                    s.failures + 2
                } else {
                    s.failures
                };
                let retry = creds::retry_after_ms(steps, random());
                s.failures = s.failures.saturating_add(1);
                s.next_ms = now + retry;
                s.error_ms = now;
                let shown = e.as_bytes();
                s.error.set(&shown[..shown.len().min(512)]);
                (retry, s.expiration)
            };
            let held = if expiration == 0 {
                "no credentials yet".to_owned()
            } else if expiration * 1000 > now {
                format!("the last ones expire in {} s", expiration - now / 1000)
            } else {
                format!("the last ones expired at {}", creds::format_utc(expiration))
            };
            ngx_log_error!(
                NGX_LOG_ERR,
                log,
                "aws_auth: credentials from {} not refreshed: {e}; {held}; next attempt in {} s",
                src.description,
                (retry + 999) / 1000
            );
        }
    }
}

impl RoleSource {
    /// The STS endpoint the source calls, if it calls STS.
    pub fn sts(&self) -> Option<&Sts> {
        match &self.kind {
            Kind::WebIdentity { sts, .. } | Kind::AssumeRole { sts, .. } => Some(sts),
            _ => None,
        }
    }
}
