//! Counting the requests in progress on a connection, from the app's call to the end of the
//! response body (see the module above).

use std::{
    pin::Pin,
    rc::Rc,
    task::{Context, Poll},
};

use actix_http::{
    body::{BodySize, MessageBody},
    Request, Response,
};
use actix_service::{apply_fn_factory, Service, ServiceFactory};
use bytes::Bytes;

use super::{BusyGuard, ConnActivity};

/// Wraps the app (`factory`) so that each request counts as in progress on its connection
/// until its response body is done or dropped.
pub fn track_requests<SF, B>(
    factory: SF,
) -> impl ServiceFactory<
    Request,
    Config = SF::Config,
    Response = Response<BusyBody<B>>,
    Error = SF::Error,
    InitError = SF::InitError,
>
where
    SF: ServiceFactory<Request>,
    SF::Response: Into<Response<B>>,
    B: MessageBody,
{
    apply_fn_factory(factory, |req: Request, service: &SF::Service| {
        let guard = BusyGuard::new(req.conn_data::<Rc<ConnActivity>>());
        let call = service.call(req);
        async move {
            let res: Response<B> = call.await?.into();
            Ok(res.map_body(|_, body| BusyBody { body, guard }))
        }
    })
}

pin_project_lite::pin_project! {
    /// A response body that keeps its request counted as in progress until it is done.
    pub struct BusyBody<B> {
        #[pin]
        body: B,
        guard: BusyGuard,
    }
}

impl<B: MessageBody> MessageBody for BusyBody<B> {
    type Error = B::Error;

    fn size(&self) -> BodySize {
        self.body.size()
    }

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, Self::Error>>> {
        self.project().body.poll_next(cx)
    }

    fn try_into_bytes(self) -> Result<Bytes, Self> {
        // Whole in memory: the guard may end now, the write that follows moves the deadline.
        let BusyBody { body, guard } = self;
        body.try_into_bytes().map_err(|body| BusyBody { body, guard })
    }
}
