//! A TCP forwarder the test opens at a chosen moment: the address a server is told to
//! use refuses connections until [`Forwarder::open`] starts forwarding it to the real
//! service, as a platform that is down at start and comes back later. [`Forwarder::cut`]
//! closes it again, every forwarded connection with it (a service that went away), and
//! [`Forwarder::open_unix`] forwards to a Unix socket (a Docker engine's).

use anyhow::{Context, Result};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::net::{TcpListener, TcpStream, UnixStream};
use tokio::task::JoinHandle;

/// A reserved loopback port that forwards to a target once opened.
pub struct Forwarder {
    port: u16,
    task: Option<JoinHandle<()>>,
    /// The tasks of the forwarded connections, aborted (their sockets closed) by a cut.
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

/// Where a forwarder forwards to.
#[derive(Clone)]
enum Target {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl Forwarder {
    /// Reserves a free port; nothing listens on it until [`Forwarder::open`].
    pub fn closed() -> Result<Self> {
        Ok(Self {
            port: crate::server::free_port()?,
            task: None,
            connections: Arc::default(),
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts listening on the port and forwarding every connection to `target`.
    pub async fn open(&mut self, target: SocketAddr) -> Result<()> {
        self.listen(Target::Tcp(target)).await
    }

    /// Starts listening on the port and forwarding every connection to the Unix
    /// socket at `path`.
    pub async fn open_unix(&mut self, path: impl Into<PathBuf>) -> Result<()> {
        self.listen(Target::Unix(path.into())).await
    }

    async fn listen(&mut self, target: Target) -> Result<()> {
        let listener = TcpListener::bind(("127.0.0.1", self.port))
            .await
            .with_context(|| format!("cannot listen on the reserved port {}", self.port))?;
        let connections = self.connections.clone();
        self.task = Some(tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let target = target.clone();
                let task = tokio::spawn(async move {
                    match target {
                        Target::Tcp(addr) => {
                            if let Ok(mut outbound) = TcpStream::connect(addr).await {
                                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound)
                                    .await;
                            }
                        }
                        Target::Unix(path) => {
                            if let Ok(mut outbound) = UnixStream::connect(path).await {
                                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound)
                                    .await;
                            }
                        }
                    }
                });
                let mut tasks = connections.lock().unwrap_or_else(|e| e.into_inner());
                tasks.retain(|t| !t.is_finished());
                tasks.push(task);
            }
        }));
        Ok(())
    }

    /// Stops listening and closes every forwarded connection: the service looks gone
    /// (connections reset, new ones refused) until [`Forwarder::open`] again.
    pub fn cut(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        for task in self
            .connections
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            task.abort();
        }
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.cut();
    }
}
