//! The local front door: a plain HTTP/1.1 server for trying the proxy without AWS.
//! It prints the address it bound (port 0 picks a free one, which the tests rely on) and stops
//! gracefully on Ctrl-C or SIGTERM, letting open streams finish.

use std::net::SocketAddr;

use axum::Router;
use axum::serve::ListenerExt;
use tokio::net::TcpListener;

pub async fn serve(listen_addr: SocketAddr, app: Router) -> std::io::Result<()> {
    let listener = TcpListener::bind(listen_addr).await?;
    let bound = listener.local_addr()?;
    tracing::info!("openai-proxy listening on http://{bound} (SDK base_url: http://{bound}/v1)");
    // Small SSE frames must not wait for Nagle's algorithm on the client side either.
    let listener = listener.tap_io(|stream| {
        if let Err(err) = stream.set_nodelay(true) {
            tracing::debug!("could not set TCP_NODELAY: {err}");
        }
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
