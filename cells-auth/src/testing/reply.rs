//! Scripted answers: what the fake server sends for one request.

use std::time::Duration;

/// One scripted answer of [`FakeTokenServer`](super::FakeTokenServer), queued with
/// [`push_reply`](super::FakeTokenServer::push_reply).
///
/// A reply is used for exactly one request, in queue order; when the queue is empty the server
/// issues a token. Delays run on tokio's clock, so they follow paused time in tests.
///
/// ```
/// use std::time::Duration;
/// use cells_auth::testing::Reply;
///
/// let throttled = Reply::status(429).header("Retry-After", "2");
/// let html_outage = Reply::status(503).header("Content-Type", "text/html").body("<h1>down</h1>");
/// let slow = Reply::token().delay(Duration::from_secs(30));
/// let hang_up = Reply::close_connection();
/// ```
#[derive(Debug, Clone)]
pub struct Reply {
    pub(crate) kind: ReplyKind,
    pub(crate) delay: Duration,
    pub(crate) gate: Option<Gate>,
}

/// Holds back the replies given [`Reply::after`] until the test calls [`Gate::open`]: a way to
/// keep a request in flight for exactly as long as a test needs, without sleeping.
///
/// ```
/// use cells_auth::testing::{Gate, Reply};
///
/// let gate = Gate::new();
/// let held = Reply::token().after(&gate); // answered once `gate.open()` is called
/// gate.open();
/// # let _ = held;
/// ```
#[derive(Debug, Clone)]
pub struct Gate {
    open: tokio::sync::watch::Sender<bool>,
}

impl Gate {
    /// A closed gate.
    pub fn new() -> Self {
        Self {
            open: tokio::sync::watch::Sender::new(false),
        }
    }

    /// Releases every reply held by this gate, now and later.
    pub fn open(&self) {
        self.open.send_replace(true);
    }

    pub(crate) async fn wait(&self) {
        let mut open = self.open.subscribe();
        // `self` owns the sender, so waiting can only end with the gate open.
        let _ = open.wait_for(|open| *open).await;
    }
}

impl Default for Gate {
    fn default() -> Self {
        Self::new()
    }
}

#[derive(Debug, Clone)]
pub(crate) enum ReplyKind {
    /// Issue a token as the server would without a script (credentials are still checked).
    Token {
        /// The `expires_in` to send; the server's own when `None`.
        expires_in: Option<serde_json::Value>,
        /// Whether the JWT carries an `exp` claim.
        exp_claim: bool,
    },
    /// A response with this status, these headers and this body.
    Raw(RawReply),
    /// Close the connection without answering.
    Close,
}

#[derive(Debug, Clone)]
pub(crate) struct RawReply {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
    /// Send only this many body bytes (after a `Content-Length` for the whole body), then close.
    pub(crate) truncate_at: Option<usize>,
    /// Send the body one byte at a time with this pause between bytes.
    pub(crate) trickle: Option<Duration>,
}

impl Reply {
    /// Issue a fresh token (the default behaviour), for example to add a [`delay`](Self::delay).
    ///
    /// The token is a JWT whose `exp` claim agrees with the `expires_in` sent.
    pub fn token() -> Self {
        Self::from_kind(ReplyKind::Token {
            expires_in: None,
            exp_claim: true,
        })
    }

    /// Issue a fresh token whose `expires_in` field is this JSON value verbatim (a number, a
    /// string such as `"86399"`, a negative number, `null`, ...).
    ///
    /// The JWT's `exp` claim follows a value that announces a lifetime (a number or a string of
    /// an integer; a negative one gives an `exp` in the past). For any other value, `null`
    /// included, `exp` keeps the server's default lifetime, so a client that falls back to
    /// `exp` still finds one; add [`without_exp_claim`](Self::without_exp_claim) to leave it
    /// out too.
    pub fn token_with_expires_in(expires_in: serde_json::Value) -> Self {
        Self::from_kind(ReplyKind::Token {
            expires_in: Some(expires_in),
            exp_claim: true,
        })
    }

    /// Issues the token without an `exp` claim in its JWT. With
    /// `Reply::token_with_expires_in(serde_json::Value::Null)` the answer announces no lifetime
    /// anywhere. Ignored for replies that issue no token.
    ///
    /// ```
    /// use cells_auth::testing::Reply;
    ///
    /// let no_lifetime = Reply::token_with_expires_in(serde_json::Value::Null).without_exp_claim();
    /// # let _ = no_lifetime;
    /// ```
    pub fn without_exp_claim(mut self) -> Self {
        if let ReplyKind::Token { exp_claim, .. } = &mut self.kind {
            *exp_claim = false;
        }
        self
    }

    /// A response with this status and an empty body.
    pub fn status(status: u16) -> Self {
        Self::from_kind(ReplyKind::Raw(RawReply {
            status,
            headers: Vec::new(),
            body: Vec::new(),
            truncate_at: None,
            trickle: None,
        }))
    }

    /// A response with this status and a JSON body (`Content-Type: application/json`).
    pub fn json(status: u16, body: &serde_json::Value) -> Self {
        Self::status(status)
            .header("Content-Type", "application/json")
            .body(body.to_string())
    }

    /// An OAuth error (RFC 6749 section 5.2), for example `Reply::oauth_error(400, "invalid_client")`.
    pub fn oauth_error(status: u16, error: &str) -> Self {
        Self::json(status, &serde_json::json!({ "error": error }))
    }

    /// Close the connection without sending anything.
    pub fn close_connection() -> Self {
        Self::from_kind(ReplyKind::Close)
    }

    /// Adds a response header. Ignored for [`Reply::token`] and [`Reply::close_connection`].
    pub fn header(mut self, name: &str, value: &str) -> Self {
        if let ReplyKind::Raw(raw) = &mut self.kind {
            raw.headers.push((name.to_owned(), value.to_owned()));
        }
        self
    }

    /// Sets the response body. Ignored for [`Reply::token`] and [`Reply::close_connection`].
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        if let ReplyKind::Raw(raw) = &mut self.kind {
            raw.body = body.into();
        }
        self
    }

    /// Announces the whole body in `Content-Length` but sends only its first `bytes`, then
    /// closes the connection: a connection reset mid-body.
    pub fn truncate_body_at(mut self, bytes: usize) -> Self {
        if let ReplyKind::Raw(raw) = &mut self.kind {
            raw.truncate_at = Some(bytes);
        }
        self
    }

    /// Sends the body one byte at a time, pausing `pause` between bytes.
    pub fn trickle(mut self, pause: Duration) -> Self {
        if let ReplyKind::Raw(raw) = &mut self.kind {
            raw.trickle = Some(pause);
        }
        self
    }

    /// Holds the reply until `gate` is opened (after any [`delay`](Self::delay)).
    pub fn after(mut self, gate: &Gate) -> Self {
        self.gate = Some(gate.clone());
        self
    }

    /// Waits this long before sending anything (slow headers). For
    /// [`close_connection`](Self::close_connection), waits before closing.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    fn from_kind(kind: ReplyKind) -> Self {
        Self {
            kind,
            delay: Duration::ZERO,
            gate: None,
        }
    }
}
