//! Get and keep an access token for Aspose.Cells Cloud.
//!
//! ```text
//! cargo run -p cells-auth --example quickstart
//! ```
//!
//! With `ASPOSE_CLOUD_CLIENT_ID` and `ASPOSE_CLOUD_CLIENT_SECRET` set (or the official SDKs'
//! `CellsCloudClientId` and `CellsCloudClientSecret`), it asks Aspose Cloud for a token. Without
//! them it runs offline against `cells_auth::testing::FakeTokenServer`, a token server on
//! 127.0.0.1, and shows the caching and invalidation that the real service would see.
//!
//! It prints when tokens expire, never the tokens themselves.

use std::time::SystemTime;

use cells_auth::testing::FakeTokenServer;
use cells_auth::{AccessToken, CLIENT_ID_VARS, CellsAuth};

type BoxError = Box<dyn std::error::Error>;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let has_credentials = CLIENT_ID_VARS
        .iter()
        .any(|name| std::env::var(name).is_ok_and(|value| !value.trim().is_empty()));
    let outcome = if has_credentials {
        against_aspose_cloud().await
    } else {
        offline().await
    };
    if let Err(error) = outcome {
        // `Display`, not `Debug`: cells-auth's messages say what to fix.
        eprintln!("error: {error}");
        std::process::exit(1);
    }
}

async fn against_aspose_cloud() -> Result<(), BoxError> {
    // Reads the client ID and secret, and `ASPOSE_CLOUD_API_URL` if set; a missing secret is
    // an error that names the variables to set.
    let auth = CellsAuth::from_env()?;
    println!("Asking {} for a token ...", auth.base_url());
    let token = auth.token().await?;
    println!("Got {}", describe(&token));
    Ok(())
}

async fn offline() -> Result<(), BoxError> {
    println!(
        "No credentials in the environment: running offline against a fake token server.\n\
         (Set ASPOSE_CLOUD_CLIENT_ID and ASPOSE_CLOUD_CLIENT_SECRET to use Aspose Cloud.)\n"
    );
    let server = FakeTokenServer::start().await?;

    // 1. Build a provider. This checks the configuration and sends nothing.
    let auth = CellsAuth::builder()
        .client_id(FakeTokenServer::CLIENT_ID)
        .client_secret(FakeTokenServer::CLIENT_SECRET)
        .base_url(server.base_url())
        .build()?;
    println!("1. Built a provider for {}", auth.base_url());
    println!("   token requests so far: {}", server.request_count());

    // 2. The first call fetches a token.
    let token = auth.token().await?;
    println!("2. Got {}", describe(&token));
    println!("   token requests so far: {}", server.request_count());

    // 3. Later calls are served from the cache until shortly before expiry.
    let again = auth.token().await?;
    assert_eq!(again.secret(), token.secret());
    assert_eq!(server.request_count(), 1);
    println!("3. Asked again: the same token, from the cache");
    println!("   token requests so far: {}", server.request_count());

    // 4. When the API answers 401, report the token; the next call fetches a new one.
    auth.invalidate(&token);
    let fresh = auth.token().await?;
    assert_ne!(fresh.secret(), token.secret());
    assert_eq!(server.request_count(), 2);
    println!(
        "4. Invalidated it (as after a 401): got a new {}",
        describe(&fresh)
    );
    println!("   token requests so far: {}", server.request_count());

    // 5. Tokens never show in `Debug` output or logs.
    println!("5. Debug output: {fresh:?}");
    Ok(())
}

/// What is safe to print about a token: its length and expiry, not its value.
fn describe(token: &AccessToken) -> String {
    let remaining = token
        .expires_at()
        .duration_since(SystemTime::now())
        .map_or(0, |left| left.as_secs());
    format!(
        "token of {} characters, valid until {} (in {remaining} s)",
        token.secret().len(),
        httpdate::fmt_http_date(token.expires_at()),
    )
}
