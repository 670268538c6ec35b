//! `chorus healthcheck`: one `GET /healthz` of a running server, for container health
//! checks — the image has no shell and no curl. Plain HTTP/1.1 over a TCP stream: the
//! binary crate needs no HTTP client for one status line.

use anyhow::{Context, bail};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A server that has not answered by then is unhealthy.
const TIMEOUT: Duration = Duration::from_secs(5);

/// The URL of the server this config describes: `server.listen`, asked on loopback
/// when it listens on every interface (`0.0.0.0`, `[::]`).
pub fn own_url(listen: SocketAddr) -> String {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, listen.port()))
}

/// Asks `{base}/healthz` (`base` is `http://HOST[:PORT]`); fine when it answers 200.
pub async fn check(base: &str) -> anyhow::Result<()> {
    let authority = base
        .strip_prefix("http://")
        .with_context(|| format!("`{base}` is not an http://HOST:PORT URL"))?
        .trim_end_matches('/');
    if authority.is_empty() || authority.contains('/') {
        bail!("`{base}` is not an http://HOST:PORT URL (no path)");
    }
    let address = if authority
        .rsplit_once(':')
        .is_some_and(|(_, port)| port.parse::<u16>().is_ok())
    {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let status = tokio::time::timeout(TIMEOUT, status_of(&address, authority))
        .await
        .with_context(|| format!("{base}/healthz did not answer within {TIMEOUT:?}"))?
        .with_context(|| format!("asking {base}/healthz"))?;
    if status != 200 {
        bail!("{base}/healthz answered HTTP {status}");
    }
    Ok(())
}

/// The status code of `GET /healthz` at `address`.
async fn status_of(address: &str, host: &str) -> anyhow::Result<u16> {
    let mut stream = tokio::net::TcpStream::connect(address).await?;
    let request = format!("GET /healthz HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut head = Vec::new();
    let mut buf = [0u8; 256];
    while !head.windows(2).any(|w| w == b"\r\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 || head.len() > 4096 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    let line = line.lines().next().unwrap_or_default();
    // "HTTP/1.1 200 OK"
    match line.split_whitespace().collect::<Vec<_>>()[..] {
        [version, code, ..] if version.starts_with("HTTP/") => code
            .parse()
            .with_context(|| format!("a status line with a bad code: {line:?}")),
        _ => bail!("not an HTTP answer: {line:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_url_asks_loopback_for_an_unspecified_address() {
        assert_eq!(
            own_url("0.0.0.0:3000".parse().unwrap()),
            "http://127.0.0.1:3000"
        );
        assert_eq!(own_url("[::]:80".parse().unwrap()), "http://[::1]:80");
        assert_eq!(
            own_url("10.1.2.3:8080".parse().unwrap()),
            "http://10.1.2.3:8080"
        );
    }

    #[tokio::test]
    async fn a_200_is_healthy_and_anything_else_is_not() {
        async fn serve(answer: &'static str) -> String {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(async move {
                let (mut socket, _) = listener.accept().await.unwrap();
                let mut buf = [0u8; 1024];
                let _ = socket.read(&mut buf).await;
                let _ = socket.write_all(answer.as_bytes()).await;
            });
            format!("http://{addr}")
        }
        check(&serve("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await)
            .await
            .unwrap();
        let err = check(&serve("HTTP/1.1 503 Service Unavailable\r\n\r\n").await)
            .await
            .unwrap_err();
        assert!(format!("{err:#}").contains("HTTP 503"), "{err:#}");
        let err = check(&serve("SSH-2.0-OpenSSH\r\n").await)
            .await
            .unwrap_err();
        assert!(format!("{err:#}").contains("not an HTTP answer"), "{err:#}");
        let err = check("https://example.com").await.unwrap_err();
        assert!(format!("{err:#}").contains("not an http://"), "{err:#}");
    }
}
