//! One HTTP/1.1 connection of the fake server: read a request, answer it, repeat.
//!
//! Written on raw sockets rather than a server framework so that faults a framework would
//! refuse to produce (a body cut short, a trickle, a silent hang-up) are one line each.
//!
//! What to answer is decided by the caller's `answer` function (the server's state), so this
//! module knows the wire and nothing of the server: `server` uses it, not the other way round.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::RecordedRequest;
use super::reply::{Gate, RawReply};

/// Request heads larger than this are refused; real token requests are a few hundred bytes.
const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Request bodies larger than this are refused.
const MAX_BODY_BYTES: usize = 64 * 1024;

/// What a connection does with one request.
pub(crate) enum Action {
    Send(RawReply),
    Close,
}

/// Serves requests on `stream` until the peer closes it: each request goes to `answer`, which
/// records it and returns a delay, a gate to wait for, and what to do.
pub(crate) async fn serve<S, F>(mut stream: S, answer: F) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: Fn(RecordedRequest) -> (Duration, Option<Gate>, Action),
{
    let mut buffer = Vec::with_capacity(4096);
    loop {
        let Some(request) = read_request(&mut stream, &mut buffer).await? else {
            return Ok(());
        };
        let (delay, gate, action) = answer(request);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if let Some(gate) = gate {
            gate.wait().await;
        }
        match action {
            Action::Close => return stream.shutdown().await,
            Action::Send(raw) => {
                if !write_reply(&mut stream, &raw).await? {
                    return Ok(());
                }
            }
        }
    }
}

/// Reads one request; `None` when the peer closed the connection between requests.
async fn read_request<S>(
    stream: &mut S,
    buffer: &mut Vec<u8>,
) -> std::io::Result<Option<RecordedRequest>>
where
    S: AsyncRead + Unpin,
{
    let head_len = loop {
        if let Some(end) = find_head_end(buffer) {
            break end;
        }
        if buffer.len() > MAX_HEAD_BYTES {
            return Err(invalid("request head too large"));
        }
        if stream.read_buf(buffer).await? == 0 {
            return Ok(None);
        }
    };

    let mut header_slots = [httparse::EMPTY_HEADER; 64];
    let mut parsed = httparse::Request::new(&mut header_slots);
    parsed
        .parse(&buffer[..head_len])
        .map_err(|err| invalid(&format!("bad request head: {err}")))?;
    let method = parsed.method.unwrap_or_default().to_owned();
    let target = parsed.path.unwrap_or_default().to_owned();
    let headers: Vec<(String, String)> = parsed
        .headers
        .iter()
        .map(|header| {
            (
                header.name.to_owned(),
                String::from_utf8_lossy(header.value).into_owned(),
            )
        })
        .collect();
    let content_length = headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        .map(|(_, value)| value.trim().parse::<usize>())
        .transpose()
        .map_err(|_| invalid("bad Content-Length"))?
        .unwrap_or(0);
    if content_length > MAX_BODY_BYTES {
        return Err(invalid("request body too large"));
    }

    buffer.drain(..head_len);
    while buffer.len() < content_length {
        if stream.read_buf(buffer).await? == 0 {
            return Err(invalid("connection closed inside the request body"));
        }
    }
    let body: Vec<u8> = buffer.drain(..content_length).collect();
    Ok(Some(RecordedRequest {
        method,
        target,
        headers,
        body,
    }))
}

/// Writes a reply; `false` when the connection must close afterwards (a truncated body).
async fn write_reply<S>(stream: &mut S, reply: &RawReply) -> std::io::Result<bool>
where
    S: AsyncWrite + Unpin,
{
    let mut head = format!("HTTP/1.1 {} {}\r\n", reply.status, reason(reply.status));
    for (name, value) in &reply.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", reply.body.len()));
    stream.write_all(head.as_bytes()).await?;

    let sent = reply
        .truncate_at
        .unwrap_or(reply.body.len())
        .min(reply.body.len());
    match reply.trickle {
        Some(pause) => trickle(stream, &reply.body[..sent], pause).await?,
        None => stream.write_all(&reply.body[..sent]).await?,
    }
    stream.flush().await?;
    if sent < reply.body.len() {
        stream.shutdown().await?;
        return Ok(false);
    }
    Ok(true)
}

async fn trickle<S>(stream: &mut S, body: &[u8], pause: Duration) -> std::io::Result<()>
where
    S: AsyncWrite + Unpin,
{
    for byte in body {
        stream.write_all(std::slice::from_ref(byte)).await?;
        stream.flush().await?;
        tokio::time::sleep(pause).await;
    }
    Ok(())
}

fn find_head_end(buffer: &[u8]) -> Option<usize> {
    buffer
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .map(|start| start + 4)
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        301 => "Moved Permanently",
        302 => "Found",
        307 => "Temporary Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

fn invalid(message: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, message.to_owned())
}
