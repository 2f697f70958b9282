//! HTTP from inside a worker, on nginx's event loop: a connection made with
//! `ngx_event_connect_peer`, read and written by an async task (the `ngx`
//! crate's executor), woken by the connection's own read and write events.
//! Never blocks a worker, needs no thread and no runtime. Every exchange
//! has a deadline; every buffer that can hold a credential is wiped.
//!
//! Then the two protocols that hand out a role's credentials: the EC2
//! instance metadata service (IMDSv2, optionally IMDSv1) and the container
//! endpoint of ECS and EKS Pod Identity.

use std::future::{poll_fn, Future};
use std::net::SocketAddr;
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
    ngx_handle_read_event, ngx_handle_write_event, ngx_peer_connection_t, ngx_pool_t, ngx_str_t,
};
use zeroize::{Zeroize, Zeroizing};

use crate::role::{Kind, RoleSource};

/// Longest a single HTTP exchange may take, connect to last byte.
pub const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(2);

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
}

impl Drop for Conn {
    fn drop(&mut self) {
        // SAFETY: the connection and the pool, if any, are this Conn's own;
        // closing removes its events and timers, so no handler runs after.
        unsafe {
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

/// Wakes the task waiting on a connection's read or write event.
unsafe extern "C" fn wake(ev: *mut ngx_event_t) {
    // SAFETY: nginx calls event handlers with the event of a live
    // connection; c->data is the pinned Conn set in connect.
    unsafe {
        let c = (*ev).data as *mut ngx_connection_t;
        let conn = (*c).data as *mut Conn;
        if conn.is_null() {
            return;
        }
        let waker = if (*ev).write() != 0 {
            (*conn).write_waker.take()
        } else {
            (*conn).read_waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
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
    fn start(addr: SocketAddr) -> Result<Pin<Box<Conn>>, String> {
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
            // A timer nginx does not cancel: a worker told to exit (a
            // reload) finishes the exchange (and the refresh, and gives
            // the lease back) before it goes, instead of dropping it.
            ngx::ffi::ngx_add_timer(
                (*c).read,
                EXCHANGE_TIMEOUT.as_millis() as ngx::ffi::ngx_msec_t,
            );
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

/// One HTTP/1.1 exchange: connect, send the request, read the answer until
/// it is complete (or the server closes).
async fn exchange_once(
    ep: &HttpEndpoint,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Answer, String> {
    let request = http1::request(method, &ep.host, path, headers);
    let mut conn = Conn::start(ep.addr)?;
    poll_fn(|cx| conn.as_mut().poll_connected(cx)).await?;
    let mut sent = 0;
    while sent < request.len() {
        sent += poll_fn(|cx| conn.as_mut().poll_write(cx, &request[sent..])).await?;
    }
    let mut got = Zeroizing::new(Vec::with_capacity(4096));
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
            Err(e) => return Err(format!("{} from {}", e, ep.host)),
        }
    }
}

/// [`exchange_once`] within [`EXCHANGE_TIMEOUT`].
async fn exchange(
    ep: &HttpEndpoint,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Answer, String> {
    with_timeout(EXCHANGE_TIMEOUT, exchange_once(ep, method, path, headers))
        .await
        .unwrap_or_else(|| {
            Err(format!(
                "{method} {path}: no answer from {} within {} s",
                ep.host,
                EXCHANGE_TIMEOUT.as_secs()
            ))
        })
}

/// Fetches the source's credentials, as of `now` (Unix seconds).
pub async fn fetch(src: &RoleSource, now: i64) -> Result<RoleCredentials, String> {
    match &src.kind {
        Kind::Imds { role, v1_fallback } => {
            imds(&src.endpoint, role.as_deref(), *v1_fallback, now).await
        }
        Kind::Container { token, token_file } => {
            container(
                &src.endpoint,
                token.as_deref().map(|t| t.as_str()),
                token_file.as_deref(),
                now,
            )
            .await
        }
    }
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
    let put = exchange(
        ep,
        "PUT",
        "/latest/api/token",
        &[("X-aws-ec2-metadata-token-ttl-seconds", "21600")],
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
            let a = exchange(ep, "GET", IMDS_CREDENTIALS, &token_header).await?;
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
    let a = exchange(ep, "GET", &path, &token_header).await?;
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
        Some(path) => Some(Zeroizing::new(
            std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read the token file \"{path}\": {e}"))?,
        )),
        None => None,
    };
    let auth = from_file.as_deref().map(|t| t.trim()).or(token);
    if auth.is_some_and(|t| t.is_empty() || t.bytes().any(|b| b < b' ' || b == 0x7f)) {
        return Err("the authorization token is empty or holds control bytes".into());
    }
    let headers: Vec<(&str, &str)> = auth.map(|t| vec![("Authorization", t)]).unwrap_or_default();
    let a = exchange(ep, "GET", &ep.path, &headers).await?;
    if a.status != 200 {
        return Err(format!(
            "the container credentials endpoint answered {}",
            a.status
        ));
    }
    creds::parse_credentials(&a.body, now).map_err(|e| e.to_string())
}
