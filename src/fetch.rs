//! HTTP from inside a worker, on nginx's event loop: a connection made with
//! `ngx_event_connect_peer`, read and written by an async task (the `ngx`
//! crate's executor), woken by the connection's own read and write events.
//! Never blocks a worker, needs no thread and no runtime. Every exchange
//! has a deadline; every buffer that can hold a credential is wiped.
//!
//! TLS is nginx's own (`ngx_ssl_*`), verified: chain and host name. Names
//! are resolved by nginx's resolver.
//!
//! Then the protocols that hand out a role's credentials: the EC2
//! instance metadata service (IMDSv2, optionally IMDSv1), the container
//! endpoint of ECS and EKS Pod Identity, and STS (`AssumeRole`, signed
//! here, and `AssumeRoleWithWebIdentity`).

use std::future::{poll_fn, Future};
use std::net::{IpAddr, SocketAddr};
use std::pin::{pin, Pin};
use std::ptr;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use aws_signer::creds::{self, HttpEndpoint, RoleCredentials};
use aws_signer::http1::{self, Answer};
use ngx::core::Status;
use ngx::ffi::{
    ngx_close_connection, ngx_connection_log_error_e_NGX_ERROR_INFO, ngx_connection_t,
    ngx_create_pool, ngx_destroy_pool, ngx_event_connect_peer, ngx_event_get_peer, ngx_event_t,
    ngx_handle_read_event, ngx_handle_write_event, ngx_peer_connection_t, ngx_pool_t,
    ngx_resolver_t, ngx_ssl_t, ngx_str_t,
};
use zeroize::{Zeroize, Zeroizing};

use crate::role::{Base, Kind, RoleRequest, RoleSource, Sts};

/// Longest a single HTTP exchange with a metadata service may take,
/// connect to last byte (the service is on the link).
pub const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(2);
/// The same for STS: a name to resolve, TLS, a service across the network.
pub const STS_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an `AssumeRole` fetch waits for its base source's first
/// credentials (both start together).
const BASE_WAIT: Duration = Duration::from_secs(5);

/// `fut`, or `None` once `limit` has passed (the future is then dropped,
/// which closes its connection).
pub async fn with_timeout<T>(limit: Duration, fut: impl Future<Output = T>) -> Option<T> {
    let mut fut = pin!(fut);
    let mut sleep = pin!(ngx::async_::sleep(limit));
    poll_fn(|cx| {
        if let Poll::Ready(v) = fut.as_mut().poll(cx) {
            return Poll::Ready(Some(v));
        }
        if sleep.as_mut().poll(cx).is_ready() {
            return Poll::Ready(None);
        }
        Poll::Pending
    })
    .await
}

/// An outgoing connection owned by an async task. Pinned: the nginx
/// connection points back at it.
struct Conn {
    pc: ngx_peer_connection_t,
    pool: *mut ngx_pool_t,
    addr: libc::sockaddr_storage,
    name: ngx_str_t,
    name_text: String,
    read_waker: Option<Waker>,
    write_waker: Option<Waker>,
    /// The TLS handshake called back (done or failed).
    handshake_over: bool,
}

impl Drop for Conn {
    fn drop(&mut self) {
        // SAFETY: the connection and the pool, if any, are this Conn's own;
        // closing removes its events and timers, so no handler runs after.
        unsafe {
            let c = self.pc.connection;
            if !c.is_null() && !(*c).ssl.is_null() {
                // frees the TLS state; nothing is waited for
                (*(*c).ssl).set_no_wait_shutdown(1);
                ngx::ffi::ngx_ssl_shutdown(c);
            }
            if !self.pc.connection.is_null() {
                ngx_close_connection(self.pc.connection);
                self.pc.connection = ptr::null_mut();
            }
            if !self.pool.is_null() {
                ngx_destroy_pool(self.pool);
            }
        }
    }
}

/// Wakes the task waiting on a connection: TLS can need to read while
/// writing and the reverse, so either event wakes whoever waits (a spurious
/// poll is harmless).
unsafe extern "C" fn wake(ev: *mut ngx_event_t) {
    // SAFETY: nginx calls event handlers with the event of a live
    // connection; c->data is the pinned Conn set in connect.
    unsafe {
        let c = (*ev).data as *mut ngx_connection_t;
        wake_both((*c).data as *mut Conn);
    }
}

/// Wakes both wakers of a connection's task.
///
/// # Safety
/// `conn` must be NULL or a live Conn.
unsafe fn wake_both(conn: *mut Conn) {
    if conn.is_null() {
        return;
    }
    // SAFETY: see the contract.
    let (r, w) = unsafe { ((*conn).read_waker.take(), (*conn).write_waker.take()) };
    for waker in [r, w].into_iter().flatten() {
        waker.wake();
    }
}

/// nginx's callback at the end of a TLS handshake (done or failed).
unsafe extern "C" fn handshake_over(c: *mut ngx_connection_t) {
    // SAFETY: c is the live connection whose data is the pinned Conn.
    unsafe {
        let conn = (*c).data as *mut Conn;
        if conn.is_null() {
            return;
        }
        (*conn).handshake_over = true;
        wake_both(conn);
    }
}

fn sockaddr_of(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: an all-zero sockaddr_storage is a valid value.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is large and aligned enough for any
            // sockaddr, and sockaddr_in is plain data.
            let sin = unsafe { &mut *(&mut ss as *mut _ as *mut libc::sockaddr_in) };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr.s_addr = u32::from_ne_bytes(a.ip().octets());
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            // SAFETY: as above, for sockaddr_in6.
            let sin6 = unsafe { &mut *(&mut ss as *mut _ as *mut libc::sockaddr_in6) };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_addr.s6_addr = a.ip().octets();
            sin6.sin6_scope_id = a.scope_id();
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (ss, len as libc::socklen_t)
}

impl Conn {
    /// Starts connecting to `addr`.
    fn start(addr: SocketAddr, timeout: Duration) -> Result<Pin<Box<Conn>>, String> {
        let log = ngx::log::ngx_cycle_log().as_ptr();
        let (ss, len) = sockaddr_of(addr);
        // SAFETY: a zeroed peer connection is its documented initial state.
        let pc: ngx_peer_connection_t = unsafe { std::mem::zeroed() };
        let mut conn = Box::pin(Conn {
            pc,
            pool: ptr::null_mut(),
            addr: ss,
            name: ngx_str_t::empty(),
            name_text: addr.to_string(),
            read_waker: None,
            write_waker: None,
            handshake_over: false,
        });
        // SAFETY: conn is pinned; the fields set here point into it and stay
        // valid as long as it lives. ngx_event_connect_peer creates the
        // connection with its events, which get this Conn as their owner.
        unsafe {
            let this = conn.as_mut().get_unchecked_mut();
            this.pool = ngx_create_pool(1024, log);
            if this.pool.is_null() {
                return Err("no memory".into());
            }
            this.name = ngx_str_t {
                len: this.name_text.len(),
                data: this.name_text.as_mut_ptr(),
            };
            this.pc.sockaddr = &mut this.addr as *mut _ as *mut libc::sockaddr as *mut _;
            this.pc.socklen = len;
            this.pc.name = &mut this.name;
            this.pc.get = Some(ngx_event_get_peer);
            this.pc.log = log;
            this.pc
                .set_log_error(ngx_connection_log_error_e_NGX_ERROR_INFO);
            let rc = ngx_event_connect_peer(&mut this.pc);
            if rc != Status::NGX_OK.0 && rc != Status::NGX_AGAIN.0 {
                this.pc.connection = ptr::null_mut();
                return Err(format!("cannot connect to {}", this.name_text));
            }
            let c = this.pc.connection;
            (*c).data = this as *mut Conn as *mut _;
            (*c).pool = this.pool;
            (*c).log = log;
            (*(*c).read).handler = Some(wake);
            (*(*c).write).handler = Some(wake);
            (*(*c).read).log = log;
            (*(*c).write).log = log;
            // The exchange's deadline, on the connection (the whole fetch
            // also keeps an uncancelable timer: see role::Fetching).
            ngx::ffi::ngx_add_timer((*c).read, timeout.as_millis() as ngx::ffi::ngx_msec_t);
        }
        Ok(conn)
    }

    fn connection(&self) -> *mut ngx_connection_t {
        self.pc.connection
    }

    /// Ready once the connection is established (or failed).
    fn poll_connected(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), String>> {
        // SAFETY: the connection is live while the Conn is.
        unsafe {
            let this = self.get_unchecked_mut();
            let c = this.connection();
            let wev = (*c).write;
            if (*wev).ready() == 0 && (*wev).timedout() == 0 {
                this.write_waker = Some(cx.waker().clone());
                return Poll::Pending;
            }
            let mut err: libc::c_int = 0;
            let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
            let rc = libc::getsockopt(
                (*c).fd,
                libc::SOL_SOCKET,
                libc::SO_ERROR,
                &mut err as *mut _ as *mut libc::c_void,
                &mut len,
            );
            if rc == -1 || err != 0 {
                let e = std::io::Error::from_raw_os_error(if rc == -1 { libc::EIO } else { err });
                return Poll::Ready(Err(format!("cannot connect to {}: {e}", this.name_text)));
            }
            Poll::Ready(Ok(()))
        }
    }

    /// Starts TLS with `ssl` for `name` (SNI unless it is an address).
    fn start_tls(self: Pin<&mut Self>, ssl: *mut ngx_ssl_t, name: &str) -> Result<(), String> {
        // SAFETY: the connection is live; ssl is a client context built at
        // configuration time; OpenSSL copies the name.
        unsafe {
            let this = self.get_unchecked_mut();
            let c = this.connection();
            let flags =
                (ngx::ffi::NGX_SSL_BUFFER | ngx::ffi::NGX_SSL_CLIENT) as ngx::ffi::ngx_uint_t;
            if ngx::ffi::ngx_ssl_create_connection(ssl, c, flags) != Status::NGX_OK.0 {
                return Err("cannot start TLS".into());
            }
            if name.parse::<IpAddr>().is_err() {
                let cname = std::ffi::CString::new(name).map_err(|_| "bad TLS name".to_string())?;
                ngx::ffi::SSL_ctrl(
                    (*(*c).ssl).connection,
                    ngx::ffi::SSL_CTRL_SET_TLSEXT_HOSTNAME as libc::c_int,
                    ngx::ffi::TLSEXT_NAMETYPE_host_name as libc::c_long,
                    cname.as_ptr() as *mut libc::c_void,
                );
            }
            (*(*c).ssl).handler = Some(handshake_over);
            if ngx::ffi::ngx_ssl_handshake(c) != Status::NGX_AGAIN.0 {
                this.handshake_over = true;
            }
            Ok(())
        }
    }

    /// Ready once the TLS handshake is over: the certificate chain trusted
    /// and issued for `name`, or an error saying why not.
    fn poll_tls(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        name: &str,
    ) -> Poll<Result<(), String>> {
        // SAFETY: the connection is live and has its TLS state (start_tls).
        unsafe {
            let this = self.get_unchecked_mut();
            if !this.handshake_over {
                this.read_waker = Some(cx.waker().clone());
                this.write_waker = Some(cx.waker().clone());
                return Poll::Pending;
            }
            let c = this.connection();
            // nginx's handshake handlers served their turn: ours again
            (*(*c).read).handler = Some(wake);
            (*(*c).write).handler = Some(wake);
            let verify = ngx::ffi::SSL_get_verify_result((*(*c).ssl).connection);
            let untrusted = || {
                let text =
                    std::ffi::CStr::from_ptr(ngx::ffi::X509_verify_cert_error_string(verify));
                format!(
                    "TLS with {name}: the certificate is not trusted ({})",
                    text.to_string_lossy()
                )
            };
            if (*(*c).ssl).handshaked() == 0 {
                return Poll::Ready(Err(if verify != ngx::ffi::X509_V_OK as libc::c_long {
                    untrusted()
                } else {
                    format!("TLS with {name}: the handshake failed")
                }));
            }
            if verify != ngx::ffi::X509_V_OK as libc::c_long {
                return Poll::Ready(Err(untrusted()));
            }
            let mut n = ngx_str_t {
                len: name.len(),
                data: name.as_ptr() as *mut u8,
            };
            let matches = if name.parse::<IpAddr>().is_ok() {
                // an address: nginx checks DNS names only
                let cert = ngx::ffi::SSL_get1_peer_certificate((*(*c).ssl).connection);
                let ip = std::ffi::CString::new(name).unwrap_or_default();
                let ok = !cert.is_null() && ngx::ffi::X509_check_ip_asc(cert, ip.as_ptr(), 0) == 1;
                if !cert.is_null() {
                    ngx::ffi::X509_free(cert);
                }
                ok
            } else {
                ngx::ffi::ngx_ssl_check_host(c, &mut n) == Status::NGX_OK.0
            };
            if !matches {
                return Poll::Ready(Err(format!(
                    "TLS with {name}: the certificate is not for \"{name}\""
                )));
            }
            Poll::Ready(Ok(()))
        }
    }

    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<Result<usize, String>> {
        // SAFETY: the connection is live; send writes from buf.
        unsafe {
            let this = self.get_unchecked_mut();
            let c = this.connection();
            let Some(send) = (*c).send else {
                return Poll::Ready(Err("no send".into()));
            };
            let n = send(c, buf.as_ptr() as *mut u8, buf.len());
            if n == Status::NGX_AGAIN.0 {
                this.write_waker = Some(cx.waker().clone());
                if ngx_handle_write_event((*c).write, 0) != Status::NGX_OK.0 {
                    return Poll::Ready(Err("cannot wait to write".into()));
                }
                return Poll::Pending;
            }
            if n < 0 {
                return Poll::Ready(Err(format!("cannot send to {}", this.name_text)));
            }
            Poll::Ready(Ok(n as usize))
        }
    }

    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<Result<usize, String>> {
        // SAFETY: the connection is live; recv writes into buf.
        unsafe {
            let this = self.get_unchecked_mut();
            let c = this.connection();
            let Some(recv) = (*c).recv else {
                return Poll::Ready(Err("no recv".into()));
            };
            let n = recv(c, buf.as_mut_ptr(), buf.len());
            if n == Status::NGX_AGAIN.0 {
                this.read_waker = Some(cx.waker().clone());
                if ngx_handle_read_event((*c).read, 0) != Status::NGX_OK.0 {
                    return Poll::Ready(Err("cannot wait to read".into()));
                }
                return Poll::Pending;
            }
            if n < 0 {
                return Poll::Ready(Err(format!("cannot read from {}", this.name_text)));
            }
            Poll::Ready(Ok(n as usize))
        }
    }
}

/// Where an exchange goes.
pub struct Target<'a> {
    /// The `Host` header value.
    pub authority: &'a str,
    /// The host name (or address) to connect to and, with TLS, to verify.
    pub name: &'a str,
    pub port: u16,
    /// An address to connect to instead of resolving `name`.
    pub addr: Option<SocketAddr>,
    /// TLS, with this client context.
    pub tls: Option<*mut ngx_ssl_t>,
    /// nginx's resolver, for a name.
    pub resolver: Option<ptr::NonNull<ngx_resolver_t>>,
    /// Longest the exchange may take, resolving included.
    pub timeout: Duration,
}

impl<'a> From<&'a HttpEndpoint> for Target<'a> {
    fn from(ep: &'a HttpEndpoint) -> Target<'a> {
        Target {
            authority: &ep.host,
            name: &ep.host,
            port: ep.addr.port(),
            addr: Some(ep.addr),
            tls: None,
            resolver: None,
            timeout: EXCHANGE_TIMEOUT,
        }
    }
}

/// The address to connect to: the target's own, an address written as
/// the name, or the first one nginx's resolver finds.
async fn address(t: &Target<'_>) -> Result<SocketAddr, String> {
    if let Some(a) = t.addr {
        return Ok(a);
    }
    if let Ok(ip) = t
        .name
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        return Ok(SocketAddr::new(ip, t.port));
    }
    let Some(resolver) = t.resolver else {
        return Err(format!("no resolver to find {}", t.name));
    };
    let log = ngx::log::ngx_cycle_log().as_ptr();
    // SAFETY: a fresh pool, destroyed below once the address is copied.
    let raw = unsafe { ngx_create_pool(1024, log) };
    if raw.is_null() {
        return Err("no memory".into());
    }
    // SAFETY: raw is a live pool.
    let pool = unsafe { ngx::core::Pool::from_ngx_pool(raw) };
    let name = ngx_str_t {
        len: t.name.len(),
        data: t.name.as_ptr() as *mut u8,
    };
    let r = ngx::async_::resolver::Resolver::from_resolver(resolver, t.timeout.as_millis() as _);
    let found = r.resolve_name(&name, &pool).await;
    let (addr, err) = match &found {
        Ok(addrs) => (
            addrs.iter().find_map(|a| {
                // SAFETY: the resolver's addresses are sockaddrs of socklen bytes.
                unsafe { socket_addr(a.sockaddr, a.socklen) }
            }),
            None,
        ),
        Err(e) => (None, Some(e.to_string())),
    };
    drop(found);
    // SAFETY: nothing refers to the pool any more.
    unsafe { ngx_destroy_pool(raw) };
    match addr {
        Some(mut a) => {
            a.set_port(t.port);
            Ok(a)
        }
        None => Err(format!(
            "cannot resolve {}: {}",
            t.name,
            err.unwrap_or_else(|| "no address".into())
        )),
    }
}

/// A sockaddr as a SocketAddr.
///
/// # Safety
/// `sa` must point to `len` readable bytes of a sockaddr.
unsafe fn socket_addr(
    sa: *const ngx::ffi::sockaddr,
    len: ngx::ffi::socklen_t,
) -> Option<SocketAddr> {
    // SAFETY: see the contract; the family says which struct it is.
    unsafe {
        match (*sa).sa_family as i32 {
            libc::AF_INET if len as usize >= std::mem::size_of::<libc::sockaddr_in>() => {
                let sin = &*(sa as *const libc::sockaddr_in);
                Some(SocketAddr::new(
                    IpAddr::from(u32::from_be(sin.sin_addr.s_addr).to_be_bytes()),
                    u16::from_be(sin.sin_port),
                ))
            }
            libc::AF_INET6 if len as usize >= std::mem::size_of::<libc::sockaddr_in6>() => {
                let sin6 = &*(sa as *const libc::sockaddr_in6);
                Some(SocketAddr::new(
                    IpAddr::from(sin6.sin6_addr.s6_addr),
                    u16::from_be(sin6.sin6_port),
                ))
            }
            _ => None,
        }
    }
}

/// One HTTP/1.1 exchange: connect (TLS when the target says so), send the
/// request, read the answer until it is complete (or the server closes).
async fn exchange_once(
    t: &Target<'_>,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Answer, String> {
    let request = http1::request(method, t.authority, path, headers, body);
    let addr = address(t).await?;
    let mut conn = Conn::start(addr, t.timeout)?;
    poll_fn(|cx| conn.as_mut().poll_connected(cx)).await?;
    if let Some(ssl) = t.tls {
        conn.as_mut().start_tls(ssl, t.name)?;
        poll_fn(|cx| conn.as_mut().poll_tls(cx, t.name)).await?;
    }
    let mut sent = 0;
    while sent < request.len() {
        sent += poll_fn(|cx| conn.as_mut().poll_write(cx, &request[sent..])).await?;
    }
    // room for the largest answer read: a reallocation would leave a copy
    // of the credentials behind
    let mut got = Zeroizing::new(Vec::with_capacity(http1::MAX_ANSWER + 4096));
    let mut chunk = [0u8; 4096];
    loop {
        let n = poll_fn(|cx| conn.as_mut().poll_read(cx, &mut chunk)).await;
        let n = match n {
            Ok(n) => n,
            Err(e) => {
                chunk.zeroize();
                return Err(e);
            }
        };
        got.extend_from_slice(&chunk[..n]);
        chunk[..n].zeroize();
        match http1::read_answer(&got, n == 0) {
            Ok(Some(answer)) => return Ok(answer),
            Ok(None) => continue,
            Err(e) => return Err(format!("{} from {}", e, t.name)),
        }
    }
}

/// [`exchange_once`] within the target's timeout.
async fn exchange(
    t: &Target<'_>,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Answer, String> {
    with_timeout(t.timeout, exchange_once(t, method, path, headers, body))
        .await
        .unwrap_or_else(|| {
            Err(format!(
                "{method} {path}: no answer from {} within {} s",
                t.authority,
                t.timeout.as_secs()
            ))
        })
}

/// Why a fetch failed: what to log, and whether the service asked to slow
/// down (throttling: the next attempt waits longer).
pub struct FetchError {
    pub message: String,
    pub slow_down: bool,
}

impl From<String> for FetchError {
    fn from(message: String) -> FetchError {
        FetchError {
            message,
            slow_down: false,
        }
    }
}

impl From<&str> for FetchError {
    fn from(message: &str) -> FetchError {
        FetchError::from(message.to_string())
    }
}

/// Fetches the source's credentials, as of `now` (Unix seconds).
pub async fn fetch(src: &RoleSource, now: i64) -> Result<RoleCredentials, FetchError> {
    match &src.kind {
        Kind::Imds(i) => Ok(imds(&i.endpoint, i.role.as_deref(), i.v1_fallback, now).await?),
        Kind::Container(c) => Ok(container(
            &c.endpoint,
            c.token.as_deref().map(|t| t.as_str()),
            c.token_file.as_deref(),
            now,
        )
        .await?),
        Kind::WebIdentity {
            role,
            token_file,
            sts,
        } => web_identity(role, token_file, sts, now).await,
        Kind::AssumeRole {
            role,
            external_id,
            base,
            sts,
        } => assume_role(role, external_id.as_deref(), base, sts, now).await,
    }
}

const FORM: &str = "application/x-www-form-urlencoded; charset=utf-8";

/// An STS call: POST the form over verified TLS, read the XML answer.
async fn sts_call(
    sts: &Sts,
    headers: &[(&str, &str)],
    body: &[u8],
    now: i64,
) -> Result<RoleCredentials, FetchError> {
    let authority = sts.url.authority();
    let name = sts.url.host.trim_start_matches('[').trim_end_matches(']');
    // SAFETY: the core location configuration lives as long as the
    // configuration; its resolver is set once it is merged.
    let resolver = unsafe { sts.clcf.as_ref() }.and_then(|c| ptr::NonNull::new(c.resolver));
    let t = Target {
        authority: &authority,
        name,
        port: sts.url.port,
        addr: sts.address,
        tls: Some(sts.ssl),
        resolver,
        timeout: STS_TIMEOUT,
    };
    let a = exchange(&t, "POST", &sts.url.path, headers, body).await?;
    aws_signer::sts::parse_answer(a.status, &a.body, now).map_err(|e| FetchError {
        // a throttling code, or a proxy's or endpoint's plain 429 or 503
        slow_down: e.throttled() || matches!(a.status, 429 | 503),
        message: e.message,
    })
}

/// The longest token file read (STS takes web identity tokens of up to
/// 20 000 bytes).
const TOKEN_FILE_MAX: u64 = 32 * 1024;

/// A token file's content, read into one wiped buffer, at most
/// [`TOKEN_FILE_MAX`] bytes (a wrong path must not fill the worker).
fn read_token_file(path: &str, what: &str) -> Result<Zeroizing<String>, String> {
    use std::io::Read;
    let mut buf = Zeroizing::new(Vec::with_capacity(TOKEN_FILE_MAX as usize + 1));
    std::fs::File::open(path)
        .and_then(|f| f.take(TOKEN_FILE_MAX + 1).read_to_end(&mut buf))
        .map_err(|e| format!("cannot read the {what} \"{path}\": {e}"))?;
    if buf.len() as u64 > TOKEN_FILE_MAX {
        return Err(format!(
            "the {what} \"{path}\" is larger than {TOKEN_FILE_MAX} bytes"
        ));
    }
    match std::str::from_utf8(&buf) {
        Ok(text) => Ok(Zeroizing::new(text.to_owned())),
        Err(_) => Err(format!("the {what} \"{path}\" is not text")),
    }
}

/// `AssumeRoleWithWebIdentity`: the token file read now (it rotates),
/// sent in the body; the call is not signed.
async fn web_identity(
    role: &RoleRequest,
    token_file: &str,
    sts: &Sts,
    now: i64,
) -> Result<RoleCredentials, FetchError> {
    let token = read_token_file(token_file, "web identity token file")?;
    let token = token.trim();
    if token.is_empty() {
        return Err(format!("the web identity token file \"{token_file}\" is empty").into());
    }
    let body =
        aws_signer::sts::web_identity_body(&role.arn, &role.session_name, token, role.duration);
    sts_call(sts, &[("Content-Type", FORM)], body.as_bytes(), now).await
}

/// `AssumeRole`, signed for STS with the base credentials of now (a key
/// and secret, or another source's current set).
async fn assume_role(
    role: &RoleRequest,
    external_id: Option<&str>,
    base: &Base,
    sts: &Sts,
    now: i64,
) -> Result<RoleCredentials, FetchError> {
    let (access_key, secret, token): (String, Zeroizing<Vec<u8>>, Option<Zeroizing<String>>) =
        match base {
            Base::Keys {
                access_key,
                secret,
                token,
            } => (access_key.clone(), secret.clone(), token.clone()),
            Base::Role(r) => {
                // both sources start together: give the base its first fetch
                let waited = crate::role::now_ms();
                while r.first_fetch_pending()
                    && crate::role::now_ms() - waited < BASE_WAIT.as_millis() as i64
                {
                    ngx::async_::sleep(Duration::from_millis(100)).await;
                }
                let c = r.current(crate::role::now_ms() / 1000).map_err(|n| {
                    format!(
                        "the base credentials from {} are not there: {}",
                        r.description, n.error
                    )
                })?;
                (
                    c.access_key.clone(),
                    Zeroizing::new(c.secret.as_bytes().to_vec()),
                    Some(c.token.clone()),
                )
            }
        };
    let now = now.max(crate::role::now_ms() / 1000);
    let amz_date = aws_signer::amz_date(now).ok_or("bad clock")?;
    let scope = aws_signer::sts::scope(&amz_date[..8], &sts.region).ok_or("bad STS scope")?;
    let key = aws_signer::derive_signing_key(&secret, &scope);
    let body = aws_signer::sts::assume_role_body(
        &role.arn,
        &role.session_name,
        role.duration,
        external_id,
    );
    let creds = aws_signer::Credentials {
        access_key: &access_key,
        scope: &scope,
        key: &key,
    };
    let signed = aws_signer::sts::signed_post_headers(
        &sts.url.authority(),
        body.as_bytes(),
        &creds,
        token.as_deref().map(|t| t.as_str()),
        &amz_date,
    );
    let headers: Vec<(&str, &str)> = signed.iter().map(|(n, v)| (*n, v.as_str())).collect();
    sts_call(sts, &headers, body.as_bytes(), now).await
}

const IMDS_CREDENTIALS: &str = "/latest/meta-data/iam/security-credentials/";

/// IMDSv2: a session token (`PUT /latest/api/token`), the role name, then
/// its credentials, each with the token. Without a token (the PUT refused
/// or unanswered) only when IMDSv1 is allowed.
async fn imds(
    ep: &HttpEndpoint,
    role: Option<&str>,
    v1_fallback: bool,
    now: i64,
) -> Result<RoleCredentials, String> {
    let ep = &Target::from(ep);
    let put = exchange(
        ep,
        "PUT",
        "/latest/api/token",
        &[("X-aws-ec2-metadata-token-ttl-seconds", "21600")],
        b"",
    )
    .await;
    let token = match put {
        Ok(a) if a.status == 200 && !a.body.is_empty() => Some(Zeroizing::new(
            String::from_utf8_lossy(a.body.trim_ascii()).into_owned(),
        )),
        _ if v1_fallback => None,
        Ok(a) => {
            return Err(format!(
                "the IMDSv2 session token request answered {}",
                a.status
            ))
        }
        Err(e) => return Err(format!("the IMDSv2 session token request failed: {e}")),
    };
    let token_header: Vec<(&str, &str)> = token
        .as_deref()
        .map(|t| vec![("X-aws-ec2-metadata-token", t.as_str())])
        .unwrap_or_default();
    let role = match role {
        Some(r) => r.to_owned(),
        None => {
            let a = exchange(ep, "GET", IMDS_CREDENTIALS, &token_header, b"").await?;
            if a.status != 200 {
                return Err(format!(
                    "the instance role name request answered {}",
                    a.status
                ));
            }
            let name = String::from_utf8_lossy(&a.body)
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .unwrap_or("")
                .to_owned();
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b))
            {
                return Err("the instance has no role (no IAM instance profile?)".into());
            }
            name
        }
    };
    let path = format!("{IMDS_CREDENTIALS}{role}");
    let a = exchange(ep, "GET", &path, &token_header, b"").await?;
    if a.status != 200 {
        return Err(format!(
            "the credentials of role \"{role}\" request answered {}",
            a.status
        ));
    }
    creds::parse_credentials(&a.body, now).map_err(|e| format!("role \"{role}\": {e}"))
}

/// The container endpoint (ECS task role, EKS Pod Identity): one GET with
/// the authorization token, read from its file at every fetch (it rotates).
async fn container(
    ep: &HttpEndpoint,
    token: Option<&str>,
    token_file: Option<&str>,
    now: i64,
) -> Result<RoleCredentials, String> {
    let from_file = match token_file {
        Some(path) => Some(read_token_file(path, "token file")?),
        None => None,
    };
    let auth = from_file.as_deref().map(|t| t.trim()).or(token);
    if auth.is_some_and(|t| t.is_empty() || t.bytes().any(|b| b < b' ' || b == 0x7f)) {
        return Err("the authorization token is empty or holds control bytes".into());
    }
    let headers: Vec<(&str, &str)> = auth.map(|t| vec![("Authorization", t)]).unwrap_or_default();
    let a = exchange(&Target::from(ep), "GET", &ep.path, &headers, b"").await?;
    if a.status != 200 {
        return Err(format!(
            "the container credentials endpoint answered {}",
            a.status
        ));
    }
    creds::parse_credentials(&a.body, now).map_err(|e| e.to_string())
}
