//! `cargo xtask`: development tasks for the cells-auth workspace.

use std::process::ExitCode;

use xtask::{Mode, Outcome};

const HELP: &str = "\
cargo xtask: development tasks for the cells-auth workspace

USAGE:
    cargo xtask <COMMAND> [OPTIONS]

COMMANDS:
    codegen            Regenerate cells-auth-gen/src/generated.rs from openapi/cells-auth.yaml
                       with progenitor.
    codegen --check    Change nothing; exit 1 with a diff when the committed generated code
                       differs from what the spec produces (CI runs this).
    help, --help       Show this text.
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mode = match args.as_slice() {
        ["codegen"] => Mode::Write,
        ["codegen", "--check"] => Mode::Check,
        [] | ["help"] | ["--help"] | ["-h"] => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        _ => {
            eprint!("error: unknown arguments {args:?}\n\n{HELP}");
            return ExitCode::from(2);
        }
    };
    match xtask::codegen(&xtask::workspace_root(), mode) {
        Ok(Outcome::Fresh) => {
            println!("{} is up to date.", xtask::GENERATED_PATH);
            ExitCode::SUCCESS
        }
        Ok(Outcome::Written) => {
            println!("wrote {}", xtask::GENERATED_PATH);
            ExitCode::SUCCESS
        }
        Ok(Outcome::Stale { diff }) => {
            eprintln!(
                "error: {} is stale: it differs from what {} produces.\n\
                 Run `cargo xtask codegen` and commit the result.\n\n{diff}",
                xtask::GENERATED_PATH,
                xtask::SPEC_PATH
            );
            ExitCode::FAILURE
        }
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
