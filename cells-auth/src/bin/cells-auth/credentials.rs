//! Where the client ID, client secret and base URL come from: flags first, then the same
//! environment variables as `CellsAuth::from_env`.
//!
//! `CellsAuth::from_env_builder` is not used because it fails when a variable is missing even
//! if a flag supplies the value; the variable lists it reads are public, so the same names in
//! the same order are read here.

use std::ffi::OsString;
use std::fmt;
use std::io::{self, Read};
use std::path::Path;

use cells_auth::{BASE_URL_VARS, CLIENT_ID_VARS, CLIENT_SECRET_VARS};
use secrecy::SecretString;
use secrecy::zeroize::Zeroizing;

use crate::CliError;
use crate::args::CredentialArgs;

/// A secret file larger than this is surely the wrong file; refusing it early gives a clear
/// message instead of a rejected-credentials round trip (and never reads a huge file).
const MAX_SECRET_FILE_BYTES: u64 = 4096;

/// The client credentials and endpoint for one run.
pub(crate) struct Credentials {
    /// The client ID.
    pub(crate) client_id: String,
    /// The client secret, zeroized on drop.
    pub(crate) client_secret: SecretString,
    /// The base URL as given; `None` means the library's default.
    pub(crate) base_url: Option<String>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("base_url", &self.base_url)
            .finish()
    }
}

impl Credentials {
    /// Resolves the credentials from the flags, the process environment and, for
    /// `--client-secret-file -`, standard input.
    pub(crate) fn resolve(args: &CredentialArgs) -> Result<Self, CliError> {
        Self::resolve_with(args, |name| std::env::var_os(name), io::stdin().lock())
    }

    /// [`resolve`](Self::resolve) with the environment and standard input supplied, for tests.
    fn resolve_with(
        args: &CredentialArgs,
        env: impl Fn(&str) -> Option<OsString>,
        stdin: impl Read,
    ) -> Result<Self, CliError> {
        let client_id = match &args.client_id {
            Some(id) => id.clone(),
            None => first_env(&env, &CLIENT_ID_VARS)?.ok_or_else(|| {
                CliError::Config(format!(
                    "no client ID: pass --client-id or set {} (or {})",
                    CLIENT_ID_VARS[0], CLIENT_ID_VARS[1]
                ))
            })?,
        };
        let client_secret = match &args.client_secret_file {
            Some(path) => read_secret_file(path, stdin)?,
            None => first_env(&env, &CLIENT_SECRET_VARS)?
                .map(SecretString::from)
                .ok_or_else(|| {
                    CliError::Config(format!(
                        "no client secret: pass --client-secret-file or set {} (or {})",
                        CLIENT_SECRET_VARS[0], CLIENT_SECRET_VARS[1]
                    ))
                })?,
        };
        let base_url = match &args.base_url {
            Some(url) => Some(url.clone()),
            None => first_env(&env, &BASE_URL_VARS)?,
        };
        Ok(Self {
            client_id,
            client_secret,
            base_url,
        })
    }
}

/// The first of `names` that is set to something other than blanks, as the library does.
fn first_env(
    env: &impl Fn(&str) -> Option<OsString>,
    names: &[&str],
) -> Result<Option<String>, CliError> {
    for name in names {
        let Some(value) = env(name) else { continue };
        // Never echo the value: it may be the secret.
        let value = value.into_string().map_err(|_| {
            CliError::Config(format!(
                "the environment variable {name} is not valid UTF-8"
            ))
        })?;
        if !value.trim().is_empty() {
            return Ok(Some(value));
        }
    }
    Ok(None)
}

/// Reads the secret from `path`, or from `stdin` when `path` is `-`, without one trailing
/// newline (`\n` or `\r\n`), as left by `echo` or an editor.
fn read_secret_file(path: &Path, stdin: impl Read) -> Result<SecretString, CliError> {
    let from_stdin = path.as_os_str() == "-";
    let source = if from_stdin {
        "standard input".to_owned()
    } else {
        path.display().to_string()
    };
    let failed = |error: io::Error| {
        CliError::Config(format!(
            "cannot read the client secret from {source}: {error}"
        ))
    };
    // Read into zeroized buffers: the copies made on the way must not outlive the secret.
    let mut bytes = Zeroizing::new(Vec::new());
    // One byte more than the limit tells a file at the limit from a longer one.
    let limit = MAX_SECRET_FILE_BYTES + 1;
    if from_stdin {
        stdin.take(limit).read_to_end(&mut bytes).map_err(failed)?;
    } else {
        let file = std::fs::File::open(path).map_err(failed)?;
        file.take(limit).read_to_end(&mut bytes).map_err(failed)?;
    }
    if bytes.len() as u64 > MAX_SECRET_FILE_BYTES {
        return Err(CliError::Config(format!(
            "the client secret in {source} is longer than {MAX_SECRET_FILE_BYTES} bytes; is it \
             the right file?"
        )));
    }
    let text = std::str::from_utf8(&bytes).map_err(|_| {
        CliError::Config(format!("the client secret in {source} is not valid UTF-8"))
    })?;
    let text = text
        .strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(text);
    if text.is_empty() {
        return Err(CliError::Config(format!(
            "the client secret in {source} is empty"
        )));
    }
    Ok(SecretString::from(text))
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use secrecy::ExposeSecret as _;

    use super::*;

    fn args(
        client_id: Option<&str>,
        secret_file: Option<&Path>,
        base_url: Option<&str>,
    ) -> CredentialArgs {
        CredentialArgs {
            client_id: client_id.map(str::to_owned),
            client_secret_file: secret_file.map(Path::to_path_buf),
            base_url: base_url.map(str::to_owned),
        }
    }

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<OsString> {
        move |name| {
            pairs
                .iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| OsString::from(value))
        }
    }

    #[test]
    fn flags_win_over_the_environment() {
        let credentials = Credentials::resolve_with(
            &args(
                Some("flag-id"),
                Some(Path::new("-")),
                Some("https://flag.test"),
            ),
            env(&[
                ("ASPOSE_CLOUD_CLIENT_ID", "env-id"),
                ("ASPOSE_CLOUD_CLIENT_SECRET", "env-secret"),
                ("ASPOSE_CLOUD_API_URL", "https://env.test"),
            ]),
            &b"stdin-secret\n"[..],
        )
        .unwrap();
        assert_eq!(credentials.client_id, "flag-id");
        assert_eq!(credentials.client_secret.expose_secret(), "stdin-secret");
        assert_eq!(credentials.base_url.as_deref(), Some("https://flag.test"));
    }

    #[test]
    fn the_environment_fills_in_with_the_library_s_names_and_order() {
        let credentials = Credentials::resolve_with(
            &args(None, None, None),
            env(&[
                ("ASPOSE_CLOUD_CLIENT_ID", "  "),
                ("CellsCloudClientId", "sdk-id"),
                ("CellsCloudClientSecret", "sdk-secret"),
                ("ASPOSE_CLOUD_CLIENT_SECRET", "our-secret"),
            ]),
            io::empty(),
        )
        .unwrap();
        assert_eq!(credentials.client_id, "sdk-id");
        assert_eq!(credentials.client_secret.expose_secret(), "our-secret");
        assert_eq!(credentials.base_url, None);
    }

    #[test]
    fn missing_values_are_configuration_errors_naming_the_fix() {
        let error = Credentials::resolve_with(&args(None, None, None), env(&[]), io::empty())
            .unwrap_err()
            .to_string();
        assert!(error.contains("--client-id"), "{error}");
        assert!(error.contains("ASPOSE_CLOUD_CLIENT_ID"), "{error}");

        let error = Credentials::resolve_with(&args(Some("id"), None, None), env(&[]), io::empty())
            .unwrap_err();
        assert!(matches!(error, CliError::Config(_)));
        assert!(
            error.to_string().contains("--client-secret-file"),
            "{error}"
        );
    }

    #[test]
    fn exactly_one_trailing_newline_is_dropped() {
        for (input, expected) in [
            (&b"s3cret\n"[..], "s3cret"),
            (b"s3cret\r\n", "s3cret"),
            (b"s3cret", "s3cret"),
            (b"s3cret\n\n", "s3cret\n"),
            (b" s3cret \n", " s3cret "),
        ] {
            let secret = read_secret_file(Path::new("-"), input).unwrap();
            assert_eq!(secret.expose_secret(), expected, "{input:?}");
        }
    }

    #[test]
    fn bad_secret_files_are_refused_without_echoing_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");

        std::fs::File::create(&path)
            .unwrap()
            .write_all(b"\xffs3cret")
            .unwrap();
        let error = read_secret_file(&path, io::empty())
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("UTF-8") && !error.contains("s3cret"),
            "{error}"
        );

        std::fs::write(&path, "s3cret".repeat(1000)).unwrap();
        let error = read_secret_file(&path, io::empty())
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("longer") && !error.contains("s3cret"),
            "{error}"
        );

        std::fs::write(&path, "\n").unwrap();
        let error = read_secret_file(&path, io::empty())
            .unwrap_err()
            .to_string();
        assert!(error.contains("empty"), "{error}");

        let missing = dir.path().join("missing");
        let error = read_secret_file(&missing, io::empty()).unwrap_err();
        assert!(matches!(error, CliError::Config(_)));
    }

    #[test]
    fn debug_redacts_the_secret() {
        let credentials = Credentials {
            client_id: "visible-id".to_owned(),
            client_secret: SecretString::from("s3cret"),
            base_url: None,
        };
        let debug = format!("{credentials:?}");
        assert!(
            debug.contains("visible-id") && !debug.contains("s3cret"),
            "{debug}"
        );
    }
}
