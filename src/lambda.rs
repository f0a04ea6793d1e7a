//! The Lambda front door: the router as a response-streaming handler, polled by the runtime
//! (`_concurrent`, so Lambda Managed Instances get one worker per `AWS_LAMBDA_MAX_CONCURRENCY`).
//!
//! One failed invocation costs that invocation, never the process. The runtime ends its loop when
//! posting a response to the Runtime API fails (its connection closed, a broken pipe), which on
//! Lambda throws the execution environment away: a cold start for the next request, and under
//! Managed Instances every other invocation it was serving. That happens when the function URL's
//! client leaves before the stream is done (`cargo lambda watch` closes the response then; AWS
//! documents that a real function URL keeps a streamed invocation running instead). The failure
//! is logged with the invocation's id and the runtime takes the next event. A Runtime API that is
//! really gone still ends a one-worker process at its next poll for an event; lambda_runtime's
//! concurrent workers (Managed Instances) retry that poll instead, as they always have.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::Router;
use lambda_http::Error as BoxError;
use lambda_http::lambda_runtime::{LambdaInvocation, Service};
use lambda_http::tower::layer::layer_fn;

pub async fn serve(app: Router) -> Result<(), BoxError> {
    lambda_http::streaming_runtime_concurrent(app)
        .layer(layer_fn(OneInvocationFails))
        .run_concurrent()
        .await
}

/// Wraps the runtime's whole stack for one invocation (the handler, and posting its response):
/// an error is logged and that invocation is over.
#[derive(Clone)]
pub struct OneInvocationFails<S>(pub S);

impl<S> Service<LambdaInvocation> for OneInvocationFails<S>
where
    S: Service<LambdaInvocation, Response = (), Error = BoxError>,
    S::Future: Send + 'static,
{
    type Response = ();
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, invocation: LambdaInvocation) -> Self::Future {
        let request_id = invocation.context.request_id.clone();
        let answered = self.0.call(invocation);
        Box::pin(async move {
            if let Err(err) = answered.await {
                tracing::error!(
                    requestId = %request_id,
                    error = %err,
                    "the response to this invocation could not be delivered to the Lambda Runtime API (did its client leave?); taking the next event"
                );
            }
            Ok(())
        })
    }
}
