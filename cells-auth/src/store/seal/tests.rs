use std::time::{Duration, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use proptest::prelude::*;
use secrecy::{ExposeSecret as _, SecretString};

use super::*;

const BASE_URL: &str = "https://api.aspose.cloud";
const CLIENT_ID: &str = "client-id-1234";
const SECRET: &str = "client-secret-abcdefghijklmnop";
const TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzZWNyZXQtdG9rZW4ifQ.c2lnbmF0dXJl";

fn sealer() -> Sealer {
    Sealer::new(BASE_URL, CLIENT_ID, SECRET)
}

fn token_entry() -> TokenEntry {
    TokenEntry {
        token: SecretString::from(TOKEN),
        expires_at: UNIX_EPOCH + Duration::new(1_900_003_600, 5),
        issued_at: UNIX_EPOCH + Duration::from_secs(1_900_000_000),
    }
}

fn latch_entry() -> LatchEntry {
    LatchEntry {
        until: UNIX_EPOCH + Duration::from_secs(1_900_000_600),
        kind: LatchKind::CredentialsRejected {
            status: 400,
            code: Some("invalid_client".to_owned()),
        },
    }
}

fn sealed_token(sealer: &Sealer) -> Vec<u8> {
    sealer
        .seal_token(&sealer.token_key(), &token_entry())
        .unwrap()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

#[test]
fn entries_round_trip_between_sealers_of_the_same_credentials() {
    let (writer, reader) = (sealer(), sealer());
    assert_eq!(writer.token_key(), reader.token_key());
    assert_eq!(writer.latch_key(), reader.latch_key());

    let opened = reader
        .open_token(&reader.token_key(), &sealed_token(&writer))
        .unwrap();
    assert_eq!(opened.token.expose_secret(), TOKEN);
    assert_eq!(opened.expires_at, token_entry().expires_at);
    assert_eq!(opened.issued_at, token_entry().issued_at);

    let latch = writer
        .seal_latch(&writer.latch_key(), &latch_entry())
        .unwrap();
    assert_eq!(
        reader.open_latch(&reader.latch_key(), &latch),
        Some(latch_entry())
    );
}

#[test]
fn names_are_distinct_lower_case_hex() {
    let sealer = sealer();
    let (token, latch) = (sealer.token_key(), sealer.latch_key());
    assert_ne!(token, latch);
    for key in [&token, &latch] {
        assert_eq!(key.as_str().len(), 64);
        assert!(
            key.as_str()
                .bytes()
                .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte))
        );
    }
}

#[test]
fn another_secret_neither_opens_entries_nor_shares_names() {
    let ours = sealer();
    let theirs = Sealer::new(BASE_URL, CLIENT_ID, "another-secret");
    assert_ne!(ours.token_key(), theirs.token_key());
    assert_ne!(ours.latch_key(), theirs.latch_key());
    // Even told our name, the other secret cannot open our entry.
    assert!(
        theirs
            .open_token(&ours.token_key(), &sealed_token(&ours))
            .is_none()
    );
    let latch = ours.seal_latch(&ours.latch_key(), &latch_entry()).unwrap();
    assert_eq!(theirs.open_latch(&ours.latch_key(), &latch), None);
}

#[test]
fn another_client_id_or_base_url_shares_nothing() {
    let ours = sealer();
    for other in [
        Sealer::new(BASE_URL, "client-id-5678", SECRET),
        Sealer::new("https://api.aspose.cloud/v4.0", CLIENT_ID, SECRET),
        // The same bytes split differently between URL and ID must not collide.
        Sealer::new("https://api.aspose.cloudc", "lient-id-1234", SECRET),
    ] {
        assert_ne!(ours.token_key(), other.token_key());
        assert!(
            other
                .open_token(&ours.token_key(), &sealed_token(&ours))
                .is_none()
        );
    }
}

#[test]
fn tampering_with_any_byte_makes_an_entry_unopenable() {
    let sealer = sealer();
    let sealed = sealed_token(&sealer);
    for at in 0..sealed.len() {
        for flip in [0x01, 0x80] {
            let mut tampered = sealed.clone();
            tampered[at] ^= flip;
            assert!(
                sealer.open_token(&sealer.token_key(), &tampered).is_none(),
                "byte {at} flipped by {flip:#x} still opens"
            );
        }
    }
}

#[test]
fn truncated_or_extended_entries_do_not_open() {
    let sealer = sealer();
    let sealed = sealed_token(&sealer);
    for len in 0..sealed.len() {
        assert!(
            sealer
                .open_token(&sealer.token_key(), &sealed[..len])
                .is_none(),
            "a truncation to {len} bytes opens"
        );
    }
    let mut extended = sealed.clone();
    extended.push(0);
    assert!(sealer.open_token(&sealer.token_key(), &extended).is_none());
    assert!(
        sealer
            .open_token(
                &sealer.token_key(),
                &vec![FORMAT_VERSION; MAX_SEALED_LEN + 1]
            )
            .is_none()
    );
}

#[test]
fn entries_cannot_move_between_names_or_kinds() {
    let sealer = sealer();
    let (token_key, latch_key) = (sealer.token_key(), sealer.latch_key());
    let token = sealed_token(&sealer);
    let latch = sealer.seal_latch(&latch_key, &latch_entry()).unwrap();

    // Copied under the other name.
    assert!(sealer.open_token(&latch_key, &token).is_none());
    assert_eq!(sealer.open_latch(&token_key, &latch), None);
    // Read as the other kind under its own name.
    assert_eq!(sealer.open_latch(&token_key, &token), None);
    assert!(sealer.open_token(&latch_key, &latch).is_none());
    // Sealed as the other kind under the same name, as a forger with a leaked latch might try.
    let token_as_latch_name = sealer.seal_token(&latch_key, &token_entry()).unwrap();
    assert_eq!(sealer.open_latch(&latch_key, &token_as_latch_name), None);
}

#[test]
fn the_kind_is_authenticated_not_only_parsed() {
    // The plaintext decoders would reject most cross-kind bytes anyway; this checks that the
    // kind is bound by the associated data even when the plaintext would parse.
    let sealer = sealer();
    let key = sealer.token_key();
    let sealed = sealer.seal(Kind::Token, &key, b"any plaintext").unwrap();
    assert_eq!(
        sealer
            .open(Kind::Token, &key, &sealed)
            .as_deref()
            .map(|p| &p[..]),
        Some(&b"any plaintext"[..])
    );
    assert!(sealer.open(Kind::Latch, &key, &sealed).is_none());
}

#[test]
fn another_format_version_does_not_open() {
    let sealer = sealer();
    let mut sealed = sealed_token(&sealer);
    sealed[0] = FORMAT_VERSION + 1;
    assert!(sealer.open_token(&sealer.token_key(), &sealed).is_none());
}

#[test]
fn sealing_twice_gives_different_bytes() {
    // Random nonces: equal entries are not recognisable as equal in the store.
    let sealer = sealer();
    assert_ne!(sealed_token(&sealer), sealed_token(&sealer));
}

#[test]
fn sealed_entries_and_names_show_neither_token_nor_secret() {
    let sealer = sealer();
    let sealed = sealed_token(&sealer);
    let names = format!("{}{}", sealer.token_key(), sealer.latch_key());
    for secret in [TOKEN, SECRET] {
        let mut forms = vec![
            secret.as_bytes().to_vec(),
            hex(secret.as_bytes()).into_bytes(),
            hex(secret.as_bytes()).to_uppercase().into_bytes(),
        ];
        for engine in [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD] {
            forms.push(engine.encode(secret).into_bytes());
        }
        for form in &forms {
            // A sixteen-byte window of each form is enough to recognise a leak.
            let probe = &form[..16];
            assert!(!contains(&sealed, probe), "{secret:?} leaks into the entry");
            assert!(
                !contains(names.as_bytes(), probe),
                "{secret:?} leaks into a name"
            );
        }
    }
    assert!(!contains(names.as_bytes(), CLIENT_ID.as_bytes()));
}

#[test]
fn a_token_too_long_for_an_entry_is_refused() {
    let sealer = sealer();
    let entry = TokenEntry {
        token: SecretString::from("t".repeat(MAX_SEALED_LEN)),
        ..token_entry()
    };
    assert!(sealer.seal_token(&sealer.token_key(), &entry).is_err());
}

#[test]
fn debug_shows_no_key_material() {
    let shown = format!("{:?}", sealer());
    assert_eq!(shown, "Sealer { .. }");
}

proptest! {
    #[test]
    fn random_bytes_never_open(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let sealer = sealer();
        prop_assert!(sealer.open_token(&sealer.token_key(), &bytes).is_none());
        prop_assert!(sealer.open_latch(&sealer.latch_key(), &bytes).is_none());
    }

    #[test]
    fn random_bodies_with_our_version_never_open(
        body in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        let sealer = sealer();
        let mut bytes = vec![FORMAT_VERSION];
        bytes.extend_from_slice(&body);
        prop_assert!(sealer.open_token(&sealer.token_key(), &bytes).is_none());
        prop_assert!(sealer.open_latch(&sealer.latch_key(), &bytes).is_none());
    }
}
