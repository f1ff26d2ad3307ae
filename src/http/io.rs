//! A byte-stream wrapper that bounds how long each response may take to write.
//!
//! hyper bounds how long a client may take to send a request head, but not how long it may
//! take to read a response: without this, a client that stops reading keeps its connection
//! slot forever. The deadline is absolute: it starts with the first write of a response and
//! is not pushed back by progress, so a client that reads one byte now and then (just enough
//! to keep each write moving) is cut off like one that reads nothing.
//!
//! A response begins when the server's service is called for a request ([`ResponseStart`]);
//! the deadline restarts there only if everything written before has been handed to the
//! kernel (hyper flushes the stream only once its own write buffer is empty). So pipelined
//! requests answered while earlier output is still stuck share the earlier deadline.
//! Generic over the stream so that a TLS stream can be wrapped the same way (the handshake and
//! anything written before the first request count against the first deadline).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// Tells a [`WriteTimeout`] that a new response begins (cheap to clone, shared with the service).
#[derive(Clone, Debug, Default)]
pub(super) struct ResponseStart(Arc<AtomicBool>);

impl ResponseStart {
    /// A request has been received: its response gets a deadline of its own.
    pub(super) fn begin(&self) {
        self.0.store(true, Ordering::Release);
    }
}

/// A stream whose writes fail with `TimedOut` once the current response has been writing for
/// `timeout`.
pub(super) struct WriteTimeout<S> {
    inner: S,
    timeout: Duration,
    /// The current response's deadline, from its first write.
    deadline: Option<Pin<Box<Sleep>>>,
    /// Whether everything written so far has been flushed (hyper's buffer is empty).
    drained: bool,
    start: ResponseStart,
}

impl<S> WriteTimeout<S> {
    /// Wraps a stream.
    pub(super) fn new(inner: S, timeout: Duration) -> Self {
        Self {
            inner,
            timeout,
            deadline: None,
            drained: true,
            start: ResponseStart::default(),
        }
    }

    /// The handle the service uses to mark the start of each response.
    pub(super) fn response_start(&self) -> ResponseStart {
        self.start.clone()
    }

    /// Before a write: a new response whose predecessors are all flushed gets a new deadline.
    fn begin_write(&mut self) {
        if self.start.0.swap(false, Ordering::AcqRel) && self.drained {
            self.deadline = None;
        }
        self.drained = false;
        if self.deadline.is_none() {
            self.deadline = Some(Box::pin(tokio::time::sleep(self.timeout)));
        }
    }

    /// Passes a ready result through; on pending, checks the deadline (it is never reset by
    /// progress).
    fn check<T>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if poll.is_ready() {
            return poll;
        }
        let expired = self
            .deadline
            .as_mut()
            .is_some_and(|deadline| deadline.as_mut().poll(cx).is_ready());
        if expired {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "client did not read the response in time",
            )));
        }
        Poll::Pending
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteTimeout<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteTimeout<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.begin_write();
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.check(cx, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.begin_write();
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.check(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        if matches!(poll, Poll::Ready(Ok(()))) {
            self.drained = true;
        }
        self.check(cx, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.deadline.is_none() {
            self.deadline = Some(Box::pin(tokio::time::sleep(self.timeout)));
        }
        let poll = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.check(cx, poll)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_write_nobody_reads_times_out() {
        let (near, _far) = tokio::io::duplex(16);
        let mut stream = WriteTimeout::new(near, Duration::from_millis(20));
        let error = stream.write_all(&[0u8; 64]).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test]
    async fn writes_that_progress_succeed() {
        let (near, mut far) = tokio::io::duplex(16);
        let reader = tokio::spawn(async move {
            let mut all = Vec::new();
            far.read_to_end(&mut all).await.map(|_| all)
        });
        let mut stream = WriteTimeout::new(near, Duration::from_secs(30));
        stream.write_all(&[7u8; 4096]).await.unwrap();
        stream.shutdown().await.unwrap();
        drop(stream);
        assert_eq!(reader.await.unwrap().unwrap(), vec![7u8; 4096]);
    }

    /// A reader that takes one byte every 5 ms keeps every write moving (the old per-write
    /// timer never fired), but the response would take 2 s: the 100 ms deadline cuts it off.
    #[tokio::test]
    async fn a_response_read_a_byte_at_a_time_times_out_however_steady() {
        let (near, mut far) = tokio::io::duplex(1);
        let reader = tokio::spawn(async move {
            let mut byte = [0u8; 1];
            let mut read = 0usize;
            while far.read(&mut byte).await.is_ok_and(|n| n == 1) {
                read += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            read
        });
        let mut stream = WriteTimeout::new(near, Duration::from_millis(100));
        let error = tokio::time::timeout(Duration::from_secs(10), stream.write_all(&[1u8; 400]))
            .await
            .expect("the write ends")
            .unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        drop(stream);
        let read = reader.await.unwrap();
        assert!(read < 400, "the client got the whole response: {read}");
    }

    /// Each response gets its own deadline once the previous one is flushed: a keep-alive
    /// connection is not cut off because its earlier responses add up to more than the timeout.
    #[tokio::test]
    async fn each_response_after_a_flush_gets_a_new_deadline() {
        let (near, mut far) = tokio::io::duplex(64);
        let mut stream = WriteTimeout::new(near, Duration::from_millis(200));
        let start = stream.response_start();
        for _ in 0..3 {
            start.begin();
            // Only 32 bytes fit at first; the rest waits for the reader, 150 ms later.
            let reader = async {
                tokio::time::sleep(Duration::from_millis(150)).await;
                let mut all = [0u8; 96];
                far.read_exact(&mut all).await.map(|_| ())
            };
            let (written, read) = tokio::join!(
                async {
                    stream.write_all(&[3u8; 96]).await?;
                    stream.flush().await
                },
                reader
            );
            written.unwrap();
            read.unwrap();
        }
    }
}
