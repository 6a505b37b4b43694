//! The ceiling: a bare handler on the same stack as the API server (tokio, hyper-util's auto
//! connection builder, one task per connection), answering a fixed small JSON body.

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::net::SocketAddr;
use tokio::sync::oneshot;

pub async fn start() -> anyhow::Result<(SocketAddr, oneshot::Sender<()>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop, mut stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let builder = auto::Builder::new(TokioExecutor::new());
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    let _ = stream.set_nodelay(true);
                    let svc = hyper::service::service_fn(|_req: Request<hyper::body::Incoming>| async {
                        let mut r = Response::new(Full::new(Bytes::from_static(br#"{"requestId":"x"}"#)));
                        r.headers_mut().insert("content-type", hyper::header::HeaderValue::from_static("application/json"));
                        Ok::<_, std::convert::Infallible>(r)
                    });
                    let conn = builder.serve_connection(TokioIo::new(stream), svc).into_owned();
                    tokio::spawn(async move { let _ = conn.await; });
                }
                _ = &mut stopped => break,
            }
        }
    });
    Ok((addr, stop))
}
