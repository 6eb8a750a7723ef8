//! The processes this tool starts: free loopback ports for them, and stopping them.

use std::{net::TcpListener, time::Duration};

use tokio::process::{Child, Command};

/// A free loopback port (the listener is dropped, so another process may take it; the
/// reference's run.sh then fails clearly, and Redis is retried on another).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// SIGTERM to a child this tool started, SIGKILL if it has not exited after `grace`;
/// waits for it either way.
pub async fn terminate(child: &mut Child, grace: Duration) -> anyhow::Result<()> {
    if let Some(pid) = child.id() {
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await;
    }
    if tokio::time::timeout(grace, child.wait()).await.is_err() {
        child.kill().await?;
    }
    Ok(())
}
