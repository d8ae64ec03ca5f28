//! The generated client against its source of truth, `openapi/cells-auth.yaml`.

use std::collections::BTreeSet;

use xtask::{Mode, Outcome};

fn spec_text() -> String {
    std::fs::read_to_string(xtask::workspace_root().join(xtask::SPEC_PATH)).unwrap()
}

/// A spec change or a progenitor upgrade shows up here as a reviewable snapshot diff.
#[test]
fn freshly_generated_code_matches_the_snapshot() {
    let source = xtask::generate(&spec_text(), xtask::SPEC_PATH).unwrap();
    insta::assert_snapshot!("generated_client", source);
}

/// `cargo test` catches a committed client that `cargo xtask codegen` would change.
#[test]
fn committed_generated_code_is_fresh() {
    match xtask::codegen(&xtask::workspace_root(), Mode::Check).unwrap() {
        Outcome::Fresh => {}
        Outcome::Stale { diff } => panic!(
            "{} is stale; run `cargo xtask codegen` and commit.\n{diff}",
            xtask::GENERATED_PATH
        ),
        Outcome::Written => panic!("check mode must never write"),
    }
}

#[test]
fn generation_is_byte_identical_across_runs() {
    let spec = spec_text();
    let first = xtask::generate(&spec, xtask::SPEC_PATH).unwrap();
    let second = xtask::generate(&spec, xtask::SPEC_PATH).unwrap();
    assert_eq!(first, second);
    assert!(first.starts_with(xtask::GENERATED_HEADER));
    assert!(!first.contains('\r'));
}

#[test]
fn a_changed_description_makes_the_committed_code_stale() {
    let spec = spec_text().replace("The bearer token, a JWT.", "The bearer token.");
    let changed = xtask::generate(&spec, xtask::SPEC_PATH).unwrap();
    let committed =
        std::fs::read_to_string(xtask::workspace_root().join(xtask::GENERATED_PATH)).unwrap();
    assert_ne!(changed, committed);
}

/// typify silently ignores a replacement whose schema does not exist, so a renamed schema would
/// quietly bring back a model that prints credentials.
#[test]
fn every_secret_replacement_names_a_schema_of_the_spec() {
    let spec: serde_json::Value = serde_yaml::from_str(&spec_text()).unwrap();
    for (schema, _, _) in xtask::SECRET_REPLACEMENTS {
        assert_eq!(
            spec["components"]["schemas"][schema]["type"], "string",
            "{schema} must be a string schema of the spec"
        );
    }
}

#[test]
fn credentials_are_held_in_redacting_types() {
    let source = xtask::generate(&spec_text(), xtask::SPEC_PATH).unwrap();
    for field in [
        "pub client_secret: crate::ClientSecret,",
        "pub access_token: crate::Secret,",
        "pub refresh_token: ::std::option::Option<crate::Secret>,",
    ] {
        assert!(
            source.contains(field),
            "{field} missing from the generated code"
        );
    }
}

/// The JSON Schema that users derive from the generated model (to publish what they store)
/// must describe the same object as the spec's component.
#[test]
fn derived_schema_of_access_token_response_agrees_with_the_spec() {
    let spec: serde_json::Value = serde_yaml::from_str(&spec_text()).unwrap();
    let component = &spec["components"]["schemas"]["AccessTokenResponse"];
    let derived = serde_json::to_value(schemars::schema_for!(
        cells_auth_gen::types::AccessTokenResponse
    ))
    .unwrap();

    let keys = |value: &serde_json::Value| -> BTreeSet<String> {
        value["properties"]
            .as_object()
            .expect("properties")
            .keys()
            .cloned()
            .collect()
    };
    let required = |value: &serde_json::Value| -> BTreeSet<String> {
        value["required"]
            .as_array()
            .map(|names| {
                names
                    .iter()
                    .map(|name| name.as_str().unwrap().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(keys(&derived), keys(component));
    assert_eq!(required(&derived), required(component));
    assert_eq!(
        required(component),
        BTreeSet::from(["access_token".to_owned()])
    );
}
