//! The test proxy (`fixture/proxy.rs`) on its own, between plain TCP upstreams that name
//! themselves: new connections go to the upstream chosen when they open, a cut resets every
//! open connection in both directions, and the proxy keeps accepting after it.

#[allow(dead_code)]
#[path = "fixture/proxy.rs"]
mod proxy;

use std::{io, net::SocketAddr, time::Duration};

use proxy::Proxy;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::mpsc,
};

const PATIENCE: Duration = Duration::from_secs(10);

/// An upstream that greets each connection with `name`, then echoes; reports how each of
/// its connections ended (the read that ended it).
async fn upstream(name: &'static str) -> (SocketAddr, mpsc::UnboundedReceiver<io::Result<usize>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (ended, ends) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let ended = ended.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 64];
                let end = match stream.write_all(name.as_bytes()).await {
                    Err(e) => Err(e),
                    Ok(()) => loop {
                        match stream.read(&mut buf).await {
                            Ok(0) => break Ok(0),
                            Ok(n) => {
                                if let Err(e) = stream.write_all(&buf[..n]).await {
                                    break Err(e);
                                }
                            }
                            Err(e) => break Err(e),
                        }
                    },
                };
                let _ = ended.send(end);
            });
        }
    });
    (addr, ends)
}

async fn read(stream: &mut TcpStream, len: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    tokio::time::timeout(PATIENCE, stream.read_exact(&mut buf))
        .await
        .expect("an answer in time")?;
    Ok(buf)
}

/// Connects through the proxy; returns the stream and the name of the upstream reached.
async fn open(proxy: &Proxy) -> (TcpStream, String) {
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    let name = read(&mut stream, 1).await.expect("greeted");
    (stream, String::from_utf8(name).unwrap())
}

async fn echo(stream: &mut TcpStream, text: &str) -> String {
    stream.write_all(text.as_bytes()).await.unwrap();
    String::from_utf8(read(stream, text.len()).await.expect("echoed")).unwrap()
}

fn is_reset(end: &io::Result<usize>) -> bool {
    matches!(end, Err(e) if e.kind() == io::ErrorKind::ConnectionReset)
}

/// The next read on `stream` fails as a reset connection does.
async fn assert_reset(stream: &mut TcpStream) {
    let mut buf = [0u8; 8];
    let end = tokio::time::timeout(PATIENCE, stream.read(&mut buf))
        .await
        .expect("closed in time");
    assert!(is_reset(&end), "{end:?}");
}

async fn ended(ends: &mut mpsc::UnboundedReceiver<io::Result<usize>>) -> io::Result<usize> {
    tokio::time::timeout(PATIENCE, ends.recv())
        .await
        .expect("an upstream connection ended in time")
        .unwrap()
}

#[tokio::test]
async fn connections_go_where_chosen_and_a_cut_resets_them_all() {
    let (a, mut a_ends) = upstream("A").await;
    let (b, mut b_ends) = upstream("B").await;
    let proxy = Proxy::start(a).await;
    assert_eq!(proxy.url(), format!("http://{}", proxy.addr));

    let (mut first, reached) = open(&proxy).await;
    assert_eq!(reached, "A");
    assert_eq!(echo(&mut first, "hello").await, "hello");
    proxy.set_upstream(b);
    let (mut second, reached) = open(&proxy).await;
    assert_eq!(reached, "B", "a new connection goes to the new upstream");
    assert_eq!(
        echo(&mut first, "still").await,
        "still",
        "an open one stays"
    );

    proxy.cut().await;
    assert_reset(&mut first).await;
    assert_reset(&mut second).await;
    assert!(
        is_reset(&ended(&mut a_ends).await),
        "the upstream side is reset too"
    );
    assert!(is_reset(&ended(&mut b_ends).await));

    let (mut third, reached) = open(&proxy).await;
    assert_eq!(reached, "B", "accepting after a cut");
    assert_eq!(echo(&mut third, "again").await, "again");
    // A connection that ends on its own ends on the other side too.
    drop(third);
    assert!(matches!(ended(&mut b_ends).await, Ok(0)));
}

#[tokio::test]
async fn an_unreachable_upstream_resets_the_client_and_dropping_the_proxy_cuts() {
    let (a, mut a_ends) = upstream("A").await;
    let nowhere = {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap()
    };
    let proxy = Proxy::start(nowhere).await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    assert_reset(&mut stream).await;

    proxy.set_upstream(a);
    let (mut open, _) = open(&proxy).await;
    drop(proxy);
    assert_reset(&mut open).await;
    assert!(is_reset(&ended(&mut a_ends).await));
}
