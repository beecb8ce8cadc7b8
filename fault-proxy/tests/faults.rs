//! Each mode does to a live connection what it says.

use std::time::Duration;

use fault_proxy::{FaultProxy, Mode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// An echo server.
async fn echo() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

async fn round_trip(c: &mut TcpStream) -> std::io::Result<[u8; 2]> {
    c.write_all(b"hi").await?;
    let mut b = [0u8; 2];
    tokio::time::timeout(Duration::from_millis(300), c.read_exact(&mut b))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer"))??;
    Ok(b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_cuts_open_connections_and_refuses_new_ones() {
    let proxy = FaultProxy::start(echo().await).await.unwrap();
    let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(&round_trip(&mut c).await.unwrap(), b"hi");
    proxy.set(Mode::Reset).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(round_trip(&mut c).await.is_err());
    // A new connection is reset: while connecting, or at its first exchange.
    if let Ok(mut fresh) = TcpStream::connect(proxy.addr()).await {
        assert!(round_trip(&mut fresh).await.is_err());
    }
    proxy.set(Mode::Pass).await;
    let mut again = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(&round_trip(&mut again).await.unwrap(), b"hi");
    assert_eq!(proxy.connections(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blackhole_answers_nothing_and_refuse_closes_the_port() {
    let proxy = FaultProxy::start(echo().await).await.unwrap();
    proxy.set(Mode::Blackhole).await;
    let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
    let err = round_trip(&mut c).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
    proxy.set(Mode::Refuse).await;
    assert!(TcpStream::connect(proxy.addr()).await.is_err());
    proxy.set(Mode::Pass).await;
    let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(&round_trip(&mut c).await.unwrap(), b"hi");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_delays_but_delivers() {
    let proxy = FaultProxy::start(echo().await).await.unwrap();
    proxy.set(Mode::Latency(Duration::from_millis(400))).await;
    let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
    // Past the 300 ms the helper waits: each direction adds 400 ms.
    assert!(round_trip(&mut c).await.is_err());
    let mut b = [0u8; 2];
    c.read_exact(&mut b).await.unwrap();
    assert_eq!(&b, b"hi", "the answer arrives late, intact");
}
