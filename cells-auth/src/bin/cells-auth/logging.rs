//! What reaches standard error besides the one error line: the library's logs with `-v`, and
//! without it only the token store's warnings, worded like the tool's own.

use std::fmt;
use std::io;

use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Without `-v`: the warnings of the library's store policy (a store that fails or stays
/// locked), which say why tokens are not being shared. The library's other warnings (a retry,
/// say) stay out, so a failure is still reported in one line.
const QUIET: &str = "off,cells_auth::fleet=warn";

/// Logs to standard error: `-v` for debug logs, `-vv` for trace logs, and otherwise the store's
/// warnings alone. `RUST_LOG` is deliberately not read: the verbosity flags are the whole
/// interface.
pub(crate) fn init(verbosity: u8) {
    let directives = match verbosity {
        0 => {
            tracing_subscriber::fmt()
                .with_env_filter(EnvFilter::new(QUIET))
                .with_writer(io::stderr)
                .event_format(AsWarning)
                .init();
            return;
        }
        1 => "warn,cells_auth=debug",
        _ => "debug,cells_auth=trace",
    };
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::new(directives))
        .with_writer(io::stderr)
        .init();
}

/// Formats an event as the tool's own warnings look: `cells-auth: warning: ` and the message
/// with its fields. The library's fields hold no secret (its `Debug` outputs are redacted).
struct AsWarning;

impl<S, N> FormatEvent<S, N> for AsWarning
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        writer.write_str("cells-auth: warning: ")?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}
