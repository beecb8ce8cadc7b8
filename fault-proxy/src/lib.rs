//! A TCP proxy for tests that puts real network faults between a client and
//! a real server, switchable at run time.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use fault_proxy::{FaultProxy, Mode};
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! // A tiny echo server stands in for the real one here.
//! let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
//! let server = upstream.local_addr().unwrap();
//! tokio::spawn(async move {
//!     let (mut s, _) = upstream.accept().await.unwrap();
//!     let mut buf = [0u8; 4];
//!     s.read_exact(&mut buf).await.unwrap();
//!     s.write_all(&buf).await.unwrap();
//! });
//!
//! let proxy = FaultProxy::start(server).await.unwrap();
//! let mut client = tokio::net::TcpStream::connect(proxy.addr()).await.unwrap();
//! client.write_all(b"ping").await.unwrap();
//! let mut back = [0u8; 4];
//! client.read_exact(&mut back).await.unwrap();
//! assert_eq!(&back, b"ping");
//!
//! proxy.set(Mode::Refuse).await;
//! assert!(tokio::net::TcpStream::connect(proxy.addr()).await.is_err());
//! # });
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{Mutex, watch};

/// What the proxy does to traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Forward everything.
    Pass,
    /// Stop listening: new connections are refused by the kernel; open ones
    /// keep working.
    Refuse,
    /// Reset every open connection (TCP RST), and reset new ones as soon as
    /// they are accepted.
    Reset,
    /// Accept and hold connections, never forwarding a byte either way:
    /// a server that hangs.
    Blackhole,
    /// Forward, delaying every chunk by this long in each direction.
    Latency(Duration),
}

/// A running proxy. Stops when dropped.
pub struct FaultProxy {
    addr: SocketAddr,
    mode: watch::Sender<Mode>,
    listener: Arc<Mutex<Option<tokio::task::JoinHandle<()>>>>,
    upstream: SocketAddr,
    connections: Arc<AtomicU64>,
    /// Connections open right now.
    open: Arc<AtomicU64>,
}

impl FaultProxy {
    /// Starts a proxy on a free loopback port, forwarding to `upstream`.
    pub async fn start(upstream: SocketAddr) -> io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (mode, _) = watch::channel(Mode::Pass);
        let connections = Arc::new(AtomicU64::new(0));
        let open = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(accept_loop(
            listener,
            upstream,
            mode.subscribe(),
            (connections.clone(), open.clone()),
        ));
        Ok(FaultProxy {
            addr,
            mode,
            listener: Arc::new(Mutex::new(Some(task))),
            upstream,
            connections,
            open,
        })
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections accepted so far (proof that traffic goes through here).
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::SeqCst)
    }

    /// The current mode.
    pub fn mode(&self) -> Mode {
        *self.mode.borrow()
    }

    /// Switches mode; takes effect for open connections at once.
    pub async fn set(&self, mode: Mode) {
        let mut listener = self.listener.lock().await;
        if mode == Mode::Refuse {
            if let Some(task) = listener.take() {
                task.abort();
                let _ = task.await;
            }
        } else if listener.is_none() {
            // Listen again on the same port.
            let socket = loop {
                match rebind(self.addr) {
                    Ok(l) => break l,
                    Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
                }
            };
            *listener = Some(tokio::spawn(accept_loop(
                socket,
                self.upstream,
                self.mode.subscribe(),
                (self.connections.clone(), self.open.clone()),
            )));
        }
        self.mode.send_replace(mode);
        if mode == Mode::Reset {
            // Every open connection is gone before this returns, so a mode
            // set right after (Refuse, say) cannot hide the reset from a
            // connection that had not yet seen it.
            let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
            while self.open.load(Ordering::SeqCst) > 0 && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Ok(mut l) = self.listener.try_lock()
            && let Some(task) = l.take()
        {
            task.abort();
        }
        // Open connections end with the mode channel.
        self.mode.send_replace(Mode::Reset);
    }
}

fn rebind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

async fn accept_loop(
    listener: TcpListener, upstream: SocketAddr, mode: watch::Receiver<Mode>,
    (count, open): (Arc<AtomicU64>, Arc<AtomicU64>),
) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        count.fetch_add(1, Ordering::SeqCst);
        let _ = client.set_nodelay(true);
        let open = Open::new(open.clone());
        let mode = mode.clone();
        tokio::spawn(async move {
            serve(client, upstream, mode).await;
            drop(open);
        });
    }
}

/// Counts a connection as open while it lives.
struct Open(Arc<AtomicU64>);

impl Open {
    fn new(count: Arc<AtomicU64>) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Open(count)
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn reset(stream: TcpStream) {
    // Linger 0: closing sends RST instead of FIN.
    let _ = stream.set_zero_linger();
    drop(stream);
}

async fn serve(client: TcpStream, upstream: SocketAddr, mut mode: watch::Receiver<Mode>) {
    let current = *mode.borrow_and_update();
    match current {
        Mode::Reset | Mode::Refuse => return reset(client),
        Mode::Blackhole => {
            // Hold it open, answer nothing, until the mode changes to one
            // that ends connections.
            hold(client, mode).await;
            return;
        }
        _ => {}
    }
    let Ok(server) = TcpStream::connect(upstream).await else {
        return reset(client);
    };
    let _ = server.set_nodelay(true);
    // Any close from here on is abrupt (RST), as when a server dies.
    let _ = client.set_zero_linger();
    let _ = server.set_zero_linger();
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    let up = tokio::spawn(pump(cr, sw, mode.clone()));
    let down = tokio::spawn(pump(sr, cw, mode.clone()));
    // Wait for either side to finish, or a reset.
    loop {
        tokio::select! {
            _ = mode.changed() => {
                if *mode.borrow() == Mode::Reset {
                    break;
                }
            }
            _ = wait_both(&up, &down) => break,
        }
    }
    up.abort();
    down.abort();
}

async fn wait_both(a: &tokio::task::JoinHandle<()>, b: &tokio::task::JoinHandle<()>) {
    while !(a.is_finished() || b.is_finished()) {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn hold(client: TcpStream, mut mode: watch::Receiver<Mode>) {
    let mut client = client;
    let mut sink = [0u8; 4096];
    loop {
        tokio::select! {
            changed = mode.changed() => {
                if changed.is_err() || matches!(*mode.borrow(), Mode::Reset) {
                    return reset(client);
                }
            }
            n = client.read(&mut sink) => {
                if matches!(n, Ok(0) | Err(_)) {
                    return;
                }
            }
        }
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf, mut to: tokio::net::tcp::OwnedWriteHalf,
    mode: watch::Receiver<Mode>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let current = *mode.borrow();
        match current {
            Mode::Pass | Mode::Refuse => {}
            Mode::Latency(d) => tokio::time::sleep(d).await,
            Mode::Blackhole => continue,
            Mode::Reset => break,
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}
