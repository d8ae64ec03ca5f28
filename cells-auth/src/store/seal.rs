//! Sealing store entries, so that someone who can read or write the store but does not hold
//! the client secret learns nothing from it and cannot plant a token in it.
//!
//! Two keys come from the client secret by HKDF-SHA256: an AES-256-GCM key that encrypts and
//! authenticates every entry, and an HMAC-SHA256 key that names entries ([`StoreKey`]), so that
//! names reveal neither the client ID nor the secret and differ between secrets. Both are bound
//! to the base URL and client ID, so one secret used with two servers or IDs shares nothing.
//!
//! A sealed entry is a format version byte, a random 96-bit nonce, then the ciphertext and tag.
//! The entry's name and kind are associated data: an entry copied under another name, or a
//! latch presented as a token, fails to open. Random nonces are safe here: an entry is written
//! at most a few times a day per credential, far from the 2^32 messages per key at which
//! random 96-bit nonces start to risk repeating.

use std::fmt;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::{hkdf, hmac};
use zeroize::Zeroizing;

use super::{StoreError, StoreKey};

mod entry;

pub(crate) use entry::{LatchEntry, LatchKind, TokenEntry};

/// The first byte of every sealed entry; a change of format or keys gets a new one, and
/// entries of another version open as `None` (the caller fetches and overwrites them).
const FORMAT_VERSION: u8 = 1;
/// HKDF salt: separates these keys from any other use of the same secret.
const KDF_SALT: &[u8] = b"cells-auth store seal v1";
const AEAD_KEY_PURPOSE: &[u8] = b"entry encryption";
const NAMING_KEY_PURPOSE: &[u8] = b"entry naming";
const TOKEN_NAME_LABEL: &[u8] = b"token";
const LATCH_NAME_LABEL: &[u8] = b"latch";
/// Prefix of the associated data, then the version, the kind and the entry's name.
const AAD_LABEL: &[u8] = b"cells-auth store entry";
const TAG_LEN: usize = 16;
const HEADER_LEN: usize = 1 + NONCE_LEN;
/// A sealed entry is a few hundred bytes (a JWT of one or two kilobytes at most); a longer one
/// is not ours, and is refused before any work is done on it.
pub(crate) const MAX_SEALED_LEN: usize = 32 * 1024;

/// Which kind of entry is sealed; part of the associated data.
#[derive(Clone, Copy)]
#[repr(u8)]
enum Kind {
    Token = 1,
    Latch = 2,
}

/// Seals and opens the entries of one set of credentials, and names them.
pub(crate) struct Sealer {
    aead: LessSafeKey,
    token_key: StoreKey,
    latch_key: StoreKey,
}

impl Sealer {
    /// Derives the keys of the credentials `client_id` and `client_secret` at `base_url`. The
    /// caller must pass the same `base_url` text in every process (normalise it first), or the
    /// processes will not share entries.
    pub(crate) fn new(base_url: &str, client_id: &str, client_secret: &str) -> Self {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, KDF_SALT).extract(client_secret.as_bytes());
        let info = |purpose: &[u8]| bound_to(purpose, base_url, client_id);

        let aead_info = info(AEAD_KEY_PURPOSE);
        let aead = prk
            .expand(&[&aead_info], &AES_256_GCM)
            .map(UnboundKey::from)
            // `expand` fails only for an output longer than 255 hash lengths; 32 bytes is not.
            .expect("HKDF-SHA256 can produce a 32-byte key");
        let naming_info = info(NAMING_KEY_PURPOSE);
        let naming = prk
            .expand(&[&naming_info], hmac::HMAC_SHA256)
            .map(hmac::Key::from)
            .expect("HKDF-SHA256 can produce a 32-byte key");

        let name = |label: &[u8]| {
            let tag = hmac::sign(&naming, &bound_to(label, base_url, client_id));
            StoreKey::from_hex(hex(tag.as_ref()))
        };
        Self {
            aead: LessSafeKey::new(aead),
            token_key: name(TOKEN_NAME_LABEL),
            latch_key: name(LATCH_NAME_LABEL),
        }
    }

    /// The name of the shared token's entry.
    pub(crate) fn token_key(&self) -> StoreKey {
        self.token_key.clone()
    }

    /// The name of the failure latch's entry.
    pub(crate) fn latch_key(&self) -> StoreKey {
        self.latch_key.clone()
    }

    /// `entry` sealed for storage under `key`. Fails only if the system's random generator
    /// does, or for a token too long for a store entry.
    pub(crate) fn seal_token(
        &self,
        key: &StoreKey,
        entry: &TokenEntry,
    ) -> Result<Vec<u8>, StoreError> {
        self.seal(Kind::Token, key, &entry.encode())
    }

    /// The token entry sealed under `key`, or `None` when `bytes` are not one (corrupted,
    /// truncated, sealed under another name, kind, version or secret, or not an entry at all).
    pub(crate) fn open_token(&self, key: &StoreKey, bytes: &[u8]) -> Option<TokenEntry> {
        TokenEntry::decode(&self.open(Kind::Token, key, bytes)?)
    }

    /// `entry` sealed for storage under `key`; fails only if the system's random generator
    /// does.
    pub(crate) fn seal_latch(
        &self,
        key: &StoreKey,
        entry: &LatchEntry,
    ) -> Result<Vec<u8>, StoreError> {
        self.seal(Kind::Latch, key, &entry.encode())
    }

    /// The latch entry sealed under `key`, or `None` when `bytes` are not one.
    pub(crate) fn open_latch(&self, key: &StoreKey, bytes: &[u8]) -> Option<LatchEntry> {
        LatchEntry::decode(&self.open(Kind::Latch, key, bytes)?)
    }

    fn seal(&self, kind: Kind, key: &StoreKey, plaintext: &[u8]) -> Result<Vec<u8>, StoreError> {
        let sealed_len = HEADER_LEN + plaintext.len() + TAG_LEN;
        if sealed_len > MAX_SEALED_LEN {
            return Err(StoreError::new(format!(
                "a store entry would be {sealed_len} bytes, more than the {MAX_SEALED_LEN} allowed"
            )));
        }
        let mut nonce = [0; NONCE_LEN];
        // From the OS (`getrandom(2)`), not aws-lc's generator: aws-lc seeds its generator on
        // a process's first draw, which took 50-110 ms of CPU here, and that first draw is this
        // one in a process that fetched over plain HTTP, so the whole fleet waited for it
        // (`benches/fleet.rs`). The OS source costs microseconds and is as good for a nonce.
        getrandom::fill(&mut nonce)
            .map_err(|_| StoreError::new("the system random generator failed"))?;
        // The plaintext is encrypted in place, in a buffer sized for the whole entry so that
        // no reallocation leaves a copy of it behind.
        let mut sealed = Zeroizing::new(Vec::with_capacity(sealed_len));
        sealed.push(FORMAT_VERSION);
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(plaintext);
        let tag = self
            .aead
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(associated_data(kind, key)),
                &mut sealed[HEADER_LEN..],
            )
            .map_err(|_| StoreError::new("sealing a store entry failed"))?;
        sealed.extend_from_slice(tag.as_ref());
        // Now ciphertext only: nothing left to wipe.
        Ok(std::mem::take(&mut *sealed))
    }

    fn open(&self, kind: Kind, key: &StoreKey, bytes: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        if bytes.len() < HEADER_LEN + TAG_LEN || bytes.len() > MAX_SEALED_LEN {
            return None;
        }
        let (header, body) = bytes.split_at(HEADER_LEN);
        if header[0] != FORMAT_VERSION {
            return None;
        }
        let nonce = Nonce::try_assume_unique_for_key(&header[1..]).ok()?;
        let mut plaintext = Zeroizing::new(body.to_vec());
        let opened_len = self
            .aead
            .open_in_place(nonce, Aad::from(associated_data(kind, key)), &mut plaintext)
            .ok()?
            .len();
        plaintext.truncate(opened_len);
        Some(plaintext)
    }
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The names are not secret, but they are enough to identify the credentials' entries;
        // the keys are never shown.
        f.debug_struct("Sealer").finish_non_exhaustive()
    }
}

/// `label`, the base URL and the client ID, each prefixed with its length so that no two
/// different triples give the same bytes.
fn bound_to(label: &[u8], base_url: &str, client_id: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(24 + label.len() + base_url.len() + client_id.len());
    for part in [label, base_url.as_bytes(), client_id.as_bytes()] {
        out.extend_from_slice(&(part.len() as u64).to_be_bytes());
        out.extend_from_slice(part);
    }
    out
}

fn associated_data(kind: Kind, key: &StoreKey) -> Vec<u8> {
    let mut aad = Vec::with_capacity(AAD_LABEL.len() + 2 + key.as_str().len());
    aad.extend_from_slice(AAD_LABEL);
    aad.push(FORMAT_VERSION);
    aad.push(kind as u8);
    aad.extend_from_slice(key.as_str().as_bytes());
    aad
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    bytes
        .iter()
        .flat_map(|byte| {
            [
                DIGITS[usize::from(byte >> 4)],
                DIGITS[usize::from(byte & 0xf)],
            ]
        })
        .map(char::from)
        .collect()
}

#[cfg(test)]
mod tests;
