//! `stepforge explain CODE`: the long explanation of a diagnostic code (the agent puts these in
//! repair prompts).

use serde_json::json;
use stepforge_syntax::codes::Code;

use crate::{Format, Status, output};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A diagnostic code such as E0302, or `all` to list every code with its title.
    pub code: String,
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
}

pub fn run(args: &Args) -> Status {
    if args.code.eq_ignore_ascii_case("all") {
        match args.format {
            Format::Json => output::json(&json!(
                Code::ALL
                    .iter()
                    .map(|c| json!({"code": c.as_str(), "severity": c.severity(), "title": c.title()}))
                    .collect::<Vec<_>>()
            )),
            Format::Human => {
                for c in Code::ALL {
                    output::line(&format!("{c}  {}", c.title()));
                }
            }
        }
        return Status::Ok;
    }
    let Some(code) = Code::parse(&args.code) else {
        output::error(&format!(
            "unknown diagnostic code `{}` (run `stepforge explain all` for the list)",
            args.code
        ));
        return Status::Usage;
    };
    match args.format {
        Format::Json => output::json(&json!({
            "code": code.as_str(),
            "severity": code.severity(),
            "title": code.title(),
            "explanation": code.explanation(),
        })),
        Format::Human => output::line(code.explanation().trim_end()),
    }
    Status::Ok
}
