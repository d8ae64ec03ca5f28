//! Access tokens for Aspose.Cells Cloud (the provider arrives with the token provider issue).

#![deny(missing_docs)]

#[cfg(feature = "testing")]
pub mod testing;
