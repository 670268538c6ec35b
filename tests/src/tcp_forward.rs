//! A TCP forwarder the test opens at a chosen moment: the address a server is told to
//! use refuses connections until [`Forwarder::open`] starts forwarding it to the real
//! service, as a platform that is down at start and comes back later.

use anyhow::{Context, Result};
use std::net::SocketAddr;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A reserved loopback port that forwards to a target once opened.
pub struct Forwarder {
    port: u16,
    task: Option<JoinHandle<()>>,
}

impl Forwarder {
    /// Reserves a free port; nothing listens on it until [`Forwarder::open`].
    pub fn closed() -> Result<Self> {
        Ok(Self {
            port: crate::server::free_port()?,
            task: None,
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts listening on the port and forwarding every connection to `target`.
    pub async fn open(&mut self, target: SocketAddr) -> Result<()> {
        let listener = TcpListener::bind(("127.0.0.1", self.port))
            .await
            .with_context(|| format!("cannot listen on the reserved port {}", self.port))?;
        self.task = Some(tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        }));
        Ok(())
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
