//! `FileStore`: entries as files in one directory, locks as OS file locks (placeholder).

/// A [`TokenStore`](super::TokenStore) in a directory of this machine (placeholder).
#[derive(Debug)]
pub struct FileStore {}
